/**
 * The fused attention forward on WebAssembly SIMD (`attention.wat`): this file lays q, k and v out in the module's
 * memory (rows padded to whole vectors), and for each query row walks the keys in tiles: the module scores a tile,
 * JavaScript applies the masks, the soft cap and the online softmax's running max and sum, and the module adds the
 * tile's weighted values to the row's accumulator. Same visiting order and rules as the typed-array loop in
 * `fused.ts`, in float32 lanes instead of float64.
 *
 * @module
 */
import { instantiateWasm } from '@slmkit/core';
import { ATTENTION_WASM_BASE64 } from './attention-wasm.js';

interface AttentionExports {
  memory: WebAssembly.Memory;
  scores(q: number, k: number, n: number, dh: number, out: number, scale: number): void;
  accumulate(p: number, v: number, n: number, dv: number, acc: number, alpha: number): void;
  tile_max(s: number, n: number): number;
  exp_sum(s: number, out: number, n: number, max: number): number;
}

let instance: AttentionExports | null | undefined;
let enabled = true;

/** The module, instantiated on first use; `null` where WebAssembly SIMD is missing. */
function attentionModule(): AttentionExports | null {
  if (instance === undefined) instance = instantiateWasm<AttentionExports>(ATTENTION_WASM_BASE64);
  return instance;
}

/** Turns the SIMD path off or on (tests use it to run the plain typed-array loop). Internal. */
export function setAttentionSimd(on: boolean): void {
  enabled = on;
}

/** Whether the SIMD path will run. */
export function attentionSimdAvailable(): boolean {
  return enabled && attentionModule() !== null;
}

/** Keys per tile. */
const TILE = 64;

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
 * The forward pass into `out` (`[B, H, T, Dv]`). Returns `false`, touching nothing, when the SIMD module is
 * unavailable.
 */
export function fusedForwardSimd(a: FusedForwardArgs, out: Float32Array): boolean {
  if (!enabled) return false;
  const m = attentionModule();
  if (m === null) return false;
  const { B, H, KV, T, S, Dh, Dv, scale, softcap, causal, slidingWindow: w, prefixLength: prefix, keyMask } = a;
  const G = H / KV;
  const Dhp = (Dh + 3) & ~3;
  const Dvp = (Dv + 3) & ~3;
  // Layout (float offsets): q [B·H·T, Dhp] | k [B·KV·S, Dhp] | v [B·KV·S, Dvp] | scores [TILE] | p [TILE] | acc [Dvp]
  const oQ = 0;
  const oK = oQ + B * H * T * Dhp;
  const oV = oK + B * KV * S * Dhp;
  const oS = oV + B * KV * S * Dvp;
  const oP = oS + TILE;
  const oAcc = oP + TILE;
  const bytes = (oAcc + Dvp) * 4;
  const have = m.memory.buffer.byteLength;
  if (bytes > have) m.memory.grow(Math.ceil((bytes - have) / 65536));
  const mem = new Float32Array(m.memory.buffer); // after any growth: growing detaches earlier views
  if (Dhp !== Dh || Dvp !== Dv) mem.fill(0, oQ, oS); // padded lanes must be 0
  copyRows(mem, oQ, a.q, B * H * T, Dh, Dhp);
  copyRows(mem, oK, a.k, B * KV * S, Dh, Dhp);
  copyRows(mem, oV, a.v, B * KV * S, Dv, Dvp);
  const kp = Int32Array.from(a.keyPositions);
  // Keys at consecutive ascending positions with no padding (a prefill, a growing cache): the keys a query sees
  // are at most two index ranges (the prefix, and the causal window), found without testing each key. Otherwise
  // each key is tested and a hidden key inside a scored range gets p = 0.
  let contiguous = keyMask === null;
  for (let s = 1; s < S && contiguous; s++) contiguous = kp[s] === kp[0] + s;
  const k0 = S > 0 ? kp[0] : 0;
  const vis = new Uint8Array(S); // per key of the current row: 1 visible (only when not contiguous)
  const chunks = new Int32Array(2 * (Math.ceil(S / TILE) + 2)); // [lo, n] pairs of the current row's key chunks

  // The G query heads of a key/value head see the same keys at a given position: find them once for the group.
  for (let b = 0; b < B; b++) {
    const maskRow = keyMask === null ? -1 : b * S;
    for (let kvh = 0; kvh < KV; kvh++) {
      const kvRow = (b * KV + kvh) * S;
      for (let t = 0; t < T; t++) {
        const qp = a.queryPositions[t];
        // The row's chunks of at most TILE keys.
        let nChunks = 0;
        if (contiguous) {
          const hi = causal ? Math.max(0, Math.min(S, qp - k0 + 1)) : S;
          const lo = w >= 0 ? Math.min(hi, Math.max(0, qp - w + 1 - k0)) : 0;
          const prefixEnd = Math.min(lo, Math.max(0, prefix - k0)); // keys before the window that the prefix keeps
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

        for (let h = kvh * G; h < (kvh + 1) * G; h++) {
          const qAt = 4 * (oQ + ((b * H + h) * T + t) * Dhp);
          let max = -Infinity;
          let sum = 0;
          mem.fill(0, oAcc, oAcc + Dvp);
          for (let c = 0; c < nChunks; c += 2) {
            const lo = chunks[c];
            const n = chunks[c + 1];
            m.scores(qAt, 4 * (oK + (kvRow + lo) * Dhp), n, Dhp, 4 * oS, scale);
            if (softcap > 0) for (let j = 0; j < n; j++) mem[oS + j] = softcap * Math.tanh(mem[oS + j] / softcap);
            // Hidden keys, and the lanes past n up to a whole vector, score −∞ (weight e^−∞ = 0).
            if (!contiguous) for (let j = 0; j < n; j++) if (vis[lo + j] === 0) mem[oS + j] = -Infinity;
            for (let j = n; j < ((n + 3) & ~3); j++) mem[oS + j] = -Infinity;
            const tileMax = m.tile_max(4 * oS, n);
            let alpha = 1;
            if (tileMax > max) {
              alpha = Math.exp(max - tileMax); // 0 on the first chunk (max = −∞)
              sum *= alpha;
              max = tileMax;
            }
            sum += m.exp_sum(4 * oS, 4 * oP, n, max);
            m.accumulate(4 * oP, 4 * (oV + (kvRow + lo) * Dvp), n, Dvp, 4 * oAcc, alpha);
          }
          const oAt = ((b * H + h) * T + t) * Dv;
          // A row that sees no key (sum = 0) returns zeros, as the naive kernel does.
          const inv = sum > 0 ? 1 / sum : 0;
          for (let i = 0; i < Dv; i++) out[oAt + i] = mem[oAcc + i] * inv;
        }
      }
    }
  }
  return true;
}
