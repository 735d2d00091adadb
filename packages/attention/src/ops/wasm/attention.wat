;; The inner loops of the fused attention kernel on WebAssembly SIMD, four float32 lanes per instruction: the scores
;; of one query row against a tile of keys, and the probability-weighted sum of the tile's values. Masking, the
;; soft cap and the online softmax's bookkeeping (a few operations per key, not per key × head dim) stay in
;; JavaScript (fused-simd.ts). All pointers are byte offsets into this module's memory; head dims are in floats and
;; multiples of 4 (the caller pads rows).
(module
  (memory (export "memory") 1)

  ;; scores(q, k, n, dh, out, scale): out[j] = scale (q · k[j]) for the n rows of k (each dh floats, consecutive).
  (func (export "scores") (param $q i32) (param $k i32) (param $n i32) (param $dh i32) (param $out i32) (param $scale f32)
    (local $j i32) (local $i i32) (local $rowBytes i32) (local $acc v128) (local $acc2 v128)
    (local.set $rowBytes (i32.shl (local.get $dh) (i32.const 2)))
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
)
