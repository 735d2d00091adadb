;; The inner loops of the fused attention kernel on WebAssembly SIMD, four float32 lanes per instruction: the scores
;; of one query row against a tile of keys, and the probability-weighted sum of the tile's values. Masking, the
;; soft cap and the online softmax's bookkeeping (a few operations per key, not per key × head dim) stay in
;; JavaScript (fused-simd.ts), and so do the per-key exponentials' callers: `tile_max` and `exp_sum` below.
;;
;; All pointers are byte offsets into the memory the module imports: on `wasm` the backend's own heap, where q, k
;; and v already are (read in place), on `cpu` a memory of its own they are copied into. Head dims are in floats
;; and multiples of 4 (otherwise the caller copies the rows, padded). scripts/build-wasm.mjs also assembles a
;; variant importing `(memory 1 65536 shared)`, for the backend's threaded build.
;;
;; `;; @pow2` lines are replaced by the block of scripts/wasm/pow2.wat (the root scripts/build-wasm.mjs pastes it,
;; as for ssm's scan.wat, since wasm modules cannot share code): it sets $p = 2^$v for v in [-127, 127] using $k and
;; $r, by 2^v = 2^round(v) 2^f with a degree-7 polynomial for 2^f (relative error below 5e-9 before float32
;; rounding); 2^-127 builds as +0.
;; @include scripts/wasm/pow2.wat
(module
  (import "env" "memory" (memory 1))

  ;; scores(q, k, n, dh, out, scale): out[j] = scale (q · k[j]) for the n rows of k (each dh floats, consecutive).
  ;; Four keys at a time (each vector of q loaded once for the four, their four sums reduced together and stored as
  ;; one vector), then one at a time for what is left.
  (func (export "scores") (param $q i32) (param $k i32) (param $n i32) (param $dh i32) (param $out i32) (param $scale f32)
    (local $j i32) (local $i i32) (local $rowBytes i32) (local $acc v128) (local $acc2 v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $qv v128) (local $u0 v128) (local $u1 v128)
    (local $k1 i32) (local $k2 i32) (local $k3 i32)
    (local.set $rowBytes (i32.shl (local.get $dh) (i32.const 2)))
    (block $quadsDone
      (loop $quads
        (br_if $quadsDone (i32.gt_u (i32.add (local.get $j) (i32.const 4)) (local.get $n)))
        (local.set $k1 (i32.add (local.get $k) (local.get $rowBytes)))
        (local.set $k2 (i32.add (local.get $k1) (local.get $rowBytes)))
        (local.set $k3 (i32.add (local.get $k2) (local.get $rowBytes)))
        (local.set $a0 (v128.const f32x4 0 0 0 0))
        (local.set $a1 (v128.const f32x4 0 0 0 0))
        (local.set $a2 (v128.const f32x4 0 0 0 0))
        (local.set $a3 (v128.const f32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (block $dimsDone
          (loop $dims
            (br_if $dimsDone (i32.ge_u (local.get $i) (local.get $rowBytes)))
            (local.set $qv (v128.load (i32.add (local.get $q) (local.get $i))))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $qv) (v128.load (i32.add (local.get $k) (local.get $i))))))
            (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $qv) (v128.load (i32.add (local.get $k1) (local.get $i))))))
            (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $qv) (v128.load (i32.add (local.get $k2) (local.get $i))))))
            (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $qv) (v128.load (i32.add (local.get $k3) (local.get $i))))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $dims)))
        ;; [Σa0, Σa1, Σa2, Σa3]: interleave pairs and add (lanes 0+2 and 1+3 of each), then gather and add again
        (local.set $u0 (f32x4.add
          (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a0) (local.get $a1))
          (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a0) (local.get $a1))))
        (local.set $u1 (f32x4.add
          (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a2) (local.get $a3))
          (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a2) (local.get $a3))))
        (v128.store (local.get $out)
          (f32x4.mul (f32x4.splat (local.get $scale))
            (f32x4.add
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $u0) (local.get $u1))
              (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $u0) (local.get $u1)))))
        (local.set $k (i32.add (local.get $k3) (local.get $rowBytes)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $quads)))
    ;; the last keys, one at a time
    (block $done
      (loop $keys
        (br_if $done (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $acc (v128.const f32x4 0 0 0 0))
        (local.set $acc2 (v128.const f32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        ;; two accumulators over pairs of vectors (dh / 4 may be odd: the last vector goes to $acc alone)
        (block $pairsDone
          (loop $pairs
            (br_if $pairsDone (i32.gt_u (i32.add (local.get $i) (i32.const 32)) (local.get $rowBytes)))
            (local.set $acc (f32x4.add (local.get $acc)
              (f32x4.mul (v128.load (i32.add (local.get $q) (local.get $i))) (v128.load (i32.add (local.get $k) (local.get $i))))))
            (local.set $acc2 (f32x4.add (local.get $acc2)
              (f32x4.mul (v128.load offset=16 (i32.add (local.get $q) (local.get $i))) (v128.load offset=16 (i32.add (local.get $k) (local.get $i))))))
            (local.set $i (i32.add (local.get $i) (i32.const 32)))
            (br $pairs)))
        (if (i32.lt_u (local.get $i) (local.get $rowBytes))
          (then
            (local.set $acc (f32x4.add (local.get $acc)
              (f32x4.mul (v128.load (i32.add (local.get $q) (local.get $i))) (v128.load (i32.add (local.get $k) (local.get $i))))))))
        (local.set $acc (f32x4.add (local.get $acc) (local.get $acc2)))
        (f32.store (local.get $out)
          (f32.mul (local.get $scale)
            (f32.add
              (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
              (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc))))))
        (local.set $k (i32.add (local.get $k) (local.get $rowBytes)))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $keys))))

  ;; accumulate(p, v, n, dv, acc, alpha): acc <- alpha acc + Σ_j p[j] v[j] over the n rows of v (each dv floats,
  ;; consecutive). The accumulator is walked in slices of four vectors held in locals across all n rows (no load
  ;; and store of acc per row), then one vector at a time for what is left.
  (func (export "accumulate") (param $p i32) (param $v i32) (param $n i32) (param $dv i32) (param $acc i32) (param $alpha f32)
    (local $j i32) (local $i i32) (local $rowBytes i32) (local $w v128) (local $pj i32) (local $vj i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local.set $rowBytes (i32.shl (local.get $dv) (i32.const 2)))
    (local.set $w (f32x4.splat (local.get $alpha)))
    ;; slices of 16 floats
    (block $slicesDone
      (loop $slices
        (br_if $slicesDone (i32.gt_u (i32.add (local.get $i) (i32.const 64)) (local.get $rowBytes)))
        (local.set $a0 (f32x4.mul (local.get $w) (v128.load (i32.add (local.get $acc) (local.get $i)))))
        (local.set $a1 (f32x4.mul (local.get $w) (v128.load offset=16 (i32.add (local.get $acc) (local.get $i)))))
        (local.set $a2 (f32x4.mul (local.get $w) (v128.load offset=32 (i32.add (local.get $acc) (local.get $i)))))
        (local.set $a3 (f32x4.mul (local.get $w) (v128.load offset=48 (i32.add (local.get $acc) (local.get $i)))))
        (local.set $pj (local.get $p))
        (local.set $vj (i32.add (local.get $v) (local.get $i)))
        (local.set $j (i32.const 0))
        (block $rowsDone
          (loop $rows
            (br_if $rowsDone (i32.ge_u (local.get $j) (local.get $n)))
            (local.set $w (v128.load32_splat (local.get $pj)))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $w) (v128.load (local.get $vj)))))
            (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $w) (v128.load offset=16 (local.get $vj)))))
            (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $w) (v128.load offset=32 (local.get $vj)))))
            (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $w) (v128.load offset=48 (local.get $vj)))))
            (local.set $pj (i32.add (local.get $pj) (i32.const 4)))
            (local.set $vj (i32.add (local.get $vj) (local.get $rowBytes)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $rows)))
        (v128.store (i32.add (local.get $acc) (local.get $i)) (local.get $a0))
        (v128.store offset=16 (i32.add (local.get $acc) (local.get $i)) (local.get $a1))
        (v128.store offset=32 (i32.add (local.get $acc) (local.get $i)) (local.get $a2))
        (v128.store offset=48 (i32.add (local.get $acc) (local.get $i)) (local.get $a3))
        (local.set $w (f32x4.splat (local.get $alpha)))
        (local.set $i (i32.add (local.get $i) (i32.const 64)))
        (br $slices)))
    ;; the remaining vectors, one at a time
    (block $vectorsDone
      (loop $vectors
        (br_if $vectorsDone (i32.ge_u (local.get $i) (local.get $rowBytes)))
        (local.set $a0 (f32x4.mul (local.get $w) (v128.load (i32.add (local.get $acc) (local.get $i)))))
        (local.set $pj (local.get $p))
        (local.set $vj (i32.add (local.get $v) (local.get $i)))
        (local.set $j (i32.const 0))
        (block $rowsDone
          (loop $rows
            (br_if $rowsDone (i32.ge_u (local.get $j) (local.get $n)))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load32_splat (local.get $pj)) (v128.load (local.get $vj)))))
            (local.set $pj (i32.add (local.get $pj) (i32.const 4)))
            (local.set $vj (i32.add (local.get $vj) (local.get $rowBytes)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $rows)))
        (v128.store (i32.add (local.get $acc) (local.get $i)) (local.get $a0))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $vectors))))

  ;; tile_max(s, n): the largest of s[0 .. n), read as ceil(n / 4) whole vectors (the caller pads with −∞).
  (func (export "tile_max") (param $s i32) (param $n i32) (result f32)
    (local $end i32) (local $m v128)
    (local.set $end (i32.add (local.get $s) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 2))))
    (local.set $m (v128.const f32x4 -inf -inf -inf -inf))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $s) (local.get $end)))
        (local.set $m (f32x4.max (local.get $m) (v128.load (local.get $s))))
        (local.set $s (i32.add (local.get $s) (i32.const 16)))
        (br $vectors)))
    (f32.max
      (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
      (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m)))))

  ;; exp_sum(s, out, n, max): out[j] = e^(s[j] − max) for j < ceil(n / 4) · 4 (−∞ padding gives 0); returns their sum.
  (func (export "exp_sum") (param $s i32) (param $out i32) (param $n i32) (param $max f32) (result f32)
    (local $end i32) (local $mx v128) (local $v v128) (local $k v128) (local $r v128) (local $p v128) (local $acc v128)
    (local.set $end (i32.add (local.get $s) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 2))))
    (local.set $mx (f32x4.splat (local.get $max)))
    (local.set $acc (v128.const f32x4 0 0 0 0))
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $s) (local.get $end)))
        ;; v = (s − max) log2(e), clamped to [−127, 127]
        (local.set $v (f32x4.pmin (v128.const f32x4 127 127 127 127)
          (f32x4.pmax (v128.const f32x4 -127 -127 -127 -127)
            (f32x4.mul (f32x4.sub (v128.load (local.get $s)) (local.get $mx))
              (v128.const f32x4 1.4426950408889634 1.4426950408889634 1.4426950408889634 1.4426950408889634)))))
        ;; @pow2
        (v128.store (local.get $out) (local.get $p))
        (local.set $acc (f32x4.add (local.get $acc) (local.get $p)))
        (local.set $s (i32.add (local.get $s) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (br $vectors)))
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))
)
