/**
 * The fused attention forward on WebAssembly SIMD: this file lays q, k and v out in the modules' memory (rows padded
 * to whole vectors). A prefill over keys at consecutive positions without a soft cap takes the tiled path
 * (`attention-tiled.wat`, {@link tiledForward}): four query rows of a head at a time against a head's keys packed in
 * panels, the online softmax in the module. Otherwise (`attention.wat`) each query row walks the keys in tiles: the
 * module scores a tile, JavaScript applies the masks, the soft cap and the online softmax's running max and sum, and
 * the module adds the tile's weighted values to the row's accumulator. Same rules as the typed-array loop in
 * `fused.ts`, in float32 lanes instead of float64.
 *
 * @module
 */
import { instantiateWasmIn, runWasmTask, wasmTaskThreads, type WasmTask } from '@slmkit/core';
import { ATTENTION_TILED_SHARED_WASM_BASE64, ATTENTION_TILED_WASM_BASE64 } from './attention-tiled-wasm.js';
import { ATTENTION_SHARED_WASM_BASE64, ATTENTION_WASM_BASE64 } from './attention-wasm.js';

interface AttentionExports {
  scores(q: number, k: number, n: number, dh: number, out: number, scale: number): void;
  accumulate(p: number, v: number, n: number, dv: number, acc: number, alpha: number): void;
  tile_max(s: number, n: number): number;
  exp_sum(s: number, out: number, n: number, max: number): number;
}

/** attention-tiled.wat's exports (pointers are byte offsets). */
interface TiledExports {
  pack_kt(k: number, kp: number, n: number, dh: number): void;
  flash(
    q: number, qStride: number, kp: number, v: number, S: number, dh: number, dv: number, scale: number, bounds: number,
    lo1: number, hi1: number, lo2: number, hi2: number, work: number,
  ): void;
}

let ownMemory: WebAssembly.Memory | undefined;
let enabled = true;
let lastInPlace = false;
/** The threads the last forward's tiled path was split over; 0 when it took the per-row path. */
let lastTiledThreads = 0;

/** The module working in `memory`: the wasm backend's heap, or the memory of its own that `cpu` copies into. */
const moduleIn = (memory: WebAssembly.Memory): AttentionExports | null =>
  instantiateWasmIn<AttentionExports>(memory, { unshared: ATTENTION_WASM_BASE64, shared: ATTENTION_SHARED_WASM_BASE64 });

/** The tiled path's module working in `memory`. */
const tiledIn = (memory: WebAssembly.Memory): TiledExports | null =>
  instantiateWasmIn<TiledExports>(memory, { unshared: ATTENTION_TILED_WASM_BASE64, shared: ATTENTION_TILED_SHARED_WASM_BASE64 });

/** The module's own memory, where inputs are copied when they are not on a heap it works in. */
function own(): WebAssembly.Memory {
  ownMemory ??= new WebAssembly.Memory({ initial: 1 });
  return ownMemory;
}

/** Turns the SIMD path off or on (tests use it to run the plain typed-array loop). Internal. */
export function setAttentionSimd(on: boolean): void {
  enabled = on;
}

/** Whether the last SIMD forward read its inputs in place on the backend's heap (tests). Internal. */
export function attentionSimdRanInPlace(): boolean {
  return lastInPlace;
}

/** Whether the last SIMD forward took the tiled path (tests). Internal. */
export function attentionSimdRanTiled(): boolean {
  return lastTiledThreads > 0;
}

/** The threads the last tiled forward was split over (1: the calling thread alone; tests). Internal. */
export function attentionSimdTiledThreads(): number {
  return lastTiledThreads;
}

/** Whether the SIMD path will run. */
export function attentionSimdAvailable(): boolean {
  return enabled && moduleIn(own()) !== null;
}

/**
 * The wasm backend's heap, for a forward that reads q, k and v where they are: `scratch` is a view on that heap of
 * at least {@link simdScratchFloats} floats, for a tile's scores and weights and a group's accumulator rows.
 */
export interface HeapPlace {
  memory: WebAssembly.Memory;
  scratch: Float32Array;
}

/** Keys per tile. */
const TILE = 64;

/** Query rows the tiled path takes at a time (attention-tiled.wat's tile height). */
const ROWS = 4;

/** Floats of attention-tiled.wat's working area before the accumulator rows: scores, weights, per-row state. */
const WORK_FLOATS = 528;

/** Int32 slots of the tiled path's arguments on the heap (see {@link tiledUnits}). */
const TILED_ARGS = 20;

/**
 * Floats of one thread's scratch on the tiled path: a head's keys packed, the working area and accumulator rows, a
 * copy of a last partial block of query rows, the rows' key bounds, and alignment slack; a whole number of vectors.
 */
function tiledThreadFloats(Dhp: number, Dvp: number, S: number): number {
  return (Math.ceil(S / 8) * 8 * Dhp + 4 + WORK_FLOATS + ROWS * Dvp + ROWS * Dhp + 3 * ROWS + 3) & ~3;
}

/**
 * Floats of scratch a forward needs for head dims `Dh` and `Dv`, `G` query heads per key/value head, `T` queries and
 * `S` keys, on `threads` threads: for the per-row path a tile of scores and of weights and an accumulator row per
 * head of a group; and where the tiled path may run (`T` ≥ 4: never for a decode step) its arguments, the query
 * positions and each thread's scratch ({@link tiledThreadFloats}).
 */
export function simdScratchFloats(Dh: number, Dv: number, G: number, T: number, S: number, threads = 1): number {
  const [Dhp, Dvp] = [(Dh + 3) & ~3, (Dv + 3) & ~3];
  const perRow = 2 * TILE + G * Dvp;
  const tiled = T < ROWS ? 0 : TILED_ARGS + T + 4 + threads * tiledThreadFloats(Dhp, Dvp, S);
  return perRow + tiled;
}

/** What the forward reads: typed views of the inputs, the sizes and the rules (as the kernel's attributes). */
export interface FusedForwardArgs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  keyMask: Float32Array | null;
  B: number;
  H: number;
  KV: number;
  T: number;
  S: number;
  /** Positions per (batch, key/value head) block of `k` and `v`: `S`, or a cache buffer's capacity (≥ `S`). */
  kvStride: number;
  Dh: number;
  Dv: number;
  scale: number;
  /** 0 for none. */
  softcap: number;
  causal: boolean;
  /** −1 for none. */
  slidingWindow: number;
  prefixLength: number;
  queryPositions: readonly number[];
  keyPositions: readonly number[];
}

/** Copies `rows` rows of `d` floats from `src` to `mem` at `at`, each padded to `dp` floats. */
function copyRows(mem: Float32Array, at: number, src: Float32Array, rows: number, d: number, dp: number): void {
  if (d === dp) {
    mem.set(src.subarray(0, rows * d), at);
    return;
  }
  for (let r = 0; r < rows; r++) mem.set(src.subarray(r * d, (r + 1) * d), at + r * dp);
}

/**
 * The forward pass into `out` (`[B, H, T, Dv]`). With `heap`, and q, k, v views on it with head dims that are
 * whole vectors, the module reads them in place; otherwise they are copied into its own memory, rows padded to
 * whole vectors. Returns `false`, touching nothing, when the SIMD module is unavailable.
 */
export function fusedForwardSimd(a: FusedForwardArgs, out: Float32Array, heap: HeapPlace | null = null): boolean {
  if (!enabled) return false;
  const { B, H, KV, T, S, Dh, Dv, scale, softcap, causal, slidingWindow: w, prefixLength: prefix, keyMask } = a;
  const inPlace =
    heap != null && Dh % 4 === 0 && Dv % 4 === 0 && [a.q, a.k, a.v, heap.scratch].every((t) => t.buffer === heap.memory.buffer);
  const memory = inPlace ? heap.memory : own();
  const m = moduleIn(memory);
  if (m === null) return false;
  lastInPlace = inPlace;
  const G = H / KV;
  const Dhp = (Dh + 3) & ~3;
  const Dvp = (Dv + 3) & ~3;
  // Float offsets of q [B·H·T, Dhp], k [B·KV·S, Dhp], v [B·KV·S, Dvp], then scores [TILE] | p [TILE] | acc [G, Dvp].
  let oQ: number, oK: number, oV: number, oS: number;
  let mem: Float32Array;
  if (inPlace) {
    [oQ, oK, oV, oS] = [a.q, a.k, a.v, heap.scratch].map((t) => t.byteOffset / 4);
    mem = new Float32Array(memory.buffer);
  } else {
    oQ = 0;
    oK = oQ + B * H * T * Dhp;
    oV = oK + B * KV * S * Dhp;
    oS = oV + B * KV * S * Dvp;
    const bytes = (oS + simdScratchFloats(Dh, Dv, G, T, S) + B * H * T * Dv) * 4; // and room for the output
    const have = memory.buffer.byteLength;
    if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
    mem = new Float32Array(memory.buffer); // after any growth: growing detaches earlier views
    if (Dhp !== Dh || Dvp !== Dv) mem.fill(0, oQ, oS); // padded lanes must be 0
    copyRows(mem, oQ, a.q, B * H * T, Dh, Dhp);
    for (let r = 0; r < B * KV; r++) {
      copyRows(mem, oK + r * S * Dhp, a.k.subarray(r * a.kvStride * Dh), S, Dh, Dhp);
      copyRows(mem, oV + r * S * Dvp, a.v.subarray(r * a.kvStride * Dv), S, Dv, Dvp);
    }
  }
  const oP = oS + TILE;
  const oAcc = oP + TILE;
  const kp = Int32Array.from(a.keyPositions);
  // Keys at consecutive ascending positions with no padding (a prefill, a growing cache): the keys a query sees
  // are at most two index ranges (the prefix, and the causal window), found without testing each key.
  let contiguous = keyMask === null;
  for (let s = 1; s < S && contiguous; s++) contiguous = kp[s] === kp[0] + s;
  const k0 = S > 0 ? kp[0] : 0;
  // Several query rows and no soft cap: the tiled path, four rows of a head at a time (its output on the heap when it
  // reads the heap in place).
  const outOnHeap = out.buffer === memory.buffer;
  const tiled = contiguous && softcap === 0 && T >= ROWS && Dvp % 8 === 0 && (outOnHeap || !inPlace) ? tiledIn(memory) : null;
  lastTiledThreads = 0; // tiledForward sets it
  if (tiled !== null) {
    // The output where the threads can write it: in place on the heap, or after the scratch in the module's memory.
    const oOut = outOnHeap ? out.byteOffset / 4 : oS + simdScratchFloats(Dh, Dv, G, T, S);
    const threads = inPlace ? wasmTaskThreads(memory) : 1;
    tiledForward(a, tiled, memory, { oQ, oK, oV, oOut, kvBlock: inPlace ? a.kvStride : S, scratch: oAcc + G * Dvp, k0, threads });
    if (!outOnHeap) out.set(new Float32Array(memory.buffer, 4 * oOut, B * H * T * Dv));
    return true;
  }
  // Otherwise each key is tested and a hidden key inside a scored range gets p = 0.
  const vis = new Uint8Array(S); // per key of the current row: 1 visible (only when not contiguous)
  const chunks = new Int32Array(2 * (Math.ceil(S / TILE) + 2)); // [lo, n] pairs of the current row's key chunks
  const maxes = new Float64Array(G); // per head of the group: the running max of its scores
  const sums = new Float64Array(G); // and the running sum of their exponentials

  // The G query heads of a key/value head see the same keys at a given position: find them once for the group.
  for (let b = 0; b < B; b++) {
    const maskRow = keyMask === null ? -1 : b * S;
    for (let kvh = 0; kvh < KV; kvh++) {
      const kvRow = (b * KV + kvh) * (inPlace ? a.kvStride : S); // copies hold S positions per block
      for (let t = 0; t < T; t++) {
        const qp = a.queryPositions[t];
        // The row's chunks of at most TILE keys.
        let nChunks = 0;
        if (contiguous) {
          const [prefixEnd, lo, hi] = keyRanges(qp, k0, S, causal, w, prefix);
          for (let s0 = 0; s0 < prefixEnd; s0 += TILE) {
            chunks[nChunks++] = s0;
            chunks[nChunks++] = Math.min(TILE, prefixEnd - s0);
          }
          for (let s0 = lo; s0 < hi; s0 += TILE) {
            chunks[nChunks++] = s0;
            chunks[nChunks++] = Math.min(TILE, hi - s0);
          }
        } else {
          for (let s0 = 0; s0 < S; s0 += TILE) {
            const s1 = Math.min(S, s0 + TILE);
            let lo = -1;
            let hi = -1;
            for (let s = s0; s < s1; s++) {
              const d = qp - kp[s];
              const visible = !(causal && d < 0) && !(w >= 0 && d >= w && kp[s] >= prefix) && (maskRow < 0 || keyMask![maskRow + s] !== 0);
              vis[s] = visible ? 1 : 0;
              if (visible) {
                if (lo < 0) lo = s;
                hi = s + 1;
              }
            }
            if (lo >= 0) {
              chunks[nChunks++] = lo;
              chunks[nChunks++] = hi - lo;
            }
          }
        }

        // The group's G heads go through each chunk together, so its keys and values are read from memory once
        // for the group (a long cache does not fit the caches G times over); each head keeps its own running max,
        // sum and accumulator row.
        mem.fill(0, oAcc, oAcc + G * Dvp);
        maxes.fill(-Infinity);
        sums.fill(0);
        for (let c = 0; c < nChunks; c += 2) {
          const lo = chunks[c];
          const n = chunks[c + 1];
          for (let g = 0; g < G; g++) {
            const qAt = 4 * (oQ + ((b * H + kvh * G + g) * T + t) * Dhp);
            m.scores(qAt, 4 * (oK + (kvRow + lo) * Dhp), n, Dhp, 4 * oS, scale);
            if (softcap > 0) for (let j = 0; j < n; j++) mem[oS + j] = softcap * Math.tanh(mem[oS + j] / softcap);
            // Hidden keys, and the lanes past n up to a whole vector, score −∞ (weight e^−∞ = 0).
            if (!contiguous) for (let j = 0; j < n; j++) if (vis[lo + j] === 0) mem[oS + j] = -Infinity;
            for (let j = n; j < ((n + 3) & ~3); j++) mem[oS + j] = -Infinity;
            const tileMax = m.tile_max(4 * oS, n);
            let alpha = 1;
            if (tileMax > maxes[g]) {
              alpha = Math.exp(maxes[g] - tileMax); // 0 on the first chunk (max = −∞)
              sums[g] *= alpha;
              maxes[g] = tileMax;
            }
            sums[g] += m.exp_sum(4 * oS, 4 * oP, n, maxes[g]);
            m.accumulate(4 * oP, 4 * (oV + (kvRow + lo) * Dvp), n, Dvp, 4 * (oAcc + g * Dvp), alpha);
          }
        }
        for (let g = 0; g < G; g++) writeRow(out, ((b * H + kvh * G + g) * T + t) * Dv, mem, oAcc + g * Dvp, sums[g], Dv);
      }
    }
  }
  return true;
}

/** Where {@link tiledForward} finds q, k, v and the output (float offsets in the memory), its scratch, the first key's position, and the threads. */
interface TiledPlace {
  oQ: number;
  oK: number;
  oV: number;
  oOut: number;
  /** Positions per (batch, key/value head) block of k and v: `kvStride` read in place, `S` in a copy. */
  kvBlock: number;
  /** Float offset of the tiled path's scratch ({@link simdScratchFloats}'s second part). */
  scratch: number;
  k0: number;
  /** Threads to split the work over ({@link wasmTaskThreads}), each with its scratch. */
  threads: number;
}

/**
 * The tiled path (attention-tiled.wat) for keys at consecutive positions and no soft cap: its arguments written to
 * the scratch, then {@link tiledUnits} over every block of four query rows of every head, split over the backend's
 * threads where it has several.
 */
function tiledForward(a: FusedForwardArgs, t: TiledExports, memory: WebAssembly.Memory, place: TiledPlace): void {
  const { B, H, KV, T, S, Dh, Dv, scale, causal, slidingWindow, prefixLength } = a;
  const [Dhp, Dvp] = [(Dh + 3) & ~3, (Dv + 3) & ~3];
  const argsAt = place.scratch;
  const positionsAt = argsAt + TILED_ARGS;
  const threadsAt = (positionsAt + T + 3) & ~3;
  const args = new Int32Array(memory.buffer, 4 * argsAt, TILED_ARGS);
  args.set([place.oQ, place.oK, place.oV, place.oOut, H, KV, T, S, Dhp, Dvp, Dv, place.kvBlock, threadsAt]);
  args.set([tiledThreadFloats(Dhp, Dvp, S), causal ? 1 : 0, slidingWindow, prefixLength, place.k0], 13);
  new Float32Array(memory.buffer, 4 * argsAt, TILED_ARGS)[18] = scale;
  new Int32Array(memory.buffer, 4 * positionsAt, T).set(a.queryPositions);
  lastTiledThreads = place.threads;
  runWasmTask(memory, TILED_TASK, t, 4 * argsAt, B * H * Math.ceil(T / ROWS));
}

/**
 * Units `u0 .. u1` of the tiled path, each four query rows of one head (`u = (b · H + h) · ⌈T / 4⌉ + block`), as
 * thread `thread`, from the arguments at byte offset `args`: int32 slots oQ, oK, oV, oOut (float offsets of q, k, v
 * and the output), H, KV, T, S, Dhp, Dvp, Dv, kvBlock, the threads' scratch and each one's floats, causal, window,
 * prefix, the first key's position, then the float32 scale; the T query positions follow. Per block it finds each
 * row's keys, runs the module's `flash` over their union, and writes the rows normalised. A head's keys are packed
 * into the thread's scratch when its run of units moves to them. Self-contained (a {@link WasmTask}'s `run`).
 */
function tiledUnits(t: TiledExports, memory: WebAssembly.Memory, args: number, thread: number, u0: number, u1: number): void {
  const i32 = new Int32Array(memory.buffer);
  const mem = new Float32Array(memory.buffer);
  const at = args >> 2;
  const [oQ, oK, oV, oOut, H, KV, T, S, Dhp, Dvp, Dv, kvBlock, threadsAt, threadFloats, causal, w, prefix, k0] = i32.subarray(at, at + 18);
  const scale = mem[at + 18];
  const positions = at + 20;
  const G = H / KV;
  const blocks = Math.ceil(T / 4);
  // This thread's scratch: packed keys, the working area (from a 16-byte boundary: its per-row state holds float64
  // sums), the accumulator rows, the copy of a last partial block of query rows, the rows' bounds.
  const oKp = threadsAt + thread * threadFloats;
  const oWork = (oKp + Math.ceil(S / 8) * 8 * Dhp + 3) & ~3;
  const oAcc = oWork + 528;
  const oTail = oAcc + 4 * Dvp;
  const oBounds = oTail + 4 * Dhp;
  const state = new Float64Array(memory.buffer, 4 * (oWork + 512), 8); // per row: (max, alpha), sum
  let packed = -1;
  for (let u = u0; u < u1; u++) {
    const head = Math.floor(u / blocks); // b · H + h
    const t0 = 4 * (u - head * blocks);
    const kv = Math.floor(head / H) * KV + Math.floor((head % H) / G); // b · KV + the head's key/value head
    const kvRow = kv * kvBlock;
    if (kv !== packed) {
      t.pack_kt(4 * (oK + kvRow * Dhp), 4 * oKp, S, Dhp);
      packed = kv;
    }
    const rows = Math.min(4, T - t0);
    let qAt = oQ + (head * T + t0) * Dhp;
    if (rows < 4) {
      // The last block's missing rows: zeros, seeing no key.
      mem.fill(0, oTail, oTail + 4 * Dhp);
      mem.copyWithin(oTail, qAt, qAt + rows * Dhp);
      qAt = oTail;
    }
    let prefixMax = 0;
    let loMin = S;
    let hiMax = 0;
    for (let r = 0; r < 4; r++) {
      const [pe, lo, hi] = r < rows ? keyRanges(i32[positions + t0 + r], k0, S, causal === 1, w, prefix) : [0, 0, 0]; // a missing row sees none
      prefixMax = Math.max(prefixMax, pe);
      if (hi > lo) [loMin, hiMax] = [Math.min(loMin, lo), Math.max(hiMax, hi)];
      i32.set([pe, lo, hi], oBounds + 3 * r);
    }
    // The union of the rows' keys: the prefix's, then the window's from a panel boundary; one range when the two
    // would share a panel.
    let [lo1, hi1] = [0, prefixMax];
    let [lo2, hi2] = hiMax > loMin ? [loMin & ~7, hiMax] : [0, 0];
    if (hi1 > 0 && hi2 > lo2 && lo2 < ((hi1 + 7) & ~7)) [lo1, hi1, lo2, hi2] = [0, Math.max(hi1, hi2), 0, 0];
    t.flash(4 * qAt, 4 * Dhp, 4 * oKp, 4 * (oV + kvRow * Dvp), S, Dhp, Dvp, scale, 4 * oBounds, lo1, hi1, lo2, hi2, 4 * oWork);
    for (let r = 0; r < rows; r++) writeRow(mem, oOut + (head * T + t0 + r) * Dv, mem, oAcc + r * Dvp, state[2 * r + 1], Dv);
  }
}

/** The tiled path as a task for the backend's threads. */
const TILED_TASK: WasmTask<TiledExports> = { shared: ATTENTION_TILED_SHARED_WASM_BASE64, run: tiledUnits, helpers: [keyRanges, writeRow] };

/**
 * The keys a query at position `qp` sees when the `S` keys sit at consecutive positions from `k0`, under the rules
 * (`w` −1 for no window), as index ranges: the prefix's `[0, prefixEnd)` (the keys before the window that the prefix
 * keeps) and the causal window's `[lo, hi)`. Self-contained (a helper of {@link TILED_TASK}).
 */
function keyRanges(qp: number, k0: number, S: number, causal: boolean, w: number, prefix: number): [prefixEnd: number, lo: number, hi: number] {
  const hi = causal ? Math.max(0, Math.min(S, qp - k0 + 1)) : S;
  const lo = w >= 0 ? Math.min(hi, Math.max(0, qp - w + 1 - k0)) : 0;
  return [Math.min(lo, Math.max(0, prefix - k0)), lo, hi];
}

/**
 * out[oAt ..] = the accumulator row at `accAt` over its softmax sum; zeros for a row that saw no key (sum 0), as the
 * naive kernel gives. Self-contained (a helper of {@link TILED_TASK}).
 */
function writeRow(out: Float32Array, oAt: number, mem: Float32Array, accAt: number, sum: number, Dv: number): void {
  const inv = sum > 0 ? 1 / sum : 0;
  for (let i = 0; i < Dv; i++) out[oAt + i] = mem[accAt + i] * inv;
}
