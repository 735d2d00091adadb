;; The `pow2` macro of slmkit's WebAssembly modules, included with `;; @include scripts/wasm/pow2.wat` (the root
;; scripts/build-wasm.mjs pastes it; wasm modules cannot share code, so every module that takes exponentials pastes
;; this one block). Each `;; @pow2` line becomes the block: it sets $p = 2^$v for v in [-127, 127] (four lanes), using
;; the v128 locals $k and $r, by 2^v = 2^round(v) 2^f with a degree-7 polynomial for 2^f (relative error below 5e-9
;; before float32 rounding); 2^-127 builds as +0. Callers clamp v to [-127, 127] first.
;; @define pow2
;; k = v + 1.5 * 2^23 holds round(v) in its low mantissa bits; r = (v - round(v)) ln 2
(local.set $k (f32x4.add (local.get $v) (v128.const f32x4 12582912 12582912 12582912 12582912)))
(local.set $r (f32x4.mul
  (f32x4.sub (local.get $v) (f32x4.sub (local.get $k) (v128.const f32x4 12582912 12582912 12582912 12582912)))
  (v128.const f32x4 0.6931471805599453 0.6931471805599453 0.6931471805599453 0.6931471805599453)))
;; p = e^r, Horner from the r^7 / 7! term down
(local.set $p (f32x4.add (v128.const f32x4 1.3888888888888889e-3 1.3888888888888889e-3 1.3888888888888889e-3 1.3888888888888889e-3)
  (f32x4.mul (local.get $r) (v128.const f32x4 1.984126984126984e-4 1.984126984126984e-4 1.984126984126984e-4 1.984126984126984e-4))))
(local.set $p (f32x4.add (v128.const f32x4 8.333333333333333e-3 8.333333333333333e-3 8.333333333333333e-3 8.333333333333333e-3)
  (f32x4.mul (local.get $r) (local.get $p))))
(local.set $p (f32x4.add (v128.const f32x4 4.1666666666666664e-2 4.1666666666666664e-2 4.1666666666666664e-2 4.1666666666666664e-2)
  (f32x4.mul (local.get $r) (local.get $p))))
(local.set $p (f32x4.add (v128.const f32x4 0.16666666666666666 0.16666666666666666 0.16666666666666666 0.16666666666666666)
  (f32x4.mul (local.get $r) (local.get $p))))
(local.set $p (f32x4.add (v128.const f32x4 0.5 0.5 0.5 0.5) (f32x4.mul (local.get $r) (local.get $p))))
(local.set $p (f32x4.add (v128.const f32x4 1 1 1 1) (f32x4.mul (local.get $r) (local.get $p))))
(local.set $p (f32x4.add (v128.const f32x4 1 1 1 1) (f32x4.mul (local.get $r) (local.get $p))))
;; p 2^k, with 2^k = bits((round(v) + 127) << 23) and round(v) + 127 = bits(k) - bits(1.5 * 2^23) + 127
(local.set $p (f32x4.mul (local.get $p)
  (i32x4.shl (i32x4.sub (local.get $k) (v128.const i32x4 0x4B3FFF81 0x4B3FFF81 0x4B3FFF81 0x4B3FFF81))
    (i32.const 23))))
;; @end
