;; The tiled path of the fused attention kernel on WebAssembly SIMD (fused-simd.ts runs it for keys at consecutive
;; positions, no soft cap and value dims a multiple of 8; attention.wat's per-row loops do the rest): four query rows
;; of one head at a time against panels of eight keys, as in a matrix product's register tile, instead of one row
;; against the keys one dot product at a time. A module of its own, so that each stays under the 4 KB a browser's main
;; thread compiles synchronously. Pointers are byte offsets into the imported memory (the wasm backend's heap, or the
;; cpu backend's copy); scripts/build-wasm.mjs also assembles a variant importing a shared memory.
;;
;; `;; @pow2` lines are replaced by the block of scripts/wasm/pow2.wat (as in attention.wat and ssm's scan.wat, since
;; wasm modules cannot share code): it sets $p = 2^$v for v in [-127, 127] using $k and $r.
;; @include scripts/wasm/pow2.wat
(module
  (import "env" "memory" (memory 1))

  ;; pack_kt lays a head's keys out transposed in panels; flash walks the four rows' key ranges in chunks of 64 keys:
  ;; qk scores a chunk (a 4 × 8 tile per panel, eight accumulators: every q value broadcast from memory, two key
  ;; vectors per dimension), chunk_softmax masks it (the rows' prefix and window index ranges), takes the online
  ;; softmax's step for each row and lays the weights out key by key, and pv adds the weighted values to the four
  ;; accumulator rows (a 4 × 8 tile per eight value dims).

  ;; pack_kt(k, kp, n, dh): kp[p, d, c] = k[8p + c, d] for the n rows of k (dh floats each), zeros past n: the keys
  ;; transposed in panels of eight, [⌈n / 8⌉, dh, 8].
  (func (export "pack_kt") (param $k i32) (param $kp i32) (param $n i32) (param $dh i32)
    (local $j i32) (local $d i32) (local $src i32) (local $dst i32) (local $rows i32)
    (local.set $rows (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8)))
    (block $done
      (loop $key
        (br_if $done (i32.ge_u (local.get $j) (local.get $rows)))
        (local.set $dst (i32.add (local.get $kp) (i32.shl
          (i32.add (i32.mul (i32.shr_u (local.get $j) (i32.const 3)) (i32.shl (local.get $dh) (i32.const 3)))
            (i32.and (local.get $j) (i32.const 7)))
          (i32.const 2))))
        (local.set $src (i32.add (local.get $k) (i32.shl (i32.mul (local.get $j) (local.get $dh)) (i32.const 2))))
        (local.set $d (i32.const 0))
        (if (i32.lt_u (local.get $j) (local.get $n))
          (then
            (loop $dim
              (f32.store (local.get $dst) (f32.load (local.get $src)))
              (local.set $src (i32.add (local.get $src) (i32.const 4)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
              (local.set $d (i32.add (local.get $d) (i32.const 1)))
              (br_if $dim (i32.lt_u (local.get $d) (local.get $dh)))))
          (else
            (loop $zero
              (f32.store (local.get $dst) (f32.const 0))
              (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
              (local.set $d (i32.add (local.get $d) (i32.const 1)))
              (br_if $zero (i32.lt_u (local.get $d) (local.get $dh))))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $key))))

  ;; qk: s[r, 8p + c] = scale Σ_d q_r[d] kp[p, d, c] for the four rows q_r = q + r qStride (dh floats each) and the
  ;; np panels at kp; s is [4, 64] (rows 256 bytes apart).
  (func $qk (param $q i32) (param $qStride i32) (param $kp i32) (param $dh i32) (param $np i32) (param $s i32) (param $scale f32)
    (local $q1 i32) (local $q2 i32) (local $q3 i32) (local $p i32) (local $d4 i32) (local $end i32) (local $out i32)
    (local $a v128) (local $b0 v128) (local $b1 v128) (local $sc v128)
    (local $c0 v128) (local $c1 v128) (local $c2 v128) (local $c3 v128) (local $c4 v128) (local $c5 v128) (local $c6 v128) (local $c7 v128)
    (local.set $q1 (i32.add (local.get $q) (local.get $qStride)))
    (local.set $q2 (i32.add (local.get $q1) (local.get $qStride)))
    (local.set $q3 (i32.add (local.get $q2) (local.get $qStride)))
    (local.set $end (i32.shl (local.get $dh) (i32.const 2)))
    (local.set $sc (f32x4.splat (local.get $scale)))
    (local.set $out (local.get $s))
    (loop $panel
      (local.set $c0 (v128.const i32x4 0 0 0 0))
      (local.set $c1 (v128.const i32x4 0 0 0 0))
      (local.set $c2 (v128.const i32x4 0 0 0 0))
      (local.set $c3 (v128.const i32x4 0 0 0 0))
      (local.set $c4 (v128.const i32x4 0 0 0 0))
      (local.set $c5 (v128.const i32x4 0 0 0 0))
      (local.set $c6 (v128.const i32x4 0 0 0 0))
      (local.set $c7 (v128.const i32x4 0 0 0 0))
      (local.set $d4 (i32.const 0))
      (loop $dim
        (local.set $b0 (v128.load (local.get $kp)))
        (local.set $b1 (v128.load offset=16 (local.get $kp)))
        (local.set $a (v128.load32_splat (i32.add (local.get $q) (local.get $d4))))
        (local.set $c0 (f32x4.add (local.get $c0) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c1 (f32x4.add (local.get $c1) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat (i32.add (local.get $q1) (local.get $d4))))
        (local.set $c2 (f32x4.add (local.get $c2) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c3 (f32x4.add (local.get $c3) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat (i32.add (local.get $q2) (local.get $d4))))
        (local.set $c4 (f32x4.add (local.get $c4) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c5 (f32x4.add (local.get $c5) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $a (v128.load32_splat (i32.add (local.get $q3) (local.get $d4))))
        (local.set $c6 (f32x4.add (local.get $c6) (f32x4.mul (local.get $a) (local.get $b0))))
        (local.set $c7 (f32x4.add (local.get $c7) (f32x4.mul (local.get $a) (local.get $b1))))
        (local.set $kp (i32.add (local.get $kp) (i32.const 32)))
        (local.set $d4 (i32.add (local.get $d4) (i32.const 4)))
        (br_if $dim (i32.lt_u (local.get $d4) (local.get $end))))
      (v128.store (local.get $out) (f32x4.mul (local.get $sc) (local.get $c0)))
      (v128.store offset=16 (local.get $out) (f32x4.mul (local.get $sc) (local.get $c1)))
      (v128.store offset=256 (local.get $out) (f32x4.mul (local.get $sc) (local.get $c2)))
      (v128.store offset=272 (local.get $out) (f32x4.mul (local.get $sc) (local.get $c3)))
      (v128.store offset=512 (local.get $out) (f32x4.mul (local.get $sc) (local.get $c4)))
      (v128.store offset=528 (local.get $out) (f32x4.mul (local.get $sc) (local.get $c5)))
      (v128.store offset=768 (local.get $out) (f32x4.mul (local.get $sc) (local.get $c6)))
      (v128.store offset=784 (local.get $out) (f32x4.mul (local.get $sc) (local.get $c7)))
      (local.set $out (i32.add (local.get $out) (i32.const 32)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $panel (i32.lt_u (local.get $p) (local.get $np)))))

  ;; chunk_softmax: for each of the four rows of s ([4, 64], keys key0 .. key0 + nk), hides the keys outside the row's
  ;; ranges (bounds: per row, i32 prefix end, window start, window end: key i is seen if i < prefix end or window
  ;; start ≤ i < window end), then takes the online softmax's step: the row's new max, alpha = e^(old max − new max),
  ;; sum ← alpha sum + Σ e^(s − new max) (state, per row 16 bytes: max f32 at 0, alpha f32 at 4, sum f64 at 8), and
  ;; the weights e^(s − new max) stored key by key, pi[j, r] (16 bytes per key).
  (func $chunk_softmax (param $s i32) (param $nk i32) (param $key0 i32) (param $bounds i32) (param $state i32) (param $pi i32)
    (local $rw i32) (local $row i32) (local $j i32) (local $at i32) (local $st i32)
    (local $pe v128) (local $lo v128) (local $hi v128) (local $idx v128) (local $x v128) (local $m v128) (local $acc v128)
    (local $tm f32) (local $old f32) (local $new f32) (local $alpha f32)
    (local $v v128) (local $k v128) (local $r v128) (local $p v128)
    (loop $rows
      (local.set $row (i32.add (local.get $s) (i32.shl (local.get $rw) (i32.const 8))))
      (local.set $at (i32.add (local.get $bounds) (i32.mul (local.get $rw) (i32.const 12))))
      (local.set $pe (i32x4.splat (i32.load (local.get $at))))
      (local.set $lo (i32x4.splat (i32.load offset=4 (local.get $at))))
      (local.set $hi (i32x4.splat (i32.load offset=8 (local.get $at))))
      (local.set $idx (i32x4.add (i32x4.splat (local.get $key0)) (v128.const i32x4 0 1 2 3)))
      (local.set $m (v128.const f32x4 -inf -inf -inf -inf))
      (local.set $j (i32.const 0))
      (loop $mask
        (local.set $x (v128.bitselect
          (v128.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2))))
          (v128.const f32x4 -inf -inf -inf -inf)
          (v128.or (i32x4.lt_s (local.get $idx) (local.get $pe))
            (v128.and (i32x4.ge_s (local.get $idx) (local.get $lo)) (i32x4.lt_s (local.get $idx) (local.get $hi))))))
        (v128.store (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2))) (local.get $x))
        (local.set $m (f32x4.max (local.get $m) (local.get $x)))
        (local.set $idx (i32x4.add (local.get $idx) (v128.const i32x4 4 4 4 4)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br_if $mask (i32.lt_u (local.get $j) (local.get $nk))))
      (local.set $tm (f32.max
        (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
        (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m)))))
      (local.set $st (i32.add (local.get $state) (i32.shl (local.get $rw) (i32.const 4))))
      (local.set $old (f32.load (local.get $st)))
      (local.set $new (f32.max (local.get $old) (local.get $tm)))
      ;; alpha = e^(old − new): 1 when the max holds, 0 from −∞ (and for −∞ − −∞, a row that has seen no key yet,
      ;; whose NaN the clamp turns into −127, 2^−127 = +0)
      (local.set $v (f32x4.pmin (v128.const f32x4 127 127 127 127) (f32x4.pmax (v128.const f32x4 -127 -127 -127 -127)
        (f32x4.mul (f32x4.splat (f32.sub (local.get $old) (local.get $new)))
          (v128.const f32x4 1.4426950408889634 1.4426950408889634 1.4426950408889634 1.4426950408889634)))))
      ;; @pow2
      (local.set $alpha (f32x4.extract_lane 0 (local.get $p)))
      (f32.store (local.get $st) (local.get $new))
      (f32.store offset=4 (local.get $st) (local.get $alpha))
      ;; the weights, e^(s − new) (hidden keys: e^−∞ = 0; a row with no key yet: the clamp's 0 again)
      (local.set $m (f32x4.splat (local.get $new)))
      (local.set $acc (v128.const i32x4 0 0 0 0))
      (local.set $j (i32.const 0))
      (loop $exps
        (local.set $v (f32x4.pmin (v128.const f32x4 127 127 127 127) (f32x4.pmax (v128.const f32x4 -127 -127 -127 -127)
          (f32x4.mul (f32x4.sub (v128.load (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2)))) (local.get $m))
            (v128.const f32x4 1.4426950408889634 1.4426950408889634 1.4426950408889634 1.4426950408889634)))))
        ;; @pow2
        (local.set $acc (f32x4.add (local.get $acc) (local.get $p)))
        (local.set $at (i32.add (local.get $pi) (i32.add (i32.shl (local.get $j) (i32.const 4)) (i32.shl (local.get $rw) (i32.const 2)))))
        (f32.store (local.get $at) (f32x4.extract_lane 0 (local.get $p)))
        (f32.store offset=16 (local.get $at) (f32x4.extract_lane 1 (local.get $p)))
        (f32.store offset=32 (local.get $at) (f32x4.extract_lane 2 (local.get $p)))
        (f32.store offset=48 (local.get $at) (f32x4.extract_lane 3 (local.get $p)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br_if $exps (i32.lt_u (local.get $j) (local.get $nk))))
      (f64.store offset=8 (local.get $st)
        (f64.add (f64.mul (f64.load offset=8 (local.get $st)) (f64.promote_f32 (local.get $alpha)))
          (f64.promote_f32 (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
            (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))))
      (local.set $rw (i32.add (local.get $rw) (i32.const 1)))
      (br_if $rows (i32.lt_u (local.get $rw) (i32.const 4)))))

  ;; pv: acc_r ← alpha_r acc_r + Σ_j pi[j, r] v[j] for the four accumulator rows (acc + r dv floats) and the nk rows
  ;; of v (vRow bytes apart), eight value dims at a time (dv a multiple of 8); alpha_r from state (as chunk_softmax).
  (func $pv (param $pi i32) (param $v i32) (param $vRow i32) (param $nk i32) (param $acc i32) (param $dv i32) (param $state i32)
    (local $col i32) (local $end i32) (local $pj i32) (local $vj i32) (local $pend i32) (local $rowBytes i32)
    (local $a0 i32) (local $a1 i32) (local $a2 i32) (local $a3 i32)
    (local $w0 v128) (local $w1 v128) (local $w2 v128) (local $w3 v128) (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c0 v128) (local $c1 v128) (local $c2 v128) (local $c3 v128) (local $c4 v128) (local $c5 v128) (local $c6 v128) (local $c7 v128)
    (local.set $rowBytes (i32.shl (local.get $dv) (i32.const 2)))
    (local.set $a0 (local.get $acc))
    (local.set $a1 (i32.add (local.get $a0) (local.get $rowBytes)))
    (local.set $a2 (i32.add (local.get $a1) (local.get $rowBytes)))
    (local.set $a3 (i32.add (local.get $a2) (local.get $rowBytes)))
    (local.set $w0 (v128.load32_splat offset=4 (local.get $state)))
    (local.set $w1 (v128.load32_splat offset=20 (local.get $state)))
    (local.set $w2 (v128.load32_splat offset=36 (local.get $state)))
    (local.set $w3 (v128.load32_splat offset=52 (local.get $state)))
    (local.set $pend (i32.add (local.get $pi) (i32.shl (local.get $nk) (i32.const 4))))
    (loop $cols
      (local.set $c0 (f32x4.mul (local.get $w0) (v128.load (i32.add (local.get $a0) (local.get $col)))))
      (local.set $c1 (f32x4.mul (local.get $w0) (v128.load offset=16 (i32.add (local.get $a0) (local.get $col)))))
      (local.set $c2 (f32x4.mul (local.get $w1) (v128.load (i32.add (local.get $a1) (local.get $col)))))
      (local.set $c3 (f32x4.mul (local.get $w1) (v128.load offset=16 (i32.add (local.get $a1) (local.get $col)))))
      (local.set $c4 (f32x4.mul (local.get $w2) (v128.load (i32.add (local.get $a2) (local.get $col)))))
      (local.set $c5 (f32x4.mul (local.get $w2) (v128.load offset=16 (i32.add (local.get $a2) (local.get $col)))))
      (local.set $c6 (f32x4.mul (local.get $w3) (v128.load (i32.add (local.get $a3) (local.get $col)))))
      (local.set $c7 (f32x4.mul (local.get $w3) (v128.load offset=16 (i32.add (local.get $a3) (local.get $col)))))
      (local.set $pj (local.get $pi))
      (local.set $vj (i32.add (local.get $v) (local.get $col)))
      (block $keysDone
        (loop $keys
          (br_if $keysDone (i32.ge_u (local.get $pj) (local.get $pend)))
          (local.set $b0 (v128.load (local.get $vj)))
          (local.set $b1 (v128.load offset=16 (local.get $vj)))
          (local.set $a (v128.load32_splat (local.get $pj)))
          (local.set $c0 (f32x4.add (local.get $c0) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c1 (f32x4.add (local.get $c1) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $a (v128.load32_splat offset=4 (local.get $pj)))
          (local.set $c2 (f32x4.add (local.get $c2) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c3 (f32x4.add (local.get $c3) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $a (v128.load32_splat offset=8 (local.get $pj)))
          (local.set $c4 (f32x4.add (local.get $c4) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c5 (f32x4.add (local.get $c5) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $a (v128.load32_splat offset=12 (local.get $pj)))
          (local.set $c6 (f32x4.add (local.get $c6) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c7 (f32x4.add (local.get $c7) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $pj (i32.add (local.get $pj) (i32.const 16)))
          (local.set $vj (i32.add (local.get $vj) (local.get $vRow)))
          (br $keys)))
      (v128.store (i32.add (local.get $a0) (local.get $col)) (local.get $c0))
      (v128.store offset=16 (i32.add (local.get $a0) (local.get $col)) (local.get $c1))
      (v128.store (i32.add (local.get $a1) (local.get $col)) (local.get $c2))
      (v128.store offset=16 (i32.add (local.get $a1) (local.get $col)) (local.get $c3))
      (v128.store (i32.add (local.get $a2) (local.get $col)) (local.get $c4))
      (v128.store offset=16 (i32.add (local.get $a2) (local.get $col)) (local.get $c5))
      (v128.store (i32.add (local.get $a3) (local.get $col)) (local.get $c6))
      (v128.store offset=16 (i32.add (local.get $a3) (local.get $col)) (local.get $c7))
      (local.set $col (i32.add (local.get $col) (i32.const 32)))
      (br_if $cols (i32.lt_u (local.get $col) (local.get $rowBytes)))))

  ;; flash(q, qStride, kp, v, S, dh, dv, scale, bounds, lo1, hi1, lo2, hi2, work): four query rows (q + r qStride,
  ;; dh floats each) of one head against its S keys (kp: packed by pack_kt) and values (v: S rows of dv floats),
  ;; over the keys lo1 .. hi1 then lo2 .. hi2 (lo1 and lo2 multiples of 8; the ranges apart by a panel at least) in
  ;; chunks of 64, each row masked by its own bounds (see chunk_softmax). work: s [4, 64] f32 at 0, pi [64, 4] at
  ;; 1024, state [4] at 2048 (per row: max, alpha, sum), then acc [4, dv] at 2112: left unnormalised, with each
  ;; row's sum in state (0 for a row that saw no key).
  (func (export "flash") (param $q i32) (param $qStride i32) (param $kp i32) (param $v i32) (param $S i32) (param $dh i32)
    (param $dv i32) (param $scale f32) (param $bounds i32) (param $lo1 i32) (param $hi1 i32) (param $lo2 i32) (param $hi2 i32)
    (param $work i32)
    (local $at i32) (local $end i32) (local $range i32) (local $lo i32) (local $hi i32) (local $key0 i32) (local $np i32)
    (local.set $at (i32.add (local.get $work) (i32.const 2112)))
    (local.set $end (i32.add (local.get $at) (i32.shl (local.get $dv) (i32.const 4))))
    (loop $zero
      (v128.store (local.get $at) (v128.const i32x4 0 0 0 0))
      (local.set $at (i32.add (local.get $at) (i32.const 16)))
      (br_if $zero (i32.lt_u (local.get $at) (local.get $end))))
    (local.set $at (i32.add (local.get $work) (i32.const 2048)))
    (local.set $end (i32.add (local.get $at) (i32.const 64)))
    (loop $init
      (f32.store (local.get $at) (f32.const -inf))
      (f32.store offset=4 (local.get $at) (f32.const 1))
      (f64.store offset=8 (local.get $at) (f64.const 0))
      (local.set $at (i32.add (local.get $at) (i32.const 16)))
      (br_if $init (i32.lt_u (local.get $at) (local.get $end))))
    (loop $ranges
      (local.set $lo (select (local.get $lo1) (local.get $lo2) (i32.eqz (local.get $range))))
      (local.set $hi (select (local.get $hi1) (local.get $hi2) (i32.eqz (local.get $range))))
      (local.set $key0 (local.get $lo))
      (block $chunksDone
        (loop $chunks
          (br_if $chunksDone (i32.ge_s (local.get $key0) (local.get $hi)))
          (local.set $np (i32.shr_u (i32.add (i32.sub (local.get $hi) (local.get $key0)) (i32.const 7)) (i32.const 3)))
          (if (i32.gt_u (local.get $np) (i32.const 8)) (then (local.set $np (i32.const 8))))
          (call $qk (local.get $q) (local.get $qStride)
            (i32.add (local.get $kp) (i32.shl (i32.mul (i32.shr_u (local.get $key0) (i32.const 3)) (local.get $dh)) (i32.const 5)))
            (local.get $dh) (local.get $np) (local.get $work) (local.get $scale))
          (call $chunk_softmax (local.get $work) (i32.shl (local.get $np) (i32.const 3)) (local.get $key0) (local.get $bounds)
            (i32.add (local.get $work) (i32.const 2048)) (i32.add (local.get $work) (i32.const 1024)))
          ;; the values of real keys only (rows past S are not v's)
          (call $pv (i32.add (local.get $work) (i32.const 1024))
            (i32.add (local.get $v) (i32.shl (i32.mul (local.get $key0) (local.get $dv)) (i32.const 2)))
            (i32.shl (local.get $dv) (i32.const 2))
            (select (i32.shl (local.get $np) (i32.const 3)) (i32.sub (local.get $S) (local.get $key0))
              (i32.le_s (i32.shl (local.get $np) (i32.const 3)) (i32.sub (local.get $S) (local.get $key0))))
            (i32.add (local.get $work) (i32.const 2112)) (local.get $dv) (i32.add (local.get $work) (i32.const 2048)))
          (local.set $key0 (i32.add (local.get $key0) (i32.const 64)))
          (br $chunks)))
      (local.set $range (i32.add (local.get $range) (i32.const 1)))
      (br_if $ranges (i32.lt_u (local.get $range) (i32.const 2)))))
)
