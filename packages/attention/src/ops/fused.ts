/**
 * The fused attention op and its `cpu` and `wasm` kernel: scaling, soft cap, causal / window / prefix and padding
 * masks, grouped-query heads and the online softmax in one pass over typed arrays, with no score tensor. The
 * `webgpu` kernel (the same contract, flash-style WGSL) is in `fused-webgpu.ts` and registered here.
 *
 * On `wasm` the kernel reads q, k, v and the mask in place on the wasm heap and writes its output there; on `cpu`
 * it reads the backend's arrays and hands it a new one. On every backend the gradient recomputes the forward with
 * tfjs ops (the naive kernel, or the chunked one when `T · S` is large) and differentiates that.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { defineFusedOp, recomputeGradients, registerFusedKernel, runTypedKernel, wasmHeapMemory, wasmTaskThreads, type Implementation, type KernelRun } from '@slmkit/core';
import { chunkedAttention } from './chunked.js';
import { checkKernelInputs, type AttentionKernelOptions } from './common.js';
import { naiveAttention } from './naive.js';
import { webgpuFusedAttentionKernel } from './fused-webgpu.js';
import { fusedForwardSimd, simdScratchFloats, type FusedForwardArgs } from './wasm/fused-simd.js';

/** The fused kernel's name. */
export const FUSED_ATTENTION_KERNEL = 'SlmkitFusedAttention';

/** Keys per tile of the online softmax: one tile of scores per query row lives in a scratch array. */
const KEY_TILE = 64;

/** Above this many score pairs per head (`T · S`) the gradient's recompute streams key blocks (chunked kernel). */
const RECOMPUTE_CHUNKED_ABOVE = 256 * 256;

interface FusedInputs extends Record<string, tf.Tensor> {
  q: tf.Tensor4D;
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  /** `[B, S]`, or `[0]` for none. */
  keyMask: tf.Tensor;
}

/** The op's attributes (plain numbers: the positions are known on the host). */
export interface FusedAttrs {
  scale: number;
  /** 0 for none. */
  softcap: number;
  causal: boolean;
  /** −1 for none. */
  slidingWindow: number;
  prefixLength: number;
  queryPositions: number[];
  keyPositions: number[];
}

function kernelOptions(attrs: FusedAttrs, keyMask: tf.Tensor): AttentionKernelOptions {
  return {
    scale: attrs.scale,
    softcap: attrs.softcap > 0 ? attrs.softcap : null,
    rules: { causal: attrs.causal, slidingWindow: attrs.slidingWindow >= 0 ? attrs.slidingWindow : null, prefixLength: attrs.prefixLength },
    queryPositions: attrs.queryPositions,
    keyPositions: attrs.keyPositions,
    keyMask: keyMask.size > 0 ? (keyMask as tf.Tensor2D) : null,
  };
}

/** The tfjs-ops computation the fused kernel replaces: what the fallback and the gradient run. */
function recompute({ q, k, v, keyMask }: FusedInputs, attrs: FusedAttrs): tf.Tensor4D {
  const options = kernelOptions(attrs, keyMask);
  const S = attrs.keyPositions.length;
  if (k.shape[2] > S) {
    // Buffers of a cache (see fusedAttentionOverBuffers): their first S positions.
    k = tf.slice(k, [0, 0, 0, 0], [-1, -1, S, -1]); // [B, KV, S, Dh]
    v = tf.slice(v, [0, 0, 0, 0], [-1, -1, S, -1]); // [B, KV, S, Dv]
  }
  const big = q.shape[2] * k.shape[2] > RECOMPUTE_CHUNKED_ABOVE;
  return big ? chunkedAttention(q, k, v, options) : naiveAttention(q, k, v, options);
}

const op = defineFusedOp<FusedInputs, FusedAttrs>({ kernelName: FUSED_ATTENTION_KERNEL, naive: recompute });

/**
 * The forward pass over typed arrays into `out` (`[B, H, T, Dv]`): the readable version of the SIMD path
 * (`wasm/fused-simd.ts`), and what runs where WebAssembly SIMD is missing. Per query row, keys are visited in
 * tiles of {@link KEY_TILE}: the tile's scores go to a scratch array, then the running max `m`, normaliser `l` and
 * the accumulator row are rescaled once per tile and the tile's values added. Masked keys are skipped, never
 * scored. Query head `h` reads key/value head `⌊h / G⌋` in place (no repeated K/V).
 */
export function fusedAttentionForward(args: FusedForwardArgs, out: Float32Array): void {
  const { B, H, KV, T, S, kvStride, Dh, Dv, q, k, v, keyMask } = args;
  const G = H / KV;
  const { scale, softcap, causal, slidingWindow: w, prefixLength: prefix, queryPositions: qPos, keyPositions: kPos } = args;
  const scores = new Float64Array(KEY_TILE);
  const index = new Int32Array(KEY_TILE);
  const acc = new Float64Array(Dv);
  const kp = Int32Array.from(kPos);
  for (let b = 0; b < B; b++) {
    const maskRow = keyMask === null ? -1 : b * S;
    for (let h = 0; h < H; h++) {
      const kvBase = (b * KV + ((h / G) | 0)) * kvStride;
      for (let t = 0; t < T; t++) {
        const qOff = ((b * H + h) * T + t) * Dh;
        const qp = qPos[t];
        let m = -Infinity;
        let l = 0;
        acc.fill(0);
        for (let s0 = 0; s0 < S; s0 += KEY_TILE) {
          const s1 = Math.min(S, s0 + KEY_TILE);
          let n = 0;
          let tileMax = -Infinity;
          for (let s = s0; s < s1; s++) {
            const d = qp - kp[s];
            if (causal && d < 0) continue;
            if (w >= 0 && d >= w && kp[s] >= prefix) continue;
            if (maskRow >= 0 && keyMask![maskRow + s] === 0) continue;
            const kOff = (kvBase + s) * Dh;
            let dot = 0;
            for (let i = 0; i < Dh; i++) dot += q[qOff + i] * k[kOff + i];
            let sc = dot * scale;
            if (softcap > 0) sc = softcap * Math.tanh(sc / softcap);
            scores[n] = sc;
            index[n++] = s;
            if (sc > tileMax) tileMax = sc;
          }
          if (n === 0) continue;
          if (tileMax > m) {
            const alpha = Math.exp(m - tileMax); // 0 on the first visible tile (m = −∞)
            l *= alpha;
            for (let i = 0; i < Dv; i++) acc[i] *= alpha;
            m = tileMax;
          }
          for (let j = 0; j < n; j++) {
            const p = Math.exp(scores[j] - m);
            l += p;
            const vOff = (kvBase + index[j]) * Dv;
            for (let i = 0; i < Dv; i++) acc[i] += p * v[vOff + i];
          }
        }
        const oOff = ((b * H + h) * T + t) * Dv;
        // A row that sees no key (l = 0) returns zeros, as the naive kernel does.
        const inv = l > 0 ? 1 / l : 0;
        for (let i = 0; i < Dv; i++) out[oOff + i] = acc[i] * inv;
      }
    }
  }
}

function forwardKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const a = attrs as unknown as FusedAttrs;
  const { q, k, v, keyMask } = inputs as unknown as Record<string, tf.TensorInfo>;
  const [B, H, T, Dh] = q.shape;
  const [, KV, kvStride] = k.shape; // S, or the capacity of a cache's buffers (of which the first S positions count)
  const S = a.keyPositions.length;
  const Dv = v.shape[3];
  const hasMask = keyMask.shape.length === 2;
  // On wasm the SIMD loops read q, k and v in place on the heap, with a scratch row there, freed after.
  const heap = wasmHeapMemory(backend);
  const shapes = heap == null ? [[B, H, T, Dv]] : [[B, H, T, Dv], [simdScratchFloats(Dh, Dv, H / KV, T, S, wasmTaskThreads(heap))]];
  const [out, scratch] = runTypedKernel(backend, hasMask ? [q, k, v, keyMask] : [q, k, v], shapes, ([qv, kv, vv, mask], [o, s]) => {
    const args = { ...a, B, H, KV, T, S, kvStride, Dh, Dv, q: qv, k: kv, v: vv, keyMask: hasMask ? mask : null };
    if (!fusedForwardSimd(args, o, heap == null ? null : { memory: heap, scratch: s })) fusedAttentionForward(args, o);
  });
  if (scratch != null) (backend as { disposeData(dataId: object): void }).disposeData(scratch.dataId);
  return out;
}

/** The gradient: recompute the forward with tfjs ops from the saved inputs and differentiate it. */
const gradient: Omit<tf.GradConfig, 'kernelName'> = {
  inputsToSave: ['q', 'k', 'v', 'keyMask'],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, keyMask] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor];
    const a = attrs as unknown as FusedAttrs;
    const forward = (t: Record<'q' | 'k' | 'v', tf.Tensor>): tf.Tensor =>
      recompute({ q: t.q as tf.Tensor4D, k: t.k as tf.Tensor4D, v: t.v as tf.Tensor4D, keyMask }, a);
    const grads = recomputeGradients(['q', 'k', 'v'] as const, { q, k, v }, forward, dy as tf.Tensor);
    return { q: () => grads[0], k: () => grads[1], v: () => grads[2], keyMask: () => tf.zerosLike(keyMask) };
  },
};

for (const backendName of ['cpu', 'wasm']) {
  registerFusedKernel({ kernelName: FUSED_ATTENTION_KERNEL, backendName, kernelFunc: forwardKernel as tf.KernelFunc, gradient });
}
// WGSL, flash-style (see fused-webgpu.ts); the same recompute gradient, through the backend's tfjs ops.
registerFusedKernel({ kernelName: FUSED_ATTENTION_KERNEL, backendName: 'webgpu', kernelFunc: webgpuFusedAttentionKernel as tf.KernelFunc, gradient });

/**
 * Options of {@link fusedAttention}: those of the naive kernel plus the implementation choice.
 *
 * @example
 * ```ts
 * import type { FusedAttentionOptions } from '@slmkit/attention';
 * const options: FusedAttentionOptions = {
 *   scale: 0.125,
 *   rules: { causal: true, slidingWindow: null, prefixLength: 0 },
 *   queryPositions: [0, 1],
 *   keyPositions: [0, 1],
 *   implementation: 'fused', // a ConfigError on a backend without the kernel
 * };
 * ```
 */
export interface FusedAttentionOptions extends AttentionKernelOptions {
  /** `auto` (default): the kernel where the backend has one, else the naive kernel with a warning once. */
  implementation?: 'auto' | Implementation;
}

/**
 * Scaled dot-product attention as one kernel on `cpu`, `wasm` and `webgpu`: the same result as
 * {@link naiveAttention} (to float32 rounding) without any `[T, S]` score tensor and without tfjs ops between the
 * inputs and the output. Query head `h` reads key/value head `⌊h / G⌋` in place (no repeated K/V).
 *
 * - `cpu` / `wasm`: each query row streams its visible keys in tiles of 64 with the online softmax (Milakov &
 *   Gimelshein 2018; Dao et al. 2022, "FlashAttention"), accumulating in float64; keys hidden by the causal /
 *   window / prefix rules or by the padding mask are skipped, not scored. Memory: the output plus a few scratch
 *   rows.
 * - `webgpu`: flash-style WGSL, float32. The `G` query heads of a key/value head form one block of `G·T` rows; a
 *   workgroup of 64 lanes takes one (batch, key/value head) and a tile of up to 16 of those rows; key tiles (up to 64 keys, as many as fit 16 KiB of workgroup memory with the values) are staged in
 *   workgroup memory, and each query row keeps its running max, normaliser and output across them. A key tile
 *   the rules and the padding hide from all of the workgroup's queries is skipped whole. Six storage
 *   buffers are bound (output, q, k, v, positions, padding mask). Memory: the output plus a `T + S` int32
 *   positions buffer per call.
 *
 * On other backends it runs the naive kernel and warns once (`implementation: 'fused'` throws instead). The
 * gradient recomputes the forward with tfjs ops from the saved q, k, v (the naive kernel, or the chunked one when
 * `T · S > 65536`) on the current backend and differentiates that; `keyMask` gets a zero gradient.
 *
 * @param q - queries `[B, H, T, Dh]`, float32.
 * @param k - keys `[B, KV, S, Dh]`; `KV` divides `H`.
 * @param v - values `[B, KV, S, Dv]`.
 * @returns `[B, H, T, Dv]`; the caller owns it.
 * @throws ShapeError / ConfigError as {@link naiveAttention}; ConfigError for `implementation: 'fused'` on a
 *   backend without the kernel.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { fusedAttention, fusedAttentionLastRun } from '@slmkit/attention';
 * await tf.setBackend('cpu');
 * const q = tf.randomNormal([1, 4, 5, 8]) as tf.Tensor4D; // 4 query heads
 * const k = tf.randomNormal([1, 2, 5, 8]) as tf.Tensor4D; // 2 KV heads (GQA)
 * const v = tf.randomNormal([1, 2, 5, 8]) as tf.Tensor4D;
 * const positions = [0, 1, 2, 3, 4];
 * const o = fusedAttention(q, k, v, {
 *   scale: 1 / Math.sqrt(8),
 *   rules: { causal: true, slidingWindow: 2, prefixLength: 1 },
 *   queryPositions: positions,
 *   keyPositions: positions,
 * });
 * console.log(o.shape, fusedAttentionLastRun()?.implementation); // [1, 4, 5, 8] "fused"
 * tf.dispose([q, k, v, o]);
 * ```
 */
export function fusedAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: FusedAttentionOptions): tf.Tensor4D {
  checkKernelInputs('fusedAttention', q, k, v, options);
  return run(q, k, v, options, options.implementation);
}

/** The op on checked inputs; `k` and `v` may be longer than `keyPositions` (see {@link fusedAttentionOverBuffers}). */
function run(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: AttentionKernelOptions, implementation: FusedAttentionOptions['implementation']): tf.Tensor4D {
  const { rules } = options;
  const attrs: FusedAttrs = {
    scale: options.scale,
    softcap: options.softcap ?? 0,
    causal: rules.causal,
    slidingWindow: rules.slidingWindow ?? -1,
    prefixLength: rules.prefixLength,
    queryPositions: Array.from(options.queryPositions),
    keyPositions: Array.from(options.keyPositions),
  };
  return tf.tidy(() => {
    const keyMask: tf.Tensor = options.keyMask ?? tf.zeros([0]); // [B, S] or none
    return op({ q, k, v, keyMask }, attrs, { implementation }) as tf.Tensor4D; // [B, H, T, Dv]
  });
}

/**
 * {@link fusedAttention} over the first `keyPositions.length` positions of key and value buffers
 * `[B, KV, capacity, D]` (what `AttentionCache.appendInPlace` returns), reading them in place. `cpu` and `wasm`
 * only; the caller has checked the shapes. Internal.
 */
export function fusedAttentionOverBuffers(q: tf.Tensor4D, keys: tf.Tensor4D, values: tf.Tensor4D, options: AttentionKernelOptions): tf.Tensor4D {
  return run(q, keys, values, options, 'fused');
}

/**
 * The last {@link fusedAttention} call's record: which implementation ran, on which backend; undefined before the
 * first call.
 *
 * @example
 * ```ts
 * import { fusedAttentionLastRun } from '@slmkit/attention';
 * console.log(fusedAttentionLastRun()?.implementation); // "fused" on cpu / wasm / webgpu, "naive" elsewhere
 * ```
 */
export function fusedAttentionLastRun(): KernelRun | undefined {
  return op.lastRun;
}

/**
 * Whether the fused attention kernel is registered for `backend` (default: the current one): `cpu`, `wasm` and
 * `webgpu`.
 *
 * @example
 * ```ts
 * import { hasFusedAttention } from '@slmkit/attention';
 * console.log(hasFusedAttention('cpu'), hasFusedAttention('webgpu'), hasFusedAttention('webgl')); // true true false
 * ```
 */
export function hasFusedAttention(backend?: string): boolean {
  return op.hasKernel(backend);
}
