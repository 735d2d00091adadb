;; The Mamba-1 selective scan's arithmetic on WebAssembly SIMD, four float32 lanes per instruction. All pointers
;; are byte offsets into this module's memory; lengths are in floats and multiples of 4.
;;
;; `;; @pow2` lines are replaced by the block of scripts/wasm/pow2.wat (scripts/build-wasm.mjs pastes it, as for
;; the attention modules): V8 does not inline calls between wasm functions, and a call per vector would cost more
;; than the exponential itself. The block sets
;; $p = 2^$v for v in [-127, 127] (callers clamp with pmin / pmax, which keep a NaN), using $k and $r:
;; 2^v = 2^k 2^f with k = round(v), |f| <= 1/2; 2^f = e^(f ln 2) by its degree-7 Taylor polynomial (relative
;; error below 5e-9 before float32 rounding) and 2^k built in the exponent bits; 2^-127 builds as +0, which is
;; what float32 exp gives below -87.
;; @include scripts/wasm/pow2.wat
;; float32 constants: 1.4426950408889634 = log2(e)
(module
  (memory (export "memory") 1)

  ;; softplus(x, n): x <- log(1 + e^x) = max(x, 0) + log1p(e^-|x|), in place. log1p(y) for y = e^-|x| in (0, 1]:
  ;; with s = y / (2 + y) in (0, 1/3], log(1 + y) = 2 atanh(s) = 2 (s + s^3/3 + ... + s^15/15), truncation error
  ;; below 1e-9.
  (func (export "softplus") (param $x i32) (param $n i32)
    (local $end i32) (local $v v128) (local $k v128) (local $r v128) (local $p v128) (local $s v128)
    (local $s2 v128) (local $q v128)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $v (f32x4.pmax
          (f32x4.mul (f32x4.neg (f32x4.abs (v128.load (local.get $x))))
            (v128.const f32x4 1.4426950408889634 1.4426950408889634 1.4426950408889634 1.4426950408889634))
          (v128.const f32x4 -127 -127 -127 -127)))
        ;; @pow2
        (local.set $s (f32x4.div (local.get $p) (f32x4.add (local.get $p) (v128.const f32x4 2 2 2 2))))
        (local.set $s2 (f32x4.mul (local.get $s) (local.get $s)))
        (local.set $q (f32x4.add (v128.const f32x4 0.07692307692307693 0.07692307692307693 0.07692307692307693 0.07692307692307693)
          (f32x4.mul (local.get $s2) (v128.const f32x4 0.06666666666666667 0.06666666666666667 0.06666666666666667 0.06666666666666667))))
        (local.set $q (f32x4.add (v128.const f32x4 0.09090909090909091 0.09090909090909091 0.09090909090909091 0.09090909090909091)
          (f32x4.mul (local.get $s2) (local.get $q))))
        (local.set $q (f32x4.add (v128.const f32x4 0.1111111111111111 0.1111111111111111 0.1111111111111111 0.1111111111111111)
          (f32x4.mul (local.get $s2) (local.get $q))))
        (local.set $q (f32x4.add (v128.const f32x4 0.14285714285714285 0.14285714285714285 0.14285714285714285 0.14285714285714285)
          (f32x4.mul (local.get $s2) (local.get $q))))
        (local.set $q (f32x4.add (v128.const f32x4 0.2 0.2 0.2 0.2) (f32x4.mul (local.get $s2) (local.get $q))))
        (local.set $q (f32x4.add (v128.const f32x4 0.3333333333333333 0.3333333333333333 0.3333333333333333 0.3333333333333333)
          (f32x4.mul (local.get $s2) (local.get $q))))
        (local.set $q (f32x4.add (v128.const f32x4 1 1 1 1) (f32x4.mul (local.get $s2) (local.get $q))))
        (v128.store (local.get $x)
          (f32x4.add (f32x4.pmax (v128.load (local.get $x)) (v128.const f32x4 0 0 0 0))
            (f32x4.mul (f32x4.add (local.get $s) (local.get $s)) (local.get $q))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $each))))

  ;; silu_gate(y, z, n): y <- y z / (1 + e^-z), in place.
  (func (export "silu_gate") (param $y i32) (param $z i32) (param $n i32)
    (local $end i32) (local $zv v128) (local $v v128) (local $k v128) (local $r v128) (local $p v128)
    (local.set $end (i32.add (local.get $y) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $y) (local.get $end)))
        (local.set $zv (v128.load (local.get $z)))
        (local.set $v (f32x4.pmax
          (f32x4.pmin
            (f32x4.mul (local.get $zv)
              (v128.const f32x4 -1.4426950408889634 -1.4426950408889634 -1.4426950408889634 -1.4426950408889634))
            (v128.const f32x4 127 127 127 127))
          (v128.const f32x4 -127 -127 -127 -127)))
        ;; @pow2
        (v128.store (local.get $y)
          (f32x4.div (f32x4.mul (v128.load (local.get $y)) (local.get $zv))
            (f32x4.add (v128.const f32x4 1 1 1 1) (local.get $p))))
        (local.set $y (i32.add (local.get $y) (i32.const 16)))
        (local.set $z (i32.add (local.get $z) (i32.const 16)))
        (br $each))))

  ;; scan_channel(dt, u, a, b, c, h, acc, y, L, Np, skip): the scan of one channel.
  ;;   dt  [L]      step sizes (softplus and bias already applied)
  ;;   u   [L]      inputs
  ;;   a   [Np]     the channel's row of A times log2(e), zero-padded to Np (a multiple of 8)
  ;;   b, c [L, Np] the channel's group of B and C, time-major, zero-padded
  ;;   h   [Np]     the state: read as h_{-1}, left holding h_{L-1}
  ;;   acc [L, 4]   scratch
  ;;   y   [L]      written: y_t = sum_n c_t[n] h_t[n] + skip u_t
  ;; Per step h = 2^(dt_t a) h + (dt_t u_t) b_t. The loop over time runs inside the loop over groups of eight
  ;; states (two vectors), so a group's state stays in registers for the whole sequence; its dot products with c_t
  ;; collect in acc and are summed at the end.
  (func (export "scan_channel")
    (param $dt i32) (param $u i32) (param $a i32) (param $b i32) (param $c i32) (param $h i32) (param $acc i32)
    (param $y i32) (param $L i32) (param $Np i32) (param $skip f32)
    (local $t i32) (local $n i32) (local $rowBytes i32) (local $off i32) (local $t4 i32) (local $t16 i32)
    (local $av v128) (local $hv v128) (local $av1 v128) (local $hv1 v128) (local $dtv v128) (local $dtu v128)
    (local $sum v128) (local $v v128) (local $k v128) (local $r v128) (local $p v128) (local $p0 v128)
    (local.set $rowBytes (i32.shl (local.get $Np) (i32.const 2)))
    (block $zeroed
      (loop $zero
        (br_if $zeroed (i32.ge_u (local.get $t) (local.get $L)))
        (v128.store (i32.add (local.get $acc) (i32.shl (local.get $t) (i32.const 4))) (v128.const f32x4 0 0 0 0))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $zero)))
    (block $statesDone
      (loop $states
        (br_if $statesDone (i32.ge_u (local.get $n) (local.get $rowBytes)))
        (local.set $av (v128.load (i32.add (local.get $a) (local.get $n))))
        (local.set $av1 (v128.load offset=16 (i32.add (local.get $a) (local.get $n))))
        (local.set $hv (v128.load (i32.add (local.get $h) (local.get $n))))
        (local.set $hv1 (v128.load offset=16 (i32.add (local.get $h) (local.get $n))))
        (local.set $off (local.get $n))
        (local.set $t (i32.const 0))
        (block $stepsDone
          (loop $steps
            (br_if $stepsDone (i32.ge_u (local.get $t) (local.get $L)))
            (local.set $t4 (i32.shl (local.get $t) (i32.const 2)))
            (local.set $t16 (i32.shl (local.get $t) (i32.const 4)))
            (local.set $dtv (v128.load32_splat (i32.add (local.get $dt) (local.get $t4))))
            (local.set $dtu (f32x4.mul (local.get $dtv) (v128.load32_splat (i32.add (local.get $u) (local.get $t4)))))
            ;; two groups of four states per step: independent chains the CPU overlaps
            (local.set $v (f32x4.pmax (f32x4.pmin (f32x4.mul (local.get $dtv) (local.get $av))
              (v128.const f32x4 127 127 127 127)) (v128.const f32x4 -127 -127 -127 -127)))
            ;; @pow2
            (local.set $p0 (local.get $p))
            (local.set $v (f32x4.pmax (f32x4.pmin (f32x4.mul (local.get $dtv) (local.get $av1))
              (v128.const f32x4 127 127 127 127)) (v128.const f32x4 -127 -127 -127 -127)))
            ;; @pow2
            ;; h = 2^(dt_t a) h + (dt_t u_t) b_t
            (local.set $hv (f32x4.add (f32x4.mul (local.get $p0) (local.get $hv))
              (f32x4.mul (local.get $dtu) (v128.load (i32.add (local.get $b) (local.get $off))))))
            (local.set $hv1 (f32x4.add (f32x4.mul (local.get $p) (local.get $hv1))
              (f32x4.mul (local.get $dtu) (v128.load offset=16 (i32.add (local.get $b) (local.get $off))))))
            ;; acc_t += h c_t
            (v128.store (i32.add (local.get $acc) (local.get $t16))
              (f32x4.add (v128.load (i32.add (local.get $acc) (local.get $t16)))
                (f32x4.add
                  (f32x4.mul (local.get $hv) (v128.load (i32.add (local.get $c) (local.get $off))))
                  (f32x4.mul (local.get $hv1) (v128.load offset=16 (i32.add (local.get $c) (local.get $off)))))))
            (local.set $off (i32.add (local.get $off) (local.get $rowBytes)))
            (local.set $t (i32.add (local.get $t) (i32.const 1)))
            (br $steps)))
        (v128.store (i32.add (local.get $h) (local.get $n)) (local.get $hv))
        (v128.store offset=16 (i32.add (local.get $h) (local.get $n)) (local.get $hv1))
        (local.set $n (i32.add (local.get $n) (i32.const 32)))
        (br $states)))
    ;; y_t = the four lanes of acc_t summed, plus skip u_t
    (local.set $t (i32.const 0))
    (block $summed
      (loop $sumLanes
        (br_if $summed (i32.ge_u (local.get $t) (local.get $L)))
        (local.set $t4 (i32.shl (local.get $t) (i32.const 2)))
        (local.set $sum (v128.load (i32.add (local.get $acc) (i32.shl (local.get $t) (i32.const 4)))))
        (f32.store (i32.add (local.get $y) (local.get $t4))
          (f32.add
            (f32.add
              (f32.add (f32x4.extract_lane 0 (local.get $sum)) (f32x4.extract_lane 1 (local.get $sum)))
              (f32.add (f32x4.extract_lane 2 (local.get $sum)) (f32x4.extract_lane 3 (local.get $sum))))
            (f32.mul (local.get $skip) (f32.load (i32.add (local.get $u) (local.get $t4))))))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $sumLanes)))))
