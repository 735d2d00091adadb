;; The float32 matrix product C = A · B on WebAssembly SIMD, in the wasm backend's heap (imported memory). A [M, K],
;; B [K, N] and C [M, N] are row-major; pointers are byte offsets. wasm-gemm.ts runs it for the plain products of
;; the projections (x · W) instead of XNNPACK.
;;
;; Why it beats XNNPACK here: without fused multiply-add (relaxed SIMD is not on by default), a multiply-add is two
;; instructions, and the x86 microkernel XNNPACK picks for WebAssembly broadcasts each A value with a shuffle (which
;; competes with them for the vector ports) and, compiled by V8, spills accumulators to the stack. This kernel
;; broadcasts straight from memory (v128.load32_splat, a load), fits its tile in registers, and keeps the vector
;; ports on multiplies and adds: 25 to 30 GFLOP/s against XNNPACK's 16 to 22 on one core of this Zen 3 machine, whose
;; two multiply and two add ports make mul + add as fast as FMA would be.
;;
;; Layout: pack_b_all copies B once as panels of 8 columns, [⌈N/8⌉, K, 8] (the last panel zero-padded), which
;; wasm-gemm.ts keeps for a weight as long as the weight lives. pack_a copies A as groups of four rows interleaved,
;; [⌈M/4⌉, K, 4] (the last group zero-padded), so that a tile reads its four A values at constant offsets from one
;; pointer. Then panels works through k in chunks of KC = 2048 (one chunk at a small model's widths; smaller chunks
;; measured slower there), and in each, for each panel in its range (contiguous rows, streamed by the prefetcher while
;; every row group passes over them), each row group gets a 4 × 8 register tile (eight accumulators: a larger tile
;; makes V8 spill), stored into C by the first chunk and added to it by the others. Padded rows and columns are
;; computed but not stored. Within a chunk each C entry is a left-to-right float32 sum over k, the order of a naive
;; loop (and of XNNPACK's). For fewer than four rows, rows runs a 1 × 8 tile per row straight from A, summing even and
;; odd k apart and then adding the two. K must be at least 1 (the caller keeps K = 0 away). Threads split the panels
;; (wasm-gemm.ts); the packed A is shared, read-only.
;;
;; glu is the epilogue of a gated MLP's two products (act(x · W_gate) ⊙ (x · W_up)), run by each thread on the
;; columns it has just computed of both. `;; @pow2` lines are replaced by the block of scripts/wasm/pow2.wat.
;; @include scripts/wasm/pow2.wat
(module
  (import "env" "memory" (memory 1))

  ;; ap[g, k, r] = A[4g + r, k] for the M rows, zeros for the rows that pad the last group. Whole groups go four k at a
  ;; time (a 4 × 4 block of A, transposed by shuffles); the k left over, and the padded group, one value at a time.
  (func (export "pack_a") (param $a i32) (param $ap i32) (param $M i32) (param $K i32)
    (local $i i32) (local $k i32) (local $src i32) (local $dst i32) (local $rows i32) (local $whole i32) (local $k4 i32)
    (local $rs i32) (local $r0 v128) (local $r1 v128) (local $r2 v128) (local $r3 v128) (local $t0 v128) (local $t1 v128)
    (local.set $rows (i32.and (i32.add (local.get $M) (i32.const 3)) (i32.const -4)))
    (local.set $whole (i32.and (local.get $M) (i32.const -4)))
    (local.set $k4 (i32.and (local.get $K) (i32.const -4)))
    (local.set $rs (i32.shl (local.get $K) (i32.const 2))) ;; bytes per row of A, and per row of groups in ap / 4
    (block $blocks_done
      (loop $group
        (br_if $blocks_done (i32.ge_u (local.get $i) (local.get $whole)))
        (local.set $src (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $rs))))
        (local.set $dst (i32.add (local.get $ap) (i32.mul (local.get $i) (local.get $rs)))) ;; group i / 4: 16 K bytes each
        (local.set $k (i32.const 0))
        (block $group_done
          (loop $block
            (br_if $group_done (i32.ge_u (local.get $k) (local.get $k4)))
            (local.set $r0 (v128.load (local.get $src)))
            (local.set $r1 (v128.load (i32.add (local.get $src) (local.get $rs))))
            (local.set $r2 (v128.load (i32.add (local.get $src) (i32.shl (local.get $rs) (i32.const 1)))))
            (local.set $r3 (v128.load (i32.add (local.get $src) (i32.mul (local.get $rs) (i32.const 3)))))
            ;; t0 = r0[0] r1[0] r0[1] r1[1], t1 the same of r2 and r3: columns k and k + 1
            (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $r0) (local.get $r1)))
            (local.set $t1 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $r2) (local.get $r3)))
            (v128.store (local.get $dst) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t1)))
            (v128.store offset=16 (local.get $dst)
              (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t1)))
            ;; columns k + 2 and k + 3
            (local.set $t0 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $r0) (local.get $r1)))
            (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $r2) (local.get $r3)))
            (v128.store offset=32 (local.get $dst)
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t1)))
            (v128.store offset=48 (local.get $dst)
              (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t1)))
            (local.set $src (i32.add (local.get $src) (i32.const 16)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
            (local.set $k (i32.add (local.get $k) (i32.const 4)))
            (br $block)))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $group)))
    (local.set $i (i32.const 0))
    (block $rows_done
      (loop $row
        (br_if $rows_done (i32.ge_u (local.get $i) (local.get $rows)))
        (local.set $k (select (local.get $k4) (i32.const 0) (i32.lt_u (local.get $i) (local.get $whole))))
        (local.set $dst (i32.add (local.get $ap) (i32.add
          (i32.shl (i32.add (i32.mul (i32.shr_u (local.get $i) (i32.const 2)) (local.get $K)) (local.get $k)) (i32.const 4))
          (i32.shl (i32.and (local.get $i) (i32.const 3)) (i32.const 2)))))
        (local.set $src (i32.add (local.get $a) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $K)) (local.get $k)) (i32.const 2))))
        (block $row_done
          (loop $col
            (br_if $row_done (i32.ge_u (local.get $k) (local.get $K)))
            (f32.store (local.get $dst) (if (result f32) (i32.lt_u (local.get $i) (local.get $M))
              (then (f32.load (local.get $src))) (else (f32.const 0))))
            (local.set $src (i32.add (local.get $src) (i32.const 4)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $col)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $row))))

  ;; bp[k, 0..8) = B[k, j0..j0+w), zeros after w columns (w ≤ 8).
  (func $pack_b (param $b i32) (param $scratch i32) (param $N i32) (param $K i32) (param $j0 i32) (param $w i32)
    (local $src i32) (local $dst i32) (local $end i32) (local $c i32)
    (local.set $src (i32.add (local.get $b) (i32.shl (local.get $j0) (i32.const 2))))
    (local.set $dst (local.get $scratch))
    (local.set $end (i32.add (local.get $scratch) (i32.shl (local.get $K) (i32.const 5))))
    (if (i32.eq (local.get $w) (i32.const 8))
      (then
        (loop $k
          (v128.store (local.get $dst) (v128.load (local.get $src)))
          (v128.store offset=16 (local.get $dst) (v128.load offset=16 (local.get $src)))
          (local.set $src (i32.add (local.get $src) (i32.shl (local.get $N) (i32.const 2))))
          (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
          (br_if $k (i32.lt_u (local.get $dst) (local.get $end)))))
      (else
        (loop $k
          (v128.store (local.get $dst) (v128.const i32x4 0 0 0 0))
          (v128.store offset=16 (local.get $dst) (v128.const i32x4 0 0 0 0))
          (local.set $c (i32.const 0))
          (loop $col
            (f32.store
              (i32.add (local.get $dst) (i32.shl (local.get $c) (i32.const 2)))
              (f32.load (i32.add (local.get $src) (i32.shl (local.get $c) (i32.const 2)))))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br_if $col (i32.lt_u (local.get $c) (local.get $w))))
          (local.set $src (i32.add (local.get $src) (i32.shl (local.get $N) (i32.const 2))))
          (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
          (br_if $k (i32.lt_u (local.get $dst) (local.get $end)))))))

;; bp[j / 8, k, 0..8) = B[k, j..j+8) for every panel of 8 columns: B packed once, [⌈N/8⌉, K, 8], the last panel
  ;; zero-padded.
  (func (export "pack_b_all") (param $b i32) (param $bp i32) (param $N i32) (param $K i32)
    (local $j i32)
    (loop $panel
      (call $pack_b (local.get $b) (local.get $bp) (local.get $N) (local.get $K) (local.get $j)
        (select (i32.const 8) (i32.sub (local.get $N) (local.get $j)) (i32.ge_u (i32.sub (local.get $N) (local.get $j)) (i32.const 8))))
      (local.set $bp (i32.add (local.get $bp) (i32.shl (local.get $K) (i32.const 5))))
      (local.set $j (i32.add (local.get $j) (i32.const 8)))
      (br_if $panel (i32.lt_u (local.get $j) (local.get $N)))))

  ;; C[row, j0..j0+w) = the first w lanes of lo | hi, or plus them when $add (a later chunk of k).
  (func $store_row (param $pc i32) (param $lo v128) (param $hi v128) (param $w i32) (param $add i32)
    (local $c i32) (local $buf v128) (local $at i32)
    (if (i32.eq (local.get $w) (i32.const 8))
      (then
        (if (local.get $add) (then
          (local.set $lo (f32x4.add (v128.load (local.get $pc)) (local.get $lo)))
          (local.set $hi (f32x4.add (v128.load offset=16 (local.get $pc)) (local.get $hi)))))
        (v128.store (local.get $pc) (local.get $lo))
        (v128.store offset=16 (local.get $pc) (local.get $hi))
        (return)))
    ;; A tail panel: lane by lane (w < 8: at most seven scalars per row, chunk and call).
    (local.set $buf (local.get $lo))
    (loop $col
      (if (i32.eq (local.get $c) (i32.const 4)) (then (local.set $buf (local.get $hi))))
      (local.set $at (i32.add (local.get $pc) (i32.shl (local.get $c) (i32.const 2))))
      (f32.store (local.get $at) (f32.add (f32x4.extract_lane 0 (local.get $buf))
        (select (f32.load (local.get $at)) (f32.const 0) (local.get $add))))
      (local.set $buf (i8x16.shuffle 4 5 6 7 8 9 10 11 12 13 14 15 0 1 2 3 (local.get $buf) (local.get $buf)))
      (local.set $c (i32.add (local.get $c) (i32.const 1)))
      (br_if $col (i32.lt_u (local.get $c) (local.get $w)))))

  ;; Columns j0 .. j1 of C = A · B (see the top of this file), from A packed by pack_a at $ap and B packed by
  ;; pack_b_all at $b. j0 is a multiple of 8.
  (func (export "panels") (param $ap i32) (param $b i32) (param $c i32) (param $M i32) (param $N i32) (param $K i32)
    (param $j0 i32) (param $j1 i32)
    (local $k0 i32) (local $kc i32) (local $j i32) (local $w i32) (local $i i32) (local $cs i32) (local $pa i32)
    (local $bp i32) (local $pb i32) (local $end i32) (local $pc i32) (local $add i32)
    (local $b0 v128) (local $b1 v128) (local $s v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (if (i32.ge_u (local.get $j0) (local.get $j1)) (then (return)))
    (local.set $cs (i32.shl (local.get $N) (i32.const 2))) ;; bytes per row of C
    (loop $chunk
      (local.set $kc (select (i32.const 2048) (i32.sub (local.get $K) (local.get $k0))
        (i32.ge_u (i32.sub (local.get $K) (local.get $k0)) (i32.const 2048))))
      (local.set $add (i32.ne (local.get $k0) (i32.const 0)))
      (local.set $j (local.get $j0))
      (loop $panel
        (local.set $w (select (i32.const 8) (i32.sub (local.get $j1) (local.get $j))
          (i32.ge_u (i32.sub (local.get $j1) (local.get $j)) (i32.const 8))))
        ;; The panel's rows k0 .. k0+kc: panel j / 8 of the packed B, from row k0.
        (local.set $bp (i32.add (local.get $b) (i32.shl
          (i32.add (i32.mul (i32.shr_u (local.get $j) (i32.const 3)) (local.get $K)) (local.get $k0)) (i32.const 5))))
        (local.set $pa (i32.add (local.get $ap) (i32.shl (local.get $k0) (i32.const 4)))) ;; group 0 at k0
        (local.set $i (i32.const 0))
        (loop $group
          (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c01 (v128.const i32x4 0 0 0 0))
          (local.set $c10 (v128.const i32x4 0 0 0 0)) (local.set $c11 (v128.const i32x4 0 0 0 0))
          (local.set $c20 (v128.const i32x4 0 0 0 0)) (local.set $c21 (v128.const i32x4 0 0 0 0))
          (local.set $c30 (v128.const i32x4 0 0 0 0)) (local.set $c31 (v128.const i32x4 0 0 0 0))
          (local.set $pb (local.get $bp))
          (local.set $end (i32.add (local.get $bp) (i32.shl (local.get $kc) (i32.const 5))))
          (loop $k
            (local.set $b0 (v128.load (local.get $pb)))
            (local.set $b1 (v128.load offset=16 (local.get $pb)))
            (local.set $s (v128.load32_splat (local.get $pa)))
            (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $s) (local.get $b0))))
            (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $s) (local.get $b1))))
            (local.set $s (v128.load32_splat offset=4 (local.get $pa)))
            (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $s) (local.get $b0))))
            (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $s) (local.get $b1))))
            (local.set $s (v128.load32_splat offset=8 (local.get $pa)))
            (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $s) (local.get $b0))))
            (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $s) (local.get $b1))))
            (local.set $s (v128.load32_splat offset=12 (local.get $pa)))
            (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $s) (local.get $b0))))
            (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $s) (local.get $b1))))
            (local.set $pa (i32.add (local.get $pa) (i32.const 16)))
            (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
            (br_if $k (i32.lt_u (local.get $pb) (local.get $end))))
          ;; Rows i .. i+3 of C: a whole tile in place, else (a padded group or panel) those rows below M.
          (local.set $pc (i32.add (local.get $c)
            (i32.add (i32.mul (local.get $i) (local.get $cs)) (i32.shl (local.get $j) (i32.const 2)))))
          (if (i32.and (i32.eqz (local.get $add))
                (i32.and (i32.eq (local.get $w) (i32.const 8)) (i32.le_u (i32.add (local.get $i) (i32.const 4)) (local.get $M))))
            (then
              (v128.store (local.get $pc) (local.get $c00))
              (v128.store offset=16 (local.get $pc) (local.get $c01))
              (local.set $pc (i32.add (local.get $pc) (local.get $cs)))
              (v128.store (local.get $pc) (local.get $c10))
              (v128.store offset=16 (local.get $pc) (local.get $c11))
              (local.set $pc (i32.add (local.get $pc) (local.get $cs)))
              (v128.store (local.get $pc) (local.get $c20))
              (v128.store offset=16 (local.get $pc) (local.get $c21))
              (local.set $pc (i32.add (local.get $pc) (local.get $cs)))
              (v128.store (local.get $pc) (local.get $c30))
              (v128.store offset=16 (local.get $pc) (local.get $c31)))
            (else
              (call $store_row (local.get $pc) (local.get $c00) (local.get $c01) (local.get $w) (local.get $add))
              (if (i32.lt_u (i32.add (local.get $i) (i32.const 1)) (local.get $M)) (then
                (call $store_row (i32.add (local.get $pc) (local.get $cs)) (local.get $c10) (local.get $c11) (local.get $w)
                  (local.get $add))))
              (if (i32.lt_u (i32.add (local.get $i) (i32.const 2)) (local.get $M)) (then
                (call $store_row (i32.add (local.get $pc) (i32.shl (local.get $cs) (i32.const 1))) (local.get $c20)
                  (local.get $c21) (local.get $w) (local.get $add))))
              (if (i32.lt_u (i32.add (local.get $i) (i32.const 3)) (local.get $M)) (then
                (call $store_row (i32.add (local.get $pc) (i32.mul (local.get $cs) (i32.const 3))) (local.get $c30)
                  (local.get $c31) (local.get $w) (local.get $add))))))
          ;; The next group, at k0.
          (local.set $pa (i32.add (local.get $pa) (i32.shl (i32.sub (local.get $K) (local.get $kc)) (i32.const 4))))
          (local.set $i (i32.add (local.get $i) (i32.const 4)))
          (br_if $group (i32.lt_u (local.get $i) (local.get $M))))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br_if $panel (i32.lt_u (local.get $j) (local.get $j1))))
      (local.set $k0 (i32.add (local.get $k0) (i32.const 2048)))
      (br_if $chunk (i32.lt_u (local.get $k0) (local.get $K)))))
;; Columns j0 .. j1 of C = A · B for few rows (a decode step): each row of A as it is (no pack_a), a 1 × 8 tile per
  ;; panel of the packed B, over all of k (the panel streams once per row). Even and odd k go to separate accumulators
  ;; (added at the end), so that two chains of adds, not one, set the pace. j0 is a multiple of 8.
  (func (export "rows") (param $a i32) (param $b i32) (param $c i32) (param $M i32) (param $N i32) (param $K i32)
    (param $j0 i32) (param $j1 i32)
    (local $i i32) (local $j i32) (local $w i32) (local $pa i32) (local $pairs i32) (local $end i32) (local $pb i32)
    (local $s v128) (local $t v128) (local $lo v128) (local $hi v128) (local $lo1 v128) (local $hi1 v128)
    (if (i32.ge_u (local.get $j0) (local.get $j1)) (then (return)))
    (loop $row
      (local.set $j (local.get $j0))
      (loop $panel
        (local.set $w (select (i32.const 8) (i32.sub (local.get $j1) (local.get $j))
          (i32.ge_u (i32.sub (local.get $j1) (local.get $j)) (i32.const 8))))
        (local.set $pa (i32.add (local.get $a) (i32.shl (i32.mul (local.get $i) (local.get $K)) (i32.const 2))))
        (local.set $end (i32.add (local.get $pa) (i32.shl (local.get $K) (i32.const 2))))
        (local.set $pairs (i32.add (local.get $pa) (i32.shl (i32.and (local.get $K) (i32.const -2)) (i32.const 2))))
        (local.set $pb (i32.add (local.get $b) (i32.shl (i32.mul (i32.shr_u (local.get $j) (i32.const 3)) (local.get $K)) (i32.const 5))))
        (local.set $lo (v128.const i32x4 0 0 0 0))
        (local.set $hi (v128.const i32x4 0 0 0 0))
        (local.set $lo1 (v128.const i32x4 0 0 0 0))
        (local.set $hi1 (v128.const i32x4 0 0 0 0))
        (block $paired
          (loop $k
            (br_if $paired (i32.ge_u (local.get $pa) (local.get $pairs)))
            (local.set $s (v128.load32_splat (local.get $pa)))
            (local.set $t (v128.load32_splat offset=4 (local.get $pa)))
            (local.set $lo (f32x4.add (local.get $lo) (f32x4.mul (local.get $s) (v128.load (local.get $pb)))))
            (local.set $hi (f32x4.add (local.get $hi) (f32x4.mul (local.get $s) (v128.load offset=16 (local.get $pb)))))
            (local.set $lo1 (f32x4.add (local.get $lo1) (f32x4.mul (local.get $t) (v128.load offset=32 (local.get $pb)))))
            (local.set $hi1 (f32x4.add (local.get $hi1) (f32x4.mul (local.get $t) (v128.load offset=48 (local.get $pb)))))
            (local.set $pa (i32.add (local.get $pa) (i32.const 8)))
            (local.set $pb (i32.add (local.get $pb) (i32.const 64)))
            (br $k)))
        ;; an odd K's last k
        (if (i32.lt_u (local.get $pa) (local.get $end)) (then
          (local.set $s (v128.load32_splat (local.get $pa)))
          (local.set $lo (f32x4.add (local.get $lo) (f32x4.mul (local.get $s) (v128.load (local.get $pb)))))
          (local.set $hi (f32x4.add (local.get $hi) (f32x4.mul (local.get $s) (v128.load offset=16 (local.get $pb)))))))
        (call $store_row
          (i32.add (local.get $c) (i32.shl (i32.add (i32.mul (local.get $i) (local.get $N)) (local.get $j)) (i32.const 2)))
          (f32x4.add (local.get $lo) (local.get $lo1)) (f32x4.add (local.get $hi) (local.get $hi1)) (local.get $w) (i32.const 0))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br_if $panel (i32.lt_u (local.get $j) (local.get $j1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $row (i32.lt_u (local.get $i) (local.get $M)))))
;; C[i, j] = act(G[i, j]) · C[i, j] for the M rows and columns j0 .. j1 of G and C (both [M, N], row-major), where
  ;; act(g) = g σ(α g + β g³): SiLU with α = 1, β = 0, and GELU's tanh form with α = 2√(2/π), β = 0.044715 α (since
  ;; ½(1 + tanh z) = σ(2z)). σ(z) = 1 / (1 + e^-z), e^-z = 2^v with v = -z log2(e) clamped to [-127, 127] (σ is 0 or 1 to
  ;; float32 beyond). Four columns at a time, then one at a time (a splat, lane 0 stored).
  (func (export "glu") (param $g i32) (param $c i32) (param $M i32) (param $N i32) (param $j0 i32) (param $j1 i32)
    (param $alpha f32) (param $beta f32)
    (local $i i32) (local $j i32) (local $at i32) (local $four i32)
    (local $x v128) (local $v v128) (local $k v128) (local $r v128) (local $p v128)
    (if (i32.ge_u (local.get $j0) (local.get $j1)) (then (return)))
    (loop $row
      (local.set $j (local.get $j0))
      (loop $col
        (local.set $at (i32.shl (i32.add (i32.mul (local.get $i) (local.get $N)) (local.get $j)) (i32.const 2)))
        (local.set $four (i32.le_u (i32.add (local.get $j) (i32.const 4)) (local.get $j1)))
        (local.set $x (if (result v128) (local.get $four)
          (then (v128.load (i32.add (local.get $g) (local.get $at))))
          (else (v128.load32_splat (i32.add (local.get $g) (local.get $at))))))
        ;; v = -(α x + β x³) log2(e), clamped
        (local.set $v (f32x4.mul
          (f32x4.add (f32x4.mul (f32x4.splat (local.get $alpha)) (local.get $x))
            (f32x4.mul (f32x4.splat (local.get $beta)) (f32x4.mul (local.get $x) (f32x4.mul (local.get $x) (local.get $x)))))
          (v128.const f32x4 -1.4426950408889634 -1.4426950408889634 -1.4426950408889634 -1.4426950408889634)))
        (local.set $v (f32x4.min (f32x4.max (local.get $v)
          (v128.const f32x4 -127 -127 -127 -127)) (v128.const f32x4 127 127 127 127)))
        ;; @pow2
        ;; x / (1 + e^-z) · C
        (local.set $at (i32.add (local.get $c) (local.get $at)))
        (local.set $p (f32x4.div (local.get $x) (f32x4.add (local.get $p) (v128.const f32x4 1 1 1 1))))
        (if (local.get $four)
          (then
            (v128.store (local.get $at) (f32x4.mul (local.get $p) (v128.load (local.get $at))))
            (local.set $j (i32.add (local.get $j) (i32.const 4))))
          (else
            (f32.store (local.get $at) (f32.mul (f32x4.extract_lane 0 (local.get $p)) (f32.load (local.get $at))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))))
        (br_if $col (i32.lt_u (local.get $j) (local.get $j1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $row (i32.lt_u (local.get $i) (local.get $M)))))
)
