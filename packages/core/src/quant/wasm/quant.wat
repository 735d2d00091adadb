;; The quantised matmul y = x Ŵᵀ + b on WebAssembly SIMD, for int8, int4 and ternary weights. Pointers are byte
;; offsets into this module's memory (quant-simd.ts keeps each layer's codes there between calls).
;;
;; Codes (resident, one row per output channel, rows zero-padded to Ip input features):
;;   int8     Ip a multiple of 16; 16 bytes hold 16 codes, two's complement.
;;   int4     Ip a multiple of 32; 16 bytes hold 32 codes, unsigned nibbles.
;;   ternary  Ip a multiple of 64; 16 bytes hold 64 codes, 2 bits each, stored as q + 1 in {0, 1, 2}.
;; Within each 16 bytes, read as four 32-bit lanes, field k of lane j (byte k for int8, nibble k for int4, 2-bit
;; field k for ternary) holds code 4k + j of the block. So shifting the whole vector right by k fields and masking
;; yields codes 4k … 4k + 3 in lane order, ready to multiply with four consecutive inputs: no shuffles.
;; Scales: int8 scales [O] f32; int4 gscale [O, groups] f32 and gzero [O, groups] u8 (G a multiple of 32);
;; ternary one f32 γ. Inputs x [N, Ip] f32, zero-padded; bias [O] f32; out [N, O] f32.
;;
;; Two ways through, chosen by quant-simd.ts:
;;   gemv_*  (few input rows, a decode step): codes decoded in registers and dotted with each input row; the
;;           scale is applied once per row (int8, ternary) or per group (int4, with the group's input sums xs
;;           from group_sums: Σ s (q − z) x = s (Σ q x − z Σ x)).
;;   gemm_*  (many rows, a prefill): two rows of Ŵ decoded to floats in scratch, then a 4 × 2 register tile
;;           (four input rows × two weight rows) over them, so each code is decoded once per call.
(module
  (memory (export "memory") 1)

  ;; The sum of the four lanes.
  (func $hsum (param $v v128) (result f32)
    (local $t v128)
    (local.set $t (f32x4.add (local.get $v) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))))
    (f32.add (f32x4.extract_lane 0 (local.get $t)) (f32x4.extract_lane 1 (local.get $t))))

  ;; ---- decode-step path ------------------------------------------------------------------------------------------

  ;; out[n, o] = scales[o] · Σ_i q[o, i] x[n, i] + bias[o]; two output channels at a time (O is padded to even
  ;; rows of codes and scales), so each input vector loaded serves both.
  (func (export "gemv_int8") (param $x i32) (param $codes i32) (param $scales i32) (param $bias i32) (param $out i32)
    (param $N i32) (param $Ip i32) (param $O i32)
    (local $o i32) (local $n i32) (local $i i32) (local $row i32) (local $xp i32) (local $y i32)
    (local $va v128) (local $vb v128) (local $xv v128)
    (local $a0 v128) (local $a1 v128) (local $b0 v128) (local $b1 v128)
    (loop $outs
      (local.set $row (i32.add (local.get $codes) (i32.mul (local.get $o) (local.get $Ip))))
      (local.set $n (i32.const 0))
      (loop $rows
        (local.set $xp (i32.add (local.get $x) (i32.shl (i32.mul (local.get $n) (local.get $Ip)) (i32.const 2))))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $b0 (v128.const i32x4 0 0 0 0))
        (local.set $b1 (v128.const i32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (loop $each
          (local.set $va (v128.load (i32.add (local.get $row) (local.get $i))))
          (local.set $vb (v128.load (i32.add (i32.add (local.get $row) (local.get $Ip)) (local.get $i))))
          (local.set $xv (v128.load (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv)
            (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.shl (local.get $va) (i32.const 24)) (i32.const 24))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv)
            (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.shl (local.get $vb) (i32.const 24)) (i32.const 24))))))
          (local.set $xv (v128.load offset=16 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv)
            (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.shl (local.get $va) (i32.const 16)) (i32.const 24))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv)
            (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.shl (local.get $vb) (i32.const 16)) (i32.const 24))))))
          (local.set $xv (v128.load offset=32 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv)
            (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.shl (local.get $va) (i32.const 8)) (i32.const 24))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv)
            (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.shl (local.get $vb) (i32.const 8)) (i32.const 24))))))
          (local.set $xv (v128.load offset=48 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.shr_s (local.get $va) (i32.const 24))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.shr_s (local.get $vb) (i32.const 24))))))
          (local.set $xp (i32.add (local.get $xp) (i32.const 64)))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br_if $each (i32.lt_u (local.get $i) (local.get $Ip))))
        (local.set $y (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $n) (local.get $O)) (local.get $o)) (i32.const 2))))
        (f32.store (local.get $y)
          (f32.add
            (f32.mul (f32.load (i32.add (local.get $scales) (i32.shl (local.get $o) (i32.const 2))))
              (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))
            (f32.load (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2))))))
        (if (i32.lt_u (i32.add (local.get $o) (i32.const 1)) (local.get $O))
          (then
            (f32.store offset=4 (local.get $y)
              (f32.add
                (f32.mul (f32.load offset=4 (i32.add (local.get $scales) (i32.shl (local.get $o) (i32.const 2))))
                  (call $hsum (f32x4.add (local.get $b0) (local.get $b1))))
                (f32.load offset=4 (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2))))))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $n) (local.get $N))))
      (local.set $o (i32.add (local.get $o) (i32.const 2)))
      (br_if $outs (i32.lt_u (local.get $o) (local.get $O)))))

  ;; xs[n, g] (four lanes) = the sums of x[n, i] over group g, lane j over the i ≡ j (mod 4): the lanes in which the
  ;; int4 kernels meet each input.
  (func (export "group_sums") (param $x i32) (param $xs i32) (param $N i32) (param $Ip i32) (param $G i32)
    (local $n i32) (local $i i32) (local $end i32) (local $acc v128)
    (loop $rows
      (local.set $i (i32.const 0))
      (loop $groups
        (local.set $end (i32.add (local.get $i) (local.get $G)))
        (if (i32.gt_u (local.get $end) (local.get $Ip)) (then (local.set $end (local.get $Ip))))
        (local.set $acc (v128.const i32x4 0 0 0 0))
        (loop $each
          (local.set $acc (f32x4.add (local.get $acc) (v128.load (local.get $x))))
          (local.set $x (i32.add (local.get $x) (i32.const 16)))
          (local.set $i (i32.add (local.get $i) (i32.const 4)))
          (br_if $each (i32.lt_u (local.get $i) (local.get $end))))
        (v128.store (local.get $xs) (local.get $acc))
        (local.set $xs (i32.add (local.get $xs) (i32.const 16)))
        (br_if $groups (i32.lt_u (local.get $i) (local.get $Ip))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $n) (local.get $N)))))

  ;; out[n, o] = Σ_g gscale[o, g] · (Σ_{i∈g} q[o, i] x[n, i] − gzero[o, g] · Σ_{i∈g} x[n, i]) + bias[o]; two output
  ;; channels at a time, as gemv_int8.
  (func (export "gemv_int4") (param $x i32) (param $xs i32) (param $codes i32) (param $gscale i32) (param $gzero i32)
    (param $bias i32) (param $out i32) (param $N i32) (param $Ip i32) (param $O i32) (param $G i32) (param $groups i32)
    (local $o i32) (local $n i32) (local $i i32) (local $f i32) (local $end i32) (local $row i32) (local $rowB i32)
    (local $xp i32) (local $xg i32) (local $y i32)
    (local $va v128) (local $vb v128) (local $xv v128) (local $mask v128) (local $accA v128) (local $accB v128)
    (local $a0 v128) (local $a1 v128) (local $b0 v128) (local $b1 v128) (local $xsum v128)
    (local.set $mask (v128.const i32x4 15 15 15 15))
    (loop $outs
      (local.set $row (i32.add (local.get $codes) (i32.mul (local.get $o) (i32.shr_u (local.get $Ip) (i32.const 1)))))
      (local.set $rowB (i32.add (local.get $row) (i32.shr_u (local.get $Ip) (i32.const 1))))
      (local.set $n (i32.const 0))
      (loop $rows
        (local.set $xp (i32.add (local.get $x) (i32.shl (i32.mul (local.get $n) (local.get $Ip)) (i32.const 2))))
        (local.set $xg (i32.add (local.get $xs) (i32.shl (i32.mul (local.get $n) (local.get $groups)) (i32.const 4))))
        (local.set $f (i32.mul (local.get $o) (local.get $groups)))
        (local.set $accA (v128.const i32x4 0 0 0 0))
        (local.set $accB (v128.const i32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (loop $eachGroup
          (local.set $end (i32.add (local.get $i) (local.get $G)))
          (if (i32.gt_u (local.get $end) (local.get $Ip)) (then (local.set $end (local.get $Ip))))
          (local.set $a0 (v128.const i32x4 0 0 0 0))
          (local.set $a1 (v128.const i32x4 0 0 0 0))
          (local.set $b0 (v128.const i32x4 0 0 0 0))
          (local.set $b1 (v128.const i32x4 0 0 0 0))
          (loop $each
            (local.set $va (v128.load (i32.add (local.get $row) (i32.shr_u (local.get $i) (i32.const 1)))))
            (local.set $vb (v128.load (i32.add (local.get $rowB) (i32.shr_u (local.get $i) (i32.const 1)))))
          (local.set $xv (v128.load (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (local.get $va) (local.get $mask))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (local.get $vb) (local.get $mask))))))
          (local.set $xv (v128.load offset=16 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $va) (i32.const 4)) (local.get $mask))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $vb) (i32.const 4)) (local.get $mask))))))
          (local.set $xv (v128.load offset=32 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $va) (i32.const 8)) (local.get $mask))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $vb) (i32.const 8)) (local.get $mask))))))
          (local.set $xv (v128.load offset=48 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $va) (i32.const 12)) (local.get $mask))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $vb) (i32.const 12)) (local.get $mask))))))
          (local.set $xv (v128.load offset=64 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $va) (i32.const 16)) (local.get $mask))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $vb) (i32.const 16)) (local.get $mask))))))
          (local.set $xv (v128.load offset=80 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $va) (i32.const 20)) (local.get $mask))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $vb) (i32.const 20)) (local.get $mask))))))
          (local.set $xv (v128.load offset=96 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $va) (i32.const 24)) (local.get $mask))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (v128.and (i32x4.shr_u (local.get $vb) (i32.const 24)) (local.get $mask))))))
          (local.set $xv (v128.load offset=112 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.shr_u (local.get $va) (i32.const 28))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.shr_u (local.get $vb) (i32.const 28))))))
            (local.set $xp (i32.add (local.get $xp) (i32.const 128)))
            (local.set $i (i32.add (local.get $i) (i32.const 32)))
            (br_if $each (i32.lt_u (local.get $i) (local.get $end))))
          (local.set $xsum (v128.load (local.get $xg)))
          (local.set $accA (f32x4.add (local.get $accA)
            (f32x4.mul (v128.load32_splat (i32.add (local.get $gscale) (i32.shl (local.get $f) (i32.const 2))))
              (f32x4.sub (f32x4.add (local.get $a0) (local.get $a1))
                (f32x4.mul (f32x4.splat (f32.convert_i32_u (i32.load8_u (i32.add (local.get $gzero) (local.get $f))))) (local.get $xsum))))))
          (local.set $accB (f32x4.add (local.get $accB)
            (f32x4.mul (v128.load32_splat (i32.add (local.get $gscale) (i32.shl (i32.add (local.get $f) (local.get $groups)) (i32.const 2))))
              (f32x4.sub (f32x4.add (local.get $b0) (local.get $b1))
                (f32x4.mul (f32x4.splat (f32.convert_i32_u (i32.load8_u (i32.add (local.get $gzero) (i32.add (local.get $f) (local.get $groups))))))
                  (local.get $xsum))))))
          (local.set $xg (i32.add (local.get $xg) (i32.const 16)))
          (local.set $f (i32.add (local.get $f) (i32.const 1)))
          (br_if $eachGroup (i32.lt_u (local.get $i) (local.get $Ip))))
        (local.set $y (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $n) (local.get $O)) (local.get $o)) (i32.const 2))))
        (f32.store (local.get $y) (f32.add (call $hsum (local.get $accA)) (f32.load (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2))))))
        (if (i32.lt_u (i32.add (local.get $o) (i32.const 1)) (local.get $O))
          (then (f32.store offset=4 (local.get $y)
            (f32.add (call $hsum (local.get $accB)) (f32.load offset=4 (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2))))))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $n) (local.get $N))))
      (local.set $o (i32.add (local.get $o) (i32.const 2)))
      (br_if $outs (i32.lt_u (local.get $o) (local.get $O)))))

  ;; out[n, o] = γ · Σ_i q[o, i] x[n, i] + bias[o], q in {−1, 0, 1}; two output channels at a time, as gemv_int8.
  (func (export "gemv_ternary") (param $x i32) (param $codes i32) (param $gamma i32) (param $bias i32) (param $out i32)
    (param $N i32) (param $Ip i32) (param $O i32)
    (local $o i32) (local $n i32) (local $i i32) (local $row i32) (local $rowB i32) (local $xp i32) (local $y i32)
    (local $va v128) (local $vb v128) (local $xv v128) (local $mask v128) (local $one v128)
    (local $a0 v128) (local $a1 v128) (local $b0 v128) (local $b1 v128)
    (local.set $mask (v128.const i32x4 3 3 3 3))
    (local.set $one (v128.const i32x4 1 1 1 1))
    (loop $outs
      (local.set $row (i32.add (local.get $codes) (i32.mul (local.get $o) (i32.shr_u (local.get $Ip) (i32.const 2)))))
      (local.set $rowB (i32.add (local.get $row) (i32.shr_u (local.get $Ip) (i32.const 2))))
      (local.set $n (i32.const 0))
      (loop $rows
        (local.set $xp (i32.add (local.get $x) (i32.shl (i32.mul (local.get $n) (local.get $Ip)) (i32.const 2))))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $b0 (v128.const i32x4 0 0 0 0))
        (local.set $b1 (v128.const i32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (loop $each
          (local.set $va (v128.load (i32.add (local.get $row) (i32.shr_u (local.get $i) (i32.const 2)))))
          (local.set $vb (v128.load (i32.add (local.get $rowB) (i32.shr_u (local.get $i) (i32.const 2)))))
          (local.set $xv (v128.load (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (local.get $va) (local.get $mask)) (local.get $one))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (local.get $vb) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=16 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 2)) (local.get $mask)) (local.get $one))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 2)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=32 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 4)) (local.get $mask)) (local.get $one))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 4)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=48 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 6)) (local.get $mask)) (local.get $one))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 6)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=64 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 8)) (local.get $mask)) (local.get $one))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 8)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=80 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 10)) (local.get $mask)) (local.get $one))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 10)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=96 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 12)) (local.get $mask)) (local.get $one))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 12)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=112 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 14)) (local.get $mask)) (local.get $one))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 14)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=128 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 16)) (local.get $mask)) (local.get $one))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 16)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=144 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 18)) (local.get $mask)) (local.get $one))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 18)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=160 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 20)) (local.get $mask)) (local.get $one))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 20)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=176 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 22)) (local.get $mask)) (local.get $one))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 22)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=192 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 24)) (local.get $mask)) (local.get $one))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 24)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=208 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 26)) (local.get $mask)) (local.get $one))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 26)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=224 (local.get $xp)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $va) (i32.const 28)) (local.get $mask)) (local.get $one))))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (i32x4.shr_u (local.get $vb) (i32.const 28)) (local.get $mask)) (local.get $one))))))
          (local.set $xv (v128.load offset=240 (local.get $xp)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (i32x4.shr_u (local.get $va) (i32.const 30)) (local.get $one))))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $xv) (f32x4.convert_i32x4_s (i32x4.sub (i32x4.shr_u (local.get $vb) (i32.const 30)) (local.get $one))))))
          (local.set $xp (i32.add (local.get $xp) (i32.const 256)))
          (local.set $i (i32.add (local.get $i) (i32.const 64)))
          (br_if $each (i32.lt_u (local.get $i) (local.get $Ip))))
        (local.set $y (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $n) (local.get $O)) (local.get $o)) (i32.const 2))))
        (f32.store (local.get $y)
          (f32.add (f32.mul (f32.load (local.get $gamma)) (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))
            (f32.load (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2))))))
        (if (i32.lt_u (i32.add (local.get $o) (i32.const 1)) (local.get $O))
          (then (f32.store offset=4 (local.get $y)
            (f32.add (f32.mul (f32.load (local.get $gamma)) (call $hsum (f32x4.add (local.get $b0) (local.get $b1))))
              (f32.load offset=4 (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2))))))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br_if $rows (i32.lt_u (local.get $n) (local.get $N))))
      (local.set $o (i32.add (local.get $o) (i32.const 2)))
      (br_if $outs (i32.lt_u (local.get $o) (local.get $O)))))

  ;; ---- prefill path ----------------------------------------------------------------------------------------------

  ;; Row o of Ŵ as Ip floats at $dst: scales[o] · q.
  (func $decode_int8 (param $row i32) (param $s f32) (param $Ip i32) (param $dst i32)
    (local $i i32) (local $v v128) (local $sv v128)
    (local.set $sv (f32x4.splat (local.get $s)))
    (loop $each
      (local.set $v (v128.load (i32.add (local.get $row) (local.get $i))))
      (v128.store (local.get $dst) (f32x4.mul (local.get $sv)
        (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.shl (local.get $v) (i32.const 24)) (i32.const 24)))))
      (v128.store offset=16 (local.get $dst) (f32x4.mul (local.get $sv)
        (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.shl (local.get $v) (i32.const 16)) (i32.const 24)))))
      (v128.store offset=32 (local.get $dst) (f32x4.mul (local.get $sv)
        (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.shl (local.get $v) (i32.const 8)) (i32.const 24)))))
      (v128.store offset=48 (local.get $dst) (f32x4.mul (local.get $sv)
        (f32x4.convert_i32x4_s (i32x4.shr_s (local.get $v) (i32.const 24)))))
      (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $each (i32.lt_u (local.get $i) (local.get $Ip)))))

  ;; Row o of Ŵ: gscale[o, g] · (q − gzero[o, g]); $gscale and $gzero point at row o's groups.
  (func $decode_int4 (param $row i32) (param $gscale i32) (param $gzero i32) (param $Ip i32) (param $G i32) (param $dst i32)
    (local $i i32) (local $end i32) (local $v v128) (local $s v128) (local $z v128) (local $mask v128)
    (local.set $mask (v128.const i32x4 15 15 15 15))
    (loop $eachGroup
      (local.set $s (v128.load32_splat (local.get $gscale)))
      (local.set $z (f32x4.splat (f32.convert_i32_u (i32.load8_u (local.get $gzero)))))
      (local.set $end (i32.add (local.get $i) (local.get $G)))
      (if (i32.gt_u (local.get $end) (local.get $Ip)) (then (local.set $end (local.get $Ip))))
      (loop $each
        (local.set $v (v128.load (i32.add (local.get $row) (i32.shr_u (local.get $i) (i32.const 1)))))
        ;; @int4_decode_four
        ;; @int4_decode_four
        (local.set $i (i32.add (local.get $i) (i32.const 32)))
        (br_if $each (i32.lt_u (local.get $i) (local.get $end))))
      (local.set $gscale (i32.add (local.get $gscale) (i32.const 4)))
      (local.set $gzero (i32.add (local.get $gzero) (i32.const 1)))
      (br_if $eachGroup (i32.lt_u (local.get $i) (local.get $Ip)))))

  ;; Row o of Ŵ: γ · q.
  (func $decode_ternary (param $row i32) (param $gamma f32) (param $Ip i32) (param $dst i32)
    (local $i i32) (local $v v128) (local $s v128) (local $mask v128) (local $one v128)
    (local.set $s (f32x4.splat (local.get $gamma)))
    (local.set $mask (v128.const i32x4 3 3 3 3))
    (local.set $one (v128.const i32x4 1 1 1 1))
    (loop $each
      (local.set $v (v128.load (i32.add (local.get $row) (i32.shr_u (local.get $i) (i32.const 2)))))
      ;; @ternary_decode_four
      ;; @ternary_decode_four
      ;; @ternary_decode_four
      ;; @ternary_decode_four
      (local.set $i (i32.add (local.get $i) (i32.const 64)))
      (br_if $each (i32.lt_u (local.get $i) (local.get $Ip)))))

  ;; out[n, o] = x[n] · w0 + b0 and, when $two, out[n, o + 1] = x[n] · w1 + b1, for every n: four input rows at a
  ;; time against both weight rows (eight accumulators), then the rows left over one at a time.
  (func $gemm_rows (param $x i32) (param $w0 i32) (param $w1 i32) (param $b0 f32) (param $b1 f32) (param $out i32)
    (param $N i32) (param $Ip i32) (param $O i32) (param $o i32) (param $two i32)
    (local $n i32) (local $i i32) (local $stride i32) (local $x0 i32) (local $x1 i32) (local $x2 i32) (local $x3 i32)
    (local $y i32) (local $wa v128) (local $wb v128) (local $xv v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local.set $stride (i32.shl (local.get $Ip) (i32.const 2)))
    (block $quadsDone
      (loop $quads
        (br_if $quadsDone (i32.gt_u (i32.add (local.get $n) (i32.const 4)) (local.get $N)))
        (local.set $x0 (i32.add (local.get $x) (i32.mul (local.get $n) (local.get $stride))))
        (local.set $x1 (i32.add (local.get $x0) (local.get $stride)))
        (local.set $x2 (i32.add (local.get $x1) (local.get $stride)))
        (local.set $x3 (i32.add (local.get $x2) (local.get $stride)))
        (local.set $c00 (v128.const i32x4 0 0 0 0))
        (local.set $c01 (v128.const i32x4 0 0 0 0))
        (local.set $c10 (v128.const i32x4 0 0 0 0))
        (local.set $c11 (v128.const i32x4 0 0 0 0))
        (local.set $c20 (v128.const i32x4 0 0 0 0))
        (local.set $c21 (v128.const i32x4 0 0 0 0))
        (local.set $c30 (v128.const i32x4 0 0 0 0))
        (local.set $c31 (v128.const i32x4 0 0 0 0))
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
        (local.set $c00 (v128.const i32x4 0 0 0 0))
        (local.set $c01 (v128.const i32x4 0 0 0 0))
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
;; Four int4 fields at a time to floats (code − z) · s at $dst, $v shifted on, $dst on by 64.
;; @define int4_decode_four
(v128.store (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_s (v128.and (local.get $v) (local.get $mask))) (local.get $z))))
(local.set $v (i32x4.shr_u (local.get $v) (i32.const 4)))
(v128.store offset=16 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_s (v128.and (local.get $v) (local.get $mask))) (local.get $z))))
(local.set $v (i32x4.shr_u (local.get $v) (i32.const 4)))
(v128.store offset=32 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_s (v128.and (local.get $v) (local.get $mask))) (local.get $z))))
(local.set $v (i32x4.shr_u (local.get $v) (i32.const 4)))
(v128.store offset=48 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_s (v128.and (local.get $v) (local.get $mask))) (local.get $z))))
(local.set $v (i32x4.shr_u (local.get $v) (i32.const 4)))
(local.set $dst (i32.add (local.get $dst) (i32.const 64)))
;; @end
;; Four ternary fields at a time to floats γ · (field − 1) at $dst, $v shifted on, $dst on by 64.
;; @define ternary_decode_four
(v128.store (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (local.get $v) (local.get $mask)) (local.get $one)))))
(local.set $v (i32x4.shr_u (local.get $v) (i32.const 2)))
(v128.store offset=16 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (local.get $v) (local.get $mask)) (local.get $one)))))
(local.set $v (i32x4.shr_u (local.get $v) (i32.const 2)))
(v128.store offset=32 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (local.get $v) (local.get $mask)) (local.get $one)))))
(local.set $v (i32x4.shr_u (local.get $v) (i32.const 2)))
(v128.store offset=48 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.sub (v128.and (local.get $v) (local.get $mask)) (local.get $one)))))
(local.set $v (i32x4.shr_u (local.get $v) (i32.const 2)))
(local.set $dst (i32.add (local.get $dst) (i32.const 64)))
;; @end
