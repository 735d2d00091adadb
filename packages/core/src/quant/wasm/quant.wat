;; The quantised matmul y = x Ŵᵀ + b on WebAssembly SIMD. Pointers are byte offsets into this module's memory.
;; Rows are zero-padded to Ip input features (a multiple of 32), so every loop steps whole vectors; padded codes
;; and padded inputs are 0, and a padded code times a padded input adds nothing whatever the zero point.
;;
;; For each output channel o, its row of Ŵ is decoded into `row` (Ip floats, four lanes per instruction), then
;; dotted with every input row: the codes are read once per call, whatever N.
;;   x    [N, Ip] f32        inputs
;;   row  [Ip] f32           scratch
;;   bias [O] f32            (zeros when the layer has none)
;;   out  [N, O] f32         written
(module
  (memory (export "memory") 1)

  ;; out[n, o] = row · x[n] + bias[o] for every n.
  (func $dot_rows (param $x i32) (param $row i32) (param $bias i32) (param $out i32) (param $N i32) (param $Ip i32)
    (param $O i32) (param $o i32)
    (local $n i32) (local $i i32) (local $xr i32) (local $end i32) (local $acc0 v128) (local $acc1 v128) (local $sum v128)
    (local.set $end (i32.shl (local.get $Ip) (i32.const 2)))
    (block $rowsDone
      (loop $rows
        (br_if $rowsDone (i32.ge_u (local.get $n) (local.get $N)))
        (local.set $xr (i32.add (local.get $x) (i32.mul (local.get $n) (local.get $end))))
        (local.set $acc0 (v128.const f32x4 0 0 0 0))
        (local.set $acc1 (v128.const f32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (block $done
          (loop $each
            (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
            (local.set $acc0 (f32x4.add (local.get $acc0)
              (f32x4.mul (v128.load (i32.add (local.get $xr) (local.get $i))) (v128.load (i32.add (local.get $row) (local.get $i))))))
            (local.set $acc1 (f32x4.add (local.get $acc1)
              (f32x4.mul (v128.load offset=16 (i32.add (local.get $xr) (local.get $i)))
                (v128.load offset=16 (i32.add (local.get $row) (local.get $i))))))
            (local.set $i (i32.add (local.get $i) (i32.const 32)))
            (br $each)))
        (local.set $sum (f32x4.add (local.get $acc0) (local.get $acc1)))
        (f32.store
          (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $n) (local.get $O)) (local.get $o)) (i32.const 2)))
          (f32.add
            (f32.add
              (f32.add (f32x4.extract_lane 0 (local.get $sum)) (f32x4.extract_lane 1 (local.get $sum)))
              (f32.add (f32x4.extract_lane 2 (local.get $sum)) (f32x4.extract_lane 3 (local.get $sum))))
            (f32.load (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2))))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $rows))))

  ;; int8: codes [O, Ip] bytes, two's complement; scales [O] f32. Ŵ[o, i] = scales[o] · codes[o, i].
  (func (export "matmul_int8") (param $x i32) (param $codes i32) (param $scales i32) (param $bias i32) (param $out i32)
    (param $row i32) (param $N i32) (param $Ip i32) (param $O i32)
    (local $o i32) (local $i i32) (local $c v128) (local $h v128) (local $s v128) (local $src i32) (local $dst i32)
    (block $outDone
      (loop $outs
        (br_if $outDone (i32.ge_u (local.get $o) (local.get $O)))
        (local.set $s (v128.load32_splat (i32.add (local.get $scales) (i32.shl (local.get $o) (i32.const 2)))))
        (local.set $src (i32.add (local.get $codes) (i32.mul (local.get $o) (local.get $Ip))))
        (local.set $dst (local.get $row))
        (local.set $i (i32.const 0))
        (block $done
          (loop $each
            (br_if $done (i32.ge_u (local.get $i) (local.get $Ip)))
            (local.set $c (v128.load (i32.add (local.get $src) (local.get $i))))
            (local.set $h (i16x8.extend_low_i8x16_s (local.get $c)))
            (v128.store (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $h)))))
            (v128.store offset=16 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $h)))))
            (local.set $h (i16x8.extend_high_i8x16_s (local.get $c)))
            (v128.store offset=32 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $h)))))
            (v128.store offset=48 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $h)))))
            (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $each)))
        (call $dot_rows (local.get $x) (local.get $row) (local.get $bias) (local.get $out) (local.get $N) (local.get $Ip) (local.get $O) (local.get $o))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (br $outs))))

  ;; int4: codes [O, Ip / 2] bytes, code 2j in the low nibble of byte j, code 2j + 1 in the high one; per group of
  ;; G input features (G a multiple of 32) a scale and a zero point, gscale / gzero [O, groups] f32.
  ;; Ŵ[o, i] = gscale[o, g] · (codes[o, i] − gzero[o, g]), g = i / G.
  (func (export "matmul_int4") (param $x i32) (param $codes i32) (param $gscale i32) (param $gzero i32) (param $bias i32)
    (param $out i32) (param $row i32) (param $N i32) (param $Ip i32) (param $O i32) (param $G i32) (param $groups i32)
    (local $o i32) (local $i i32) (local $g i32) (local $end i32) (local $c v128) (local $lo v128) (local $hi v128)
    (local $v v128) (local $h v128) (local $s v128) (local $z v128) (local $src i32) (local $dst i32) (local $at i32)
    (block $outDone
      (loop $outs
        (br_if $outDone (i32.ge_u (local.get $o) (local.get $O)))
        (local.set $src (i32.add (local.get $codes) (i32.mul (local.get $o) (i32.shr_u (local.get $Ip) (i32.const 1)))))
        (local.set $dst (local.get $row))
        (local.set $i (i32.const 0))
        (local.set $g (i32.const 0))
        (block $groupsDone
          (loop $eachGroup
            (br_if $groupsDone (i32.ge_u (local.get $i) (local.get $Ip)))
            (local.set $at (i32.shl (i32.add (i32.mul (local.get $o) (local.get $groups)) (local.get $g)) (i32.const 2)))
            (local.set $s (v128.load32_splat (i32.add (local.get $gscale) (local.get $at))))
            (local.set $z (v128.load32_splat (i32.add (local.get $gzero) (local.get $at))))
            (local.set $end (i32.add (local.get $i) (local.get $G)))
            (if (i32.gt_u (local.get $end) (local.get $Ip)) (then (local.set $end (local.get $Ip))))
            (block $done
              (loop $each
                (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
                ;; 16 bytes: 32 codes, restored to order by interleaving the low and high nibbles
                (local.set $c (v128.load (i32.add (local.get $src) (i32.shr_u (local.get $i) (i32.const 1)))))
                (local.set $lo (v128.and (local.get $c) (v128.const i8x16 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15)))
                (local.set $hi (i8x16.shr_u (local.get $c) (i32.const 4)))
                ;; codes i … i + 15
                (local.set $v (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $lo) (local.get $hi)))
                ;; @int4_widen
                ;; codes i + 16 … i + 31
                (local.set $v (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $lo) (local.get $hi)))
                ;; @int4_widen
                (local.set $i (i32.add (local.get $i) (i32.const 32)))
                (br $each)))
            (local.set $g (i32.add (local.get $g) (i32.const 1)))
            (br $eachGroup)))
        (call $dot_rows (local.get $x) (local.get $row) (local.get $bias) (local.get $out) (local.get $N) (local.get $Ip) (local.get $O) (local.get $o))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (br $outs)))))
;; 16 unsigned codes in $v to 16 floats (code − z) · s at $dst, which then moves on by 64 bytes.
;; @define int4_widen
(local.set $h (i16x8.extend_low_i8x16_u (local.get $v)))
(v128.store (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_u (i32x4.extend_low_i16x8_u (local.get $h))) (local.get $z))))
(v128.store offset=16 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_u (i32x4.extend_high_i16x8_u (local.get $h))) (local.get $z))))
(local.set $h (i16x8.extend_high_i8x16_u (local.get $v)))
(v128.store offset=32 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_u (i32x4.extend_low_i16x8_u (local.get $h))) (local.get $z))))
(v128.store offset=48 (local.get $dst) (f32x4.mul (local.get $s) (f32x4.sub (f32x4.convert_i32x4_u (i32x4.extend_high_i16x8_u (local.get $h))) (local.get $z))))
(local.set $dst (i32.add (local.get $dst) (i32.const 64)))
;; @end
