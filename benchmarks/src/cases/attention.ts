/**
 * Attention at SmolLM-135M's shape: grouped-query, 9 query heads sharing 3 key/value heads, head dim 64, causal.
 *
 * - `attention/naive`, `attention/chunked` and `attention/fused`: the kernels alone on q `[1, 9, T, 64]`, k and v
 *   `[1, 3, T, 64]`, at T 128, 512 and 2048, so the results show how each grows with T (the naive kernel holds all
 *   T² scores, the chunked one a tile at a time and skips tiles the causal mask hides, the fused one streams the
 *   visible keys of each query row in one kernel: WebAssembly SIMD on cpu / wasm, flash-style WGSL on webgpu).
 * - `attention/block`: the whole `Attention` block (q/k/v/o projections, rotary, the kernel its `auto` rule picks)
 *   on `[1, T, 576]`.
 * - `attention/decode`: one new token through the block against a `KVCache` already holding `ctx` positions, which
 *   it appends to in place on `cpu` / `wasm`; `attention/decode-concat` the same step through `forwardWithKV`, for
 *   which the cache concatenates (the step before in-place appends); `attention/decode-window512` a block with a
 *   512-token sliding window and its rolling `SlidingWindowCache`, whose cost stops growing past the window.
 *
 * GFLOP/s counts the useful work of the kernel: q·kᵀ and p·v over the visible (causal) pairs, 4·H·Dh per pair.
 * A decode step is bound by memory, so it reports GB/s: the cached keys and values plus the four projections'
 * weights, each read once.
 *
 * `attention/block` and `attention/decode` run the block's `auto` kernel, the fused one on `cpu` / `wasm`; the
 * `-naive` / `-fused` pairs pin the kernel so one run records both sides of that comparison.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Linear, RotaryEmbedding } from '@slmkit/core';
import {
  Attention,
  KVCache,
  SlidingWindowCache,
  chunkedAttention,
  fusedAttention,
  naiveAttention,
  type AttentionCache,
  type AttentionImplementation,
} from '@slmkit/attention';
import { benchCase, type BenchCase, type CaseInstance } from '../registry.js';
import { BATCH, F32, SMOLLM } from '../shapes.js';

const { hidden: D, heads: H, kvHeads: KV, headDim: Dh } = SMOLLM;
const PREFILL_TS = [128, 512, 2048];
const CONTEXTS = [128, 512, 2048];
const WINDOW = 512;

/** q·kᵀ and p·v over the pairs a causal mask leaves visible between T queries and the T keys they follow. */
const causalFlops = (T: number): number => 4 * BATCH * H * Dh * ((T * (T + 1)) / 2);

const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

function makeBlock(options: { implementation?: AttentionImplementation; slidingWindow?: number | null } = {}): Attention {
  return new Attention(
    { hiddenSize: D, numHeads: H, numKVHeads: KV, headDim: Dh, ...options },
    {
      qProj: new Linear(D, H * Dh, { bias: false, seed: 1 }),
      kProj: new Linear(D, KV * Dh, { bias: false, seed: 2 }),
      vProj: new Linear(D, KV * Dh, { bias: false, seed: 3 }),
      oProj: new Linear(H * Dh, D, { bias: false, seed: 4 }),
      rotary: new RotaryEmbedding({ headDim: Dh, base: SMOLLM.ropeTheta, maxPositionEmbeddings: SMOLLM.maxPositions * 2 }),
    },
  );
}

/**
 * One new token through `attn` against a cache holding `ctx` positions. Each step grows the cache, so before each
 * run (untimed) the cache is rolled back to `ctx` positions, as speculative decoding does, keeping the buffers a
 * decoding cache has. A full sliding window cannot roll back but holds the same positions at every later length,
 * so it goes on decoding; any other cache is rebuilt.
 */
function decodeStep(attn: Attention, ctx: number, makeCache: () => AttentionCache, options: { concat?: boolean } = {}): CaseInstance {
  const k0 = tf.randomNormal([BATCH, KV, ctx, Dh]) as tf.Tensor4D; // [B, KV, ctx, Dh]
  const v0 = tf.randomNormal([BATCH, KV, ctx, Dh]) as tf.Tensor4D; // [B, KV, ctx, Dh]
  const x = tf.randomNormal([BATCH, 1, D]) as tf.Tensor3D; // [B, 1, D]
  let cache: AttentionCache | undefined;
  return {
    beforeEach: () => {
      if (cache?.canTruncate(ctx)) return cache.truncate(ctx);
      // A full rolling window holds as many positions at every length after: it just goes on decoding.
      if (cache instanceof SlidingWindowCache && cache.heldLength === cache.capacity) return;
      cache?.dispose();
      cache = makeCache();
      const kv = cache.update(k0, v0);
      tf.dispose([kv.keys, kv.values]);
    },
    run: () => {
      if (!options.concat) return attn.forward(x, { cache: cache! }); // [B, 1, D]
      // forwardWithKV hands the keys and values back, so the cache concatenates (update) instead of appending in place.
      const { output, kv } = attn.forwardWithKV(x, { cache: cache! });
      tf.dispose([kv.keys, kv.values]);
      return output; // [B, 1, D]
    },
    teardown: () => {
      cache?.dispose();
      tf.dispose([k0, v0, x]);
      attn.dispose();
    },
  };
}

// The kernels alone; the fused one also on two wasm threads (`-2threads`, in a child process of the run: its blocks
// of query rows split over slmkit's workers), whose before is the one-thread series (the kernel ran on the calling
// thread only).
const KERNELS: { series: string; kernel: typeof fusedAttention; quick: number[]; threads?: number }[] = [
  { series: 'attention/naive', kernel: naiveAttention, quick: [128, 512] },
  { series: 'attention/chunked', kernel: chunkedAttention, quick: [128, 512] },
  { series: 'attention/fused', kernel: fusedAttention, quick: [128, 512] },
  { series: 'attention/fused-2threads', kernel: fusedAttention, quick: [128, 512], threads: 2 },
];

const kernels = KERNELS.flatMap(({ series, kernel, quick, threads }) =>
  PREFILL_TS.map((T) =>
    benchCase({
      block: 'attention',
      series,
      axis: { name: 'T', value: T },
      phase: 'prefill',
      shape: { B: BATCH, H, KV, T, Dh },
      flops: causalFlops(T),
      quick: quick.includes(T),
      ...(threads != null ? { threads } : {}),
      setup: () => {
        const q = tf.randomNormal([BATCH, H, T, Dh]) as tf.Tensor4D; // [B, H, T, Dh]
        const k = tf.randomNormal([BATCH, KV, T, Dh]) as tf.Tensor4D; // [B, KV, T, Dh]
        const v = tf.randomNormal([BATCH, KV, T, Dh]) as tf.Tensor4D; // [B, KV, T, Dh]
        const positions = range(T);
        const options = {
          scale: 1 / Math.sqrt(Dh),
          rules: { causal: true, slidingWindow: null, prefixLength: 0 },
          queryPositions: positions,
          keyPositions: positions,
        };
        return {
          run: () => kernel(q, k, v, options), // [B, H, T, Dh]
          teardown: () => tf.dispose([q, k, v]),
        };
      },
    }),
  ),
);

const block = PREFILL_TS.map((T) =>
  benchCase({
    block: 'attention',
    series: 'attention/block',
    axis: { name: 'T', value: T },
    phase: 'prefill',
    shape: { B: BATCH, T, d: D, H, KV, Dh },
    // The projections' matmuls plus the kernel's useful work.
    flops: 2 * BATCH * T * D * (2 * H * Dh + 2 * KV * Dh) + causalFlops(T),
    quick: false,
    setup: () => {
      const attn = makeBlock();
      const x = tf.randomNormal([BATCH, T, D]) as tf.Tensor3D; // [B, T, D]
      return {
        run: () => attn.forward(x), // [B, T, D]
        teardown: () => {
          x.dispose();
          attn.dispose();
        },
      };
    },
  }),
);

/** Bytes a decode step must read: the cache's keys and values, and the projection weights. */
const decodeBytes = (held: number): number => (2 * BATCH * KV * held * Dh + D * (2 * H * Dh + 2 * KV * Dh)) * F32;

const DECODES = [
  {
    series: 'attention/decode',
    window: null,
    makeCache: (): AttentionCache => new KVCache(),
    held: (ctx: number) => ctx,
    quick: [128, 2048],
  },
  {
    // The same step with the cache concatenated (what every step did before caches appended in place).
    series: 'attention/decode-concat',
    window: null,
    concat: true,
    makeCache: (): AttentionCache => new KVCache(),
    held: (ctx: number) => ctx,
    quick: [128, 2048],
  },
  {
    series: `attention/decode-window${WINDOW}`,
    window: WINDOW,
    makeCache: (): AttentionCache => new SlidingWindowCache(WINDOW),
    held: (ctx: number) => Math.min(ctx, WINDOW),
    quick: [2048],
  },
];

const decode = DECODES.flatMap(({ series, window, concat, makeCache, held, quick }) =>
  CONTEXTS.map((ctx) =>
    benchCase({
      block: 'attention',
      series,
      axis: { name: 'ctx', value: ctx },
      phase: 'decode',
      shape: { B: BATCH, ctx, d: D, H, KV, Dh },
      bytes: decodeBytes(held(ctx)),
      quick: quick.includes(ctx),
      setup: () => decodeStep(makeBlock({ slidingWindow: window }), ctx, makeCache, { concat }),
    }),
  ),
);

/**
 * The issue-10 comparison, in one run: the block forward at T 128 with the naive tfjs-ops kernel against the fused
 * kernel (`cpu` / `wasm`), each also on two wasm threads (the projections' matmuls split by slmkit's GEMM, and the
 * fused kernel's tiled path by slmkit's workers), and one decode step over a 128-token `KVCache` the same two ways. `-tfjs` runs the
 * naive block on tfjs's own matmul kernel (`SLMKIT_WASM_TFJS_MATMUL=1`, in a child process): the plain tfjs path,
 * before slmkit ran batched products through XNNPACK too. `-xnnpack` runs the fused block with its projections on
 * XNNPACK (`SLMKIT_WASM_XNNPACK=1`): the before of slmkit's GEMM.
 */
const FUSED_T = 128;
const blockVs = (
  [
    ['naive', undefined, null],
    ['fused', undefined, null],
    ['naive', 2, null],
    ['fused', 2, null],
    ['naive', undefined, 'tfjs'],
    ['fused', undefined, 'xnnpack'],
  ] as const
).map(([implementation, threads, matmul]) =>
  benchCase({
    block: 'attention',
    series: `attention/block-${implementation}${threads == null ? '' : `-${threads}threads`}${matmul != null ? `-${matmul}` : ''}`,
    axis: { name: 'T', value: FUSED_T },
    phase: 'prefill',
    shape: { B: BATCH, T: FUSED_T, d: D, H, KV, Dh },
    flops: 2 * BATCH * FUSED_T * D * (2 * H * Dh + 2 * KV * Dh) + causalFlops(FUSED_T),
    quick: true,
    ...(threads != null ? { threads } : {}),
    ...(matmul != null ? { env: matmul === 'tfjs' ? { SLMKIT_WASM_TFJS_MATMUL: '1' } : { SLMKIT_WASM_XNNPACK: '1' } } : {}),
    setup: () => {
      const attn = makeBlock({ implementation });
      const x = tf.randomNormal([BATCH, FUSED_T, D]) as tf.Tensor3D; // [B, T, D]
      return {
        run: () => attn.forward(x), // [B, T, D]
        teardown: () => {
          x.dispose();
          attn.dispose();
        },
      };
    },
  }),
);

const decodeVs = (['naive', 'fused'] as const).map((implementation) =>
  benchCase({
    block: 'attention',
    series: `attention/decode-${implementation}`,
    axis: { name: 'ctx', value: FUSED_T },
    phase: 'decode',
    shape: { B: BATCH, ctx: FUSED_T, d: D, H, KV, Dh },
    bytes: decodeBytes(FUSED_T),
    quick: true,
    setup: () => decodeStep(makeBlock({ implementation }), FUSED_T, () => new KVCache()),
  }),
);

export const cases: BenchCase[] = [...kernels, ...block, ...decode, ...blockVs, ...decodeVs];
