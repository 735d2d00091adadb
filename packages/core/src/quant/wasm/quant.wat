;; The quantised matmul y = x Ŵᵀ + b on WebAssembly SIMD, for int8, int4 and ternary weights. Pointers are byte
;; offsets into this module's memory (quant-simd.ts keeps each layer's codes there between calls).
;;
;; Codes (resident, one row per output channel, rows zero-padded to Ip input features; the number of rows, of
;; scales and of biases is padded to even):
;;   int8     Ip a multiple of 16; byte i of a row is code i, two's complement.
;;   int4     Ip a multiple of 32; 16 bytes hold 32 codes: nibble k of 16-bit lane j is code 8k + j, unsigned.
;;   ternary  Ip a multiple of 64; 16 bytes hold 64 codes: 2-bit field k of 16-bit lane j is code 8k + j, as q + 1.
;; So one mask gives eight consecutive codes as 16-bit lanes, in input order, and a shift brings the next eight.
;; Scales: int8 scales [O] f32; int4 gscale [O, groups] f32 and gzero [O, groups] u8 (G a multiple of 32);
;; ternary one f32 γ. bias [O] f32; out [N, O] f32.
;;
;; Two ways through, chosen by quant-simd.ts:
;;   gemv_*  (a decode step: few input rows, all finite): integer dot products. Each input row arrives as 28-bit
;;           fixed point, x[n, i] ≈ (xh · 2^14 + xl) · xscale[n] with xh in [−2^14, 2^14] and xl in [0, 2^14) as
;;           i16 [N, Ip] (quant-simd.ts makes them; xscale[n] is a power of two), so Σ q x is two exact i32 sums of
;;           i32x4.dot_i16x8_s products (flushed to f32 before they could overflow); the fixed point's rounding,
;;           2^−29 of the row's largest |x| per input, is far below float32's own rounding of the sum. Two output
;;           channels at a time share each input vector loaded.
;;   gemm_*  (many input rows, or any row with a non-finite value): two rows of Ŵ decoded to f32 in scratch, then a
;;           4 × 2 register tile (four input rows × two weight rows) over them, so each code is decoded once per call.
;;           x [N, Ip] f32, zero-padded.
;; Size: the module must stay under 4 KB, what a browser's main thread compiles synchronously (see instantiateWasm).
;; So the code-vector steps are small loops (a shift by one field per step), not unrolled, and accumulators start
;; from $zero, a v128 local never set (wasm zeroes locals on entry), not from 18-byte v128.const immediates.
(module
  (memory (export "memory") 1)

  ;; The sum of the four lanes.
  (func $hsum (param $v v128) (result f32)
    (local $t v128)
    (local.set $t (f32x4.add (local.get $v) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))))
    (f32.add (f32x4.extract_lane 0 (local.get $t)) (f32x4.extract_lane 1 (local.get $t))))

  ;; ---- decode step: integer dot products --------------------------------------------------------------------------

  ;; out[n, o] = scales[o] · xscale[n] · Σ_i q[o, i] (xh · 2^14 + xl)[n, i] + bias[o]. The i32 sums are flushed to f32
  ;; every 4096 inputs: |q| ≤ 127 and |xh|, |xl| ≤ 2^14 keep each lane under 2^31 until then.
  (func (export "gemv_int8") (param $xh i32) (param $xl i32) (param $xscale i32) (param $codes i32) (param $scales i32)
    (param $bias i32) (param $out i32) (param $N i32) (param $Ip i32) (param $O i32)
    (local $o i32) (local $n i32) (local $i i32) (local $stop i32) (local $row i32) (local $rowB i32) (local $hp i32)
    (local $lp i32) (local $y i32) (local $va v128) (local $vb v128) (local $h0 v128) (local $h1 v128) (local $l0 v128)
    (local $l1 v128) (local $c v128) (local $ah v128) (local $al v128) (local $bh v128) (local $bl v128) (local $fa v128)
    (local $fb v128) (local $sa f32) (local $sb f32) (local $zero v128)
    (loop $outs
      (local.set $row (i32.add (local.get $codes) (i32.mul (local.get $o) (local.get $Ip))))
      (local.set $rowB (i32.add (local.get $row) (local.get $Ip)))
      (local.set $n (i32.const 0))
      (loop $rows
        (local.set $hp (i32.add (local.get $xh) (i32.shl (i32.mul (local.get $n) (local.get $Ip)) (i32.const 1))))
        (local.set $lp (i32.add (local.get $xl) (i32.shl (i32.mul (local.get $n) (local.get $Ip)) (i32.const 1))))
        (local.set $fa (local.get $zero))
        (local.set $fb (local.get $zero))
        (local.set $i (i32.const 0))
        (loop $chunks
          (local.set $stop (i32.add (local.get $i) (i32.const 4096)))
          (if (i32.gt_u (local.get $stop) (local.get $Ip)) (then (local.set $stop (local.get $Ip))))
          (local.set $ah (local.get $zero))
          (local.set $al (local.get $zero))
          (local.set $bh (local.get $zero))
          (local.set $bl (local.get $zero))
          (loop $each
            (local.set $va (v128.load (i32.add (local.get $row) (local.get $i))))
            (local.set $vb (v128.load (i32.add (local.get $rowB) (local.get $i))))
            (local.set $h0 (v128.load (local.get $hp)))
            (local.set $h1 (v128.load offset=16 (local.get $hp)))
            (local.set $l0 (v128.load (local.get $lp)))
            (local.set $l1 (v128.load offset=16 (local.get $lp)))
            (local.set $c (i16x8.extend_low_i8x16_s (local.get $va)))
            (local.set $ah (i32x4.add (local.get $ah) (i32x4.dot_i16x8_s (local.get $c) (local.get $h0))))
            (local.set $al (i32x4.add (local.get $al) (i32x4.dot_i16x8_s (local.get $c) (local.get $l0))))
            (local.set $c (i16x8.extend_high_i8x16_s (local.get $va)))
            (local.set $ah (i32x4.add (local.get $ah) (i32x4.dot_i16x8_s (local.get $c) (local.get $h1))))
            (local.set $al (i32x4.add (local.get $al) (i32x4.dot_i16x8_s (local.get $c) (local.get $l1))))
            (local.set $c (i16x8.extend_low_i8x16_s (local.get $vb)))
            (local.set $bh (i32x4.add (local.get $bh) (i32x4.dot_i16x8_s (local.get $c) (local.get $h0))))
            (local.set $bl (i32x4.add (local.get $bl) (i32x4.dot_i16x8_s (local.get $c) (local.get $l0))))
            (local.set $c (i16x8.extend_high_i8x16_s (local.get $vb)))
            (local.set $bh (i32x4.add (local.get $bh) (i32x4.dot_i16x8_s (local.get $c) (local.get $h1))))
            (local.set $bl (i32x4.add (local.get $bl) (i32x4.dot_i16x8_s (local.get $c) (local.get $l1))))
            (local.set $hp (i32.add (local.get $hp) (i32.const 32)))
            (local.set $lp (i32.add (local.get $lp) (i32.const 32)))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br_if $each (i32.lt_u (local.get $i) (local.get $stop))))
          ;; @flush_ab
          (br_if $chunks (i32.lt_u (local.get $i) (local.get $Ip))))
        (local.set $sa (f32.mul (f32.load (i32.add (local.get $scales) (i32.shl (local.get $o) (i32.const 2)))) (f32.load (i32.add (local.get $xscale) (i32.shl (local.get $n) (i32.const 2))))))
        (local.set $sb (f32.mul (f32.load offset=4 (i32.add (local.get $scales) (i32.shl (local.get $o) (i32.const 2)))) (f32.load (i32.add (local.get $xscale) (i32.shl (local.get $n) (i32.const 2))))))
        ;; @store_pair
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $n) (local.get $N))))
      (local.set $o (i32.add (local.get $o) (i32.const 2)))
      (br_if $outs (i32.lt_u (local.get $o) (local.get $O)))))

  ;; out[n, o] = xscale[n] · (Σ_g gscale[o, g] Σ_{i∈g} q[o, i] xf[n, i] − Σ_g gscale[o, g] gzero[o, g] xs[n, g]) + bias[o],
  ;; xf = xh · 2^14 + xl, xs [N, groups rounded up to 4] f32 the group sums of xf (zero past the last group). The zero
  ;; points are applied once per row, four groups at a time, not per group: that reads up to three groups past a row's
  ;; scales and zero points (times a zero sum), so quant-simd.ts pads those regions.
  (func (export "gemv_int4") (param $xh i32) (param $xl i32) (param $xs i32) (param $xscale i32) (param $codes i32)
    (param $gscale i32) (param $gzero i32) (param $bias i32) (param $out i32) (param $N i32) (param $Ip i32) (param $O i32)
    (param $G i32) (param $groups i32)
    (local $o i32) (local $n i32) (local $i i32) (local $f i32) (local $g i32) (local $end i32) (local $row i32)
    (local $rowB i32) (local $hp i32) (local $lp i32) (local $sp i32) (local $y i32) (local $k i32) (local $va v128)
    (local $vb v128) (local $h v128) (local $l v128) (local $c v128) (local $mask v128) (local $ah v128) (local $al v128)
    (local $bh v128) (local $bl v128) (local $fa v128) (local $fb v128) (local $sa f32) (local $sb f32) (local $zero v128)
    (local.set $mask (v128.const i16x8 15 15 15 15 15 15 15 15))
    (loop $outs
      (local.set $row (i32.add (local.get $codes) (i32.mul (local.get $o) (i32.shr_u (local.get $Ip) (i32.const 1)))))
      (local.set $rowB (i32.add (local.get $row) (i32.shr_u (local.get $Ip) (i32.const 1))))
      (local.set $n (i32.const 0))
      (loop $rows
        (local.set $hp (i32.add (local.get $xh) (i32.shl (i32.mul (local.get $n) (local.get $Ip)) (i32.const 1))))
        (local.set $lp (i32.add (local.get $xl) (i32.shl (i32.mul (local.get $n) (local.get $Ip)) (i32.const 1))))
        ;; xs row n (rows of groups rounded up to 4)
        (local.set $sp (i32.add (local.get $xs)
          (i32.mul (local.get $n) (i32.shl (i32.and (i32.add (local.get $groups) (i32.const 3)) (i32.const -4)) (i32.const 2)))))
        (local.set $f (i32.mul (local.get $o) (local.get $groups)))
        (local.set $fa (local.get $zero))
        (local.set $fb (local.get $zero))
        (local.set $i (i32.const 0))
        (loop $eachGroup
          (local.set $end (i32.add (local.get $i) (local.get $G)))
          (if (i32.gt_u (local.get $end) (local.get $Ip)) (then (local.set $end (local.get $Ip))))
          (local.set $ah (local.get $zero))
          (local.set $al (local.get $zero))
          (local.set $bh (local.get $zero))
          (local.set $bl (local.get $zero))
          (loop $each
            (local.set $va (v128.load (i32.add (local.get $row) (i32.shr_u (local.get $i) (i32.const 1)))))
            (local.set $vb (v128.load (i32.add (local.get $rowB) (i32.shr_u (local.get $i) (i32.const 1)))))
            (local.set $k (i32.const 4))
            (loop $fields
              (local.set $h (v128.load (local.get $hp)))
              (local.set $l (v128.load (local.get $lp)))
              (local.set $c (v128.and (local.get $va) (local.get $mask)))
              (local.set $ah (i32x4.add (local.get $ah) (i32x4.dot_i16x8_s (local.get $c) (local.get $h))))
              (local.set $al (i32x4.add (local.get $al) (i32x4.dot_i16x8_s (local.get $c) (local.get $l))))
              (local.set $c (v128.and (local.get $vb) (local.get $mask)))
              (local.set $bh (i32x4.add (local.get $bh) (i32x4.dot_i16x8_s (local.get $c) (local.get $h))))
              (local.set $bl (i32x4.add (local.get $bl) (i32x4.dot_i16x8_s (local.get $c) (local.get $l))))
              (local.set $va (i16x8.shr_u (local.get $va) (i32.const 4)))
              (local.set $vb (i16x8.shr_u (local.get $vb) (i32.const 4)))
              (local.set $hp (i32.add (local.get $hp) (i32.const 16)))
              (local.set $lp (i32.add (local.get $lp) (i32.const 16)))
              (local.set $k (i32.sub (local.get $k) (i32.const 1)))
              (br_if $fields (local.get $k)))
            (local.set $i (i32.add (local.get $i) (i32.const 32)))
            (br_if $each (i32.lt_u (local.get $i) (local.get $end))))
          (local.set $fa (f32x4.add (local.get $fa) (f32x4.mul (v128.load32_splat (i32.add (local.get $gscale) (i32.shl (local.get $f) (i32.const 2))))
            (f32x4.add (f32x4.mul (f32x4.convert_i32x4_s (local.get $ah)) (v128.const f32x4 16384 16384 16384 16384)) (f32x4.convert_i32x4_s (local.get $al))))))
          (local.set $fb (f32x4.add (local.get $fb) (f32x4.mul (v128.load32_splat (i32.add (local.get $gscale) (i32.shl (i32.add (local.get $f) (local.get $groups)) (i32.const 2))))
            (f32x4.add (f32x4.mul (f32x4.convert_i32x4_s (local.get $bh)) (v128.const f32x4 16384 16384 16384 16384)) (f32x4.convert_i32x4_s (local.get $bl))))))
          (local.set $f (i32.add (local.get $f) (i32.const 1)))
          (br_if $eachGroup (i32.lt_u (local.get $i) (local.get $Ip))))
        ;; − Σ_g gscale · gzero · xs, four groups at a time
        (local.set $f (i32.mul (local.get $o) (local.get $groups)))
        (local.set $g (i32.const 0))
        (loop $zeros
          (local.set $h (v128.load (i32.add (local.get $sp) (i32.shl (local.get $g) (i32.const 2)))))
          ;; @int4_zero_a
          (local.set $f (i32.add (local.get $f) (local.get $groups)))
          ;; @int4_zero_b
          (local.set $f (i32.sub (i32.add (local.get $f) (i32.const 4)) (local.get $groups)))
          (local.set $g (i32.add (local.get $g) (i32.const 4)))
          (br_if $zeros (i32.lt_u (local.get $g) (local.get $groups))))
        (local.set $sa (f32.load (i32.add (local.get $xscale) (i32.shl (local.get $n) (i32.const 2)))))
        (local.set $sb (local.get $sa))
        ;; @store_pair
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $n) (local.get $N))))
      (local.set $o (i32.add (local.get $o) (i32.const 2)))
      (br_if $outs (i32.lt_u (local.get $o) (local.get $O)))))

  ;; out[n, o] = γ · xscale[n] · Σ_i q[o, i] (xh · 2^14 + xl)[n, i] + bias[o], q in {−1, 0, 1}: a lane gains at most
  ;; 2^18 per 64 inputs, so no flush below 2^19 inputs (quant-simd.ts sends wider rows the gemm way).
  (func (export "gemv_ternary") (param $xh i32) (param $xl i32) (param $xscale i32) (param $codes i32) (param $gamma i32)
    (param $bias i32) (param $out i32) (param $N i32) (param $Ip i32) (param $O i32)
    (local $o i32) (local $n i32) (local $i i32) (local $row i32) (local $rowB i32) (local $hp i32) (local $lp i32)
    (local $y i32) (local $k i32) (local $va v128) (local $vb v128) (local $h v128) (local $l v128) (local $c v128) (local $mask v128)
    (local $one v128) (local $ah v128) (local $al v128) (local $bh v128) (local $bl v128) (local $fa v128) (local $fb v128)
    (local $sa f32) (local $sb f32) (local $zero v128)
    (local.set $mask (v128.const i16x8 3 3 3 3 3 3 3 3))
    (local.set $one (v128.const i16x8 1 1 1 1 1 1 1 1))
    (loop $outs
      (local.set $row (i32.add (local.get $codes) (i32.mul (local.get $o) (i32.shr_u (local.get $Ip) (i32.const 2)))))
      (local.set $rowB (i32.add (local.get $row) (i32.shr_u (local.get $Ip) (i32.const 2))))
      (local.set $n (i32.const 0))
      (loop $rows
        (local.set $hp (i32.add (local.get $xh) (i32.shl (i32.mul (local.get $n) (local.get $Ip)) (i32.const 1))))
        (local.set $lp (i32.add (local.get $xl) (i32.shl (i32.mul (local.get $n) (local.get $Ip)) (i32.const 1))))
        (local.set $fa (local.get $zero))
        (local.set $fb (local.get $zero))
        (local.set $ah (local.get $zero))
        (local.set $al (local.get $zero))
        (local.set $bh (local.get $zero))
        (local.set $bl (local.get $zero))
        (local.set $i (i32.const 0))
        (loop $each
          (local.set $va (v128.load (i32.add (local.get $row) (i32.shr_u (local.get $i) (i32.const 2)))))
          (local.set $vb (v128.load (i32.add (local.get $rowB) (i32.shr_u (local.get $i) (i32.const 2)))))
          (local.set $k (i32.const 8))
          (loop $fields
            (local.set $h (v128.load (local.get $hp)))
            (local.set $l (v128.load (local.get $lp)))
            (local.set $c (i16x8.sub (v128.and (local.get $va) (local.get $mask)) (local.get $one)))
            (local.set $ah (i32x4.add (local.get $ah) (i32x4.dot_i16x8_s (local.get $c) (local.get $h))))
            (local.set $al (i32x4.add (local.get $al) (i32x4.dot_i16x8_s (local.get $c) (local.get $l))))
            (local.set $c (i16x8.sub (v128.and (local.get $vb) (local.get $mask)) (local.get $one)))
            (local.set $bh (i32x4.add (local.get $bh) (i32x4.dot_i16x8_s (local.get $c) (local.get $h))))
            (local.set $bl (i32x4.add (local.get $bl) (i32x4.dot_i16x8_s (local.get $c) (local.get $l))))
            (local.set $va (i16x8.shr_u (local.get $va) (i32.const 2)))
            (local.set $vb (i16x8.shr_u (local.get $vb) (i32.const 2)))
            (local.set $hp (i32.add (local.get $hp) (i32.const 16)))
            (local.set $lp (i32.add (local.get $lp) (i32.const 16)))
            (local.set $k (i32.sub (local.get $k) (i32.const 1)))
            (br_if $fields (local.get $k)))
          (local.set $i (i32.add (local.get $i) (i32.const 64)))
          (br_if $each (i32.lt_u (local.get $i) (local.get $Ip))))
        ;; @flush_ab
        (local.set $sa (f32.mul (f32.load (local.get $gamma)) (f32.load (i32.add (local.get $xscale) (i32.shl (local.get $n) (i32.const 2))))))
        (local.set $sb (local.get $sa))
        ;; @store_pair
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $n) (local.get $N))))
      (local.set $o (i32.add (local.get $o) (i32.const 2)))
      (br_if $outs (i32.lt_u (local.get $o) (local.get $O)))))

  ;; ---- many rows: decode each weight row once, then a float tile ------------------------------------------------

  ;; Row o of Ŵ as Ip floats at $dst: s · q.
  (func $decode_int8 (param $row i32) (param $s f32) (param $Ip i32) (param $dst i32)
    (local $i i32) (local $v v128) (local $c v128) (local $sv v128)
    (local.set $sv (f32x4.splat (local.get $s)))
    (loop $each
      (local.set $v (v128.load (i32.add (local.get $row) (local.get $i))))
      (local.set $c (i16x8.extend_low_i8x16_s (local.get $v)))
      (v128.store (local.get $dst) (f32x4.mul (local.get $sv) (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $c)))))
      (v128.store offset=16 (local.get $dst) (f32x4.mul (local.get $sv) (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $c)))))
      (local.set $c (i16x8.extend_high_i8x16_s (local.get $v)))
      (v128.store offset=32 (local.get $dst) (f32x4.mul (local.get $sv) (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $c)))))
      (v128.store offset=48 (local.get $dst) (f32x4.mul (local.get $sv) (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $c)))))
      (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $each (i32.lt_u (local.get $i) (local.get $Ip)))))

  ;; Row o of Ŵ: gscale[o, g] · (q − gzero[o, g]); $gscale and $gzero point at row o's groups.
  (func $decode_int4 (param $row i32) (param $gscale i32) (param $gzero i32) (param $Ip i32) (param $G i32) (param $dst i32)
    (local $i i32) (local $end i32) (local $k i32) (local $v v128) (local $c v128) (local $s v128) (local $z v128) (local $mask v128)
    (local.set $mask (v128.const i16x8 15 15 15 15 15 15 15 15))
    (loop $eachGroup
      (local.set $s (v128.load32_splat (local.get $gscale)))
      (local.set $z (f32x4.splat (f32.convert_i32_u (i32.load8_u (local.get $gzero)))))
      (local.set $end (i32.add (local.get $i) (local.get $G)))
      (if (i32.gt_u (local.get $end) (local.get $Ip)) (then (local.set $end (local.get $Ip))))
      (loop $each
        (local.set $v (v128.load (i32.add (local.get $row) (i32.shr_u (local.get $i) (i32.const 1)))))
        (local.set $k (i32.const 4))
        (loop $fields
          (local.set $c (v128.and (local.get $v) (local.get $mask)))
          (v128.store (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_u (local.get $c))) (local.get $z))))
          (v128.store offset=16 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_u (local.get $c))) (local.get $z))))
          (local.set $v (i16x8.shr_u (local.get $v) (i32.const 4)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
          (local.set $k (i32.sub (local.get $k) (i32.const 1)))
          (br_if $fields (local.get $k)))
        (local.set $i (i32.add (local.get $i) (i32.const 32)))
        (br_if $each (i32.lt_u (local.get $i) (local.get $end))))
      (local.set $gscale (i32.add (local.get $gscale) (i32.const 4)))
      (local.set $gzero (i32.add (local.get $gzero) (i32.const 1)))
      (br_if $eachGroup (i32.lt_u (local.get $i) (local.get $Ip)))))

  ;; Row o of Ŵ: γ · q.
  (func $decode_ternary (param $row i32) (param $gamma f32) (param $Ip i32) (param $dst i32)
    (local $i i32) (local $k i32) (local $v v128) (local $c v128) (local $s v128) (local $mask v128) (local $one v128)
    (local.set $s (f32x4.splat (local.get $gamma)))
    (local.set $mask (v128.const i16x8 3 3 3 3 3 3 3 3))
    (local.set $one (v128.const i16x8 1 1 1 1 1 1 1 1))
    (loop $each
      (local.set $v (v128.load (i32.add (local.get $row) (i32.shr_u (local.get $i) (i32.const 2)))))
      (local.set $k (i32.const 8))
      (loop $fields
        (local.set $c (i16x8.sub (v128.and (local.get $v) (local.get $mask)) (local.get $one)))
        (v128.store (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $c)))))
        (v128.store offset=16 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $c)))))
        (local.set $v (i16x8.shr_u (local.get $v) (i32.const 2)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br_if $fields (local.get $k)))
      (local.set $i (i32.add (local.get $i) (i32.const 64)))
      (br_if $each (i32.lt_u (local.get $i) (local.get $Ip)))))

  ;; out[n, o] = x[n] · w0 + b0 and, when $two, out[n, o + 1] = x[n] · w1 + b1, for every n: four input rows at a
  ;; time against both weight rows (eight accumulators), then the rows left over one at a time.
  (func $gemm_rows (param $x i32) (param $w0 i32) (param $w1 i32) (param $b0 f32) (param $b1 f32) (param $out i32)
    (param $N i32) (param $Ip i32) (param $O i32) (param $o i32) (param $two i32)
    (local $n i32) (local $i i32) (local $stride i32) (local $x0 i32) (local $x1 i32) (local $x2 i32) (local $x3 i32)
    (local $y i32) (local $wa v128) (local $wb v128) (local $xv v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128) (local $zero v128)
    (local.set $stride (i32.shl (local.get $Ip) (i32.const 2)))
    (block $quadsDone
      (loop $quads
        (br_if $quadsDone (i32.gt_u (i32.add (local.get $n) (i32.const 4)) (local.get $N)))
        (local.set $x0 (i32.add (local.get $x) (i32.mul (local.get $n) (local.get $stride))))
        (local.set $x1 (i32.add (local.get $x0) (local.get $stride)))
        (local.set $x2 (i32.add (local.get $x1) (local.get $stride)))
        (local.set $x3 (i32.add (local.get $x2) (local.get $stride)))
        (local.set $c00 (local.get $zero))
        (local.set $c01 (local.get $zero))
        (local.set $c10 (local.get $zero))
        (local.set $c11 (local.get $zero))
        (local.set $c20 (local.get $zero))
        (local.set $c21 (local.get $zero))
        (local.set $c30 (local.get $zero))
        (local.set $c31 (local.get $zero))
        (local.set $i (i32.const 0))
        (loop $each
          (local.set $wa (v128.load (i32.add (local.get $w0) (local.get $i))))
          (local.set $wb (v128.load (i32.add (local.get $w1) (local.get $i))))
          (local.set $xv (v128.load (i32.add (local.get $x0) (local.get $i))))
          (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $xv) (local.get $wa))))
          (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $xv) (local.get $wb))))
          (local.set $xv (v128.load (i32.add (local.get $x1) (local.get $i))))
          (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $xv) (local.get $wa))))
          (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $xv) (local.get $wb))))
          (local.set $xv (v128.load (i32.add (local.get $x2) (local.get $i))))
          (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $xv) (local.get $wa))))
          (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $xv) (local.get $wb))))
          (local.set $xv (v128.load (i32.add (local.get $x3) (local.get $i))))
          (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $xv) (local.get $wa))))
          (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $xv) (local.get $wb))))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br_if $each (i32.lt_u (local.get $i) (local.get $stride))))
        ;; y: &out[n, o]; the next input row's is O floats on
        (local.set $y (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $n) (local.get $O)) (local.get $o)) (i32.const 2))))
        (f32.store (local.get $y) (f32.add (call $hsum (local.get $c00)) (local.get $b0)))
        (if (local.get $two) (then (f32.store offset=4 (local.get $y) (f32.add (call $hsum (local.get $c01)) (local.get $b1)))))
        (local.set $y (i32.add (local.get $y) (i32.shl (local.get $O) (i32.const 2))))
        (f32.store (local.get $y) (f32.add (call $hsum (local.get $c10)) (local.get $b0)))
        (if (local.get $two) (then (f32.store offset=4 (local.get $y) (f32.add (call $hsum (local.get $c11)) (local.get $b1)))))
        (local.set $y (i32.add (local.get $y) (i32.shl (local.get $O) (i32.const 2))))
        (f32.store (local.get $y) (f32.add (call $hsum (local.get $c20)) (local.get $b0)))
        (if (local.get $two) (then (f32.store offset=4 (local.get $y) (f32.add (call $hsum (local.get $c21)) (local.get $b1)))))
        (local.set $y (i32.add (local.get $y) (i32.shl (local.get $O) (i32.const 2))))
        (f32.store (local.get $y) (f32.add (call $hsum (local.get $c30)) (local.get $b0)))
        (if (local.get $two) (then (f32.store offset=4 (local.get $y) (f32.add (call $hsum (local.get $c31)) (local.get $b1)))))
        (local.set $n (i32.add (local.get $n) (i32.const 4)))
        (br $quads)))
    (block $singlesDone
      (loop $singles
        (br_if $singlesDone (i32.ge_u (local.get $n) (local.get $N)))
        (local.set $x0 (i32.add (local.get $x) (i32.mul (local.get $n) (local.get $stride))))
        (local.set $c00 (local.get $zero))
        (local.set $c01 (local.get $zero))
        (local.set $i (i32.const 0))
        (loop $each
          (local.set $xv (v128.load (i32.add (local.get $x0) (local.get $i))))
          (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $xv) (v128.load (i32.add (local.get $w0) (local.get $i))))))
          (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $xv) (v128.load (i32.add (local.get $w1) (local.get $i))))))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br_if $each (i32.lt_u (local.get $i) (local.get $stride))))
        (local.set $y (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $n) (local.get $O)) (local.get $o)) (i32.const 2))))
        (f32.store (local.get $y) (f32.add (call $hsum (local.get $c00)) (local.get $b0)))
        (if (local.get $two) (then (f32.store offset=4 (local.get $y) (f32.add (call $hsum (local.get $c01)) (local.get $b1)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $singles))))

  ;; The prefill driver of every scheme: rows o and o + 1 of Ŵ decoded to $scratch (2 · Ip floats), then dotted.
  ;; $w0 / $w1 are scratch's halves; the second is left as it was when O is odd and the last row is alone.

  (func (export "gemm_int8") (param $x i32) (param $codes i32) (param $scales i32) (param $bias i32) (param $out i32)
    (param $scratch i32) (param $N i32) (param $Ip i32) (param $O i32)
    (local $o i32) (local $w1 i32) (local $two i32) (local $b1 f32)
    (local.set $w1 (i32.add (local.get $scratch) (i32.shl (local.get $Ip) (i32.const 2))))
    (loop $pairs
      (call $decode_int8 (i32.add (local.get $codes) (i32.mul (local.get $o) (local.get $Ip)))
        (f32.load (i32.add (local.get $scales) (i32.shl (local.get $o) (i32.const 2)))) (local.get $Ip) (local.get $scratch))
      ;; @pair_second
      (if (local.get $two)
        (then (call $decode_int8 (i32.add (local.get $codes) (i32.mul (i32.add (local.get $o) (i32.const 1)) (local.get $Ip)))
          (f32.load offset=4 (i32.add (local.get $scales) (i32.shl (local.get $o) (i32.const 2)))) (local.get $Ip) (local.get $w1))))
      ;; @pair_dot
      (br_if $pairs (i32.lt_u (local.get $o) (local.get $O)))))

  (func (export "gemm_int4") (param $x i32) (param $codes i32) (param $gscale i32) (param $gzero i32) (param $bias i32)
    (param $out i32) (param $scratch i32) (param $N i32) (param $Ip i32) (param $O i32) (param $G i32) (param $groups i32)
    (local $o i32) (local $w1 i32) (local $two i32) (local $b1 f32) (local $f i32)
    (local.set $w1 (i32.add (local.get $scratch) (i32.shl (local.get $Ip) (i32.const 2))))
    (loop $pairs
      (local.set $f (i32.mul (local.get $o) (local.get $groups)))
      (call $decode_int4 (i32.add (local.get $codes) (i32.mul (local.get $o) (i32.shr_u (local.get $Ip) (i32.const 1))))
        (i32.add (local.get $gscale) (i32.shl (local.get $f) (i32.const 2))) (i32.add (local.get $gzero) (local.get $f))
        (local.get $Ip) (local.get $G) (local.get $scratch))
      ;; @pair_second
      (if (local.get $two)
        (then
          (local.set $f (i32.add (local.get $f) (local.get $groups)))
          (call $decode_int4 (i32.add (local.get $codes) (i32.mul (i32.add (local.get $o) (i32.const 1)) (i32.shr_u (local.get $Ip) (i32.const 1))))
            (i32.add (local.get $gscale) (i32.shl (local.get $f) (i32.const 2))) (i32.add (local.get $gzero) (local.get $f))
            (local.get $Ip) (local.get $G) (local.get $w1))))
      ;; @pair_dot
      (br_if $pairs (i32.lt_u (local.get $o) (local.get $O)))))

  (func (export "gemm_ternary") (param $x i32) (param $codes i32) (param $gamma i32) (param $bias i32) (param $out i32)
    (param $scratch i32) (param $N i32) (param $Ip i32) (param $O i32)
    (local $o i32) (local $w1 i32) (local $two i32) (local $b1 f32)
    (local.set $w1 (i32.add (local.get $scratch) (i32.shl (local.get $Ip) (i32.const 2))))
    (loop $pairs
      (call $decode_ternary (i32.add (local.get $codes) (i32.mul (local.get $o) (i32.shr_u (local.get $Ip) (i32.const 2))))
        (f32.load (local.get $gamma)) (local.get $Ip) (local.get $scratch))
      ;; @pair_second
      (if (local.get $two)
        (then (call $decode_ternary (i32.add (local.get $codes) (i32.mul (i32.add (local.get $o) (i32.const 1)) (i32.shr_u (local.get $Ip) (i32.const 2))))
          (f32.load (local.get $gamma)) (local.get $Ip) (local.get $w1))))
      ;; @pair_dot
      (br_if $pairs (i32.lt_u (local.get $o) (local.get $O))))))
;; Whether row o + 1 exists, and its bias.
;; @define pair_second
(local.set $two (i32.lt_u (i32.add (local.get $o) (i32.const 1)) (local.get $O)))
(local.set $b1 (f32.const 0))
(if (local.get $two) (then (local.set $b1 (f32.load offset=4 (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2)))))))
;; @end
;; Rows o (and o + 1) of the output from the two decoded rows; o moves on by two.
;; @define pair_dot
(call $gemm_rows (local.get $x) (local.get $scratch) (local.get $w1)
  (f32.load (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2)))) (local.get $b1)
  (local.get $out) (local.get $N) (local.get $Ip) (local.get $O) (local.get $o) (local.get $two))
(local.set $o (i32.add (local.get $o) (i32.const 2)))
;; @end
;; The float sums of both channels: f += cvt(h) · 2^14 + cvt(l), lane by lane.
;; @define flush_ab
(local.set $fa (f32x4.add (local.get $fa)
  (f32x4.add (f32x4.mul (f32x4.convert_i32x4_s (local.get $ah)) (v128.const f32x4 16384 16384 16384 16384)) (f32x4.convert_i32x4_s (local.get $al)))))
(local.set $fb (f32x4.add (local.get $fb)
  (f32x4.add (f32x4.mul (f32x4.convert_i32x4_s (local.get $bh)) (v128.const f32x4 16384 16384 16384 16384)) (f32x4.convert_i32x4_s (local.get $bl)))))
;; @end
;; out[n, o] = $sa · Σ lanes of $fa + bias[o], and out[n, o + 1] from $sb and $fb when channel o + 1 exists.
;; @define store_pair
(local.set $y (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $n) (local.get $O)) (local.get $o)) (i32.const 2))))
(f32.store (local.get $y)
  (f32.add (f32.mul (local.get $sa) (call $hsum (local.get $fa))) (f32.load (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2))))))
(if (i32.lt_u (i32.add (local.get $o) (i32.const 1)) (local.get $O))
  (then (f32.store offset=4 (local.get $y)
    (f32.add (f32.mul (local.get $sb) (call $hsum (local.get $fb))) (f32.load offset=4 (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2))))))))
;; @end
;; $fa (or $fb) −= gscale[f … f + 3] · gzero[f … f + 3] · $h (the four groups' input sums).
;; @define int4_zero_a
(local.set $fa (f32x4.sub (local.get $fa) (f32x4.mul (local.get $h) (f32x4.mul (v128.load (i32.add (local.get $gscale) (i32.shl (local.get $f) (i32.const 2))))
  (f32x4.convert_i32x4_u (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u (v128.load32_zero (i32.add (local.get $gzero) (local.get $f))))))))))
;; @end
;; @define int4_zero_b
(local.set $fb (f32x4.sub (local.get $fb) (f32x4.mul (local.get $h) (f32x4.mul (v128.load (i32.add (local.get $gscale) (i32.shl (local.get $f) (i32.const 2))))
  (f32x4.convert_i32x4_u (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u (v128.load32_zero (i32.add (local.get $gzero) (local.get $f))))))))))
;; @end
