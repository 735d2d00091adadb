// The grid the fused kernels (cpu, wasm, webgpu) are checked on against the naive oracle: shapes, GQA / MQA, key
// tiles, windows with a prefix, padding, soft cap, Dv ≠ Dh, rolling-cache key orders and fully masked rows.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { KVCache, SlidingWindowCache, fusedAttention, fusedAttentionLastRun, naiveAttention, type AttentionKernelOptions } from '../src/index.js';
import { build, type Case } from './build.js';
import { disposeAll, expectClose, randn, take } from './helpers.js';

export interface Grid {
  B: number;
  H: number;
  KV: number;
  T: number;
  S: number;
  Dh: number;
  Dv?: number;
  causal?: boolean;
  window?: number | null;
  prefix?: number;
  softcap?: number | null;
  /** Keys' absolute positions (default 0..S-1); queries sit at the last T positions unless `queryStart`. */
  keyPositions?: number[];
  queryStart?: number;
  /** `[B][S]` 0/1 padding over the keys. */
  mask?: number[][];
  /** Row 0, query 0 sees no key: its output must be zeros. */
  zeroRow?: boolean;
}

export const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

function pad(B: number, S: number, leftPad: number[]): number[][] {
  return range(B).map((b) => range(S).map((s) => (s < leftPad[b] ? 0 : 1)));
}

export const grid: [string, Grid][] = [
  ['T 1 (decode) over 9 keys, GQA 6:2', { B: 1, H: 6, KV: 2, T: 1, S: 9, Dh: 8 }],
  ['T 13, not a multiple of the key tile, MHA', { B: 2, H: 3, KV: 3, T: 13, S: 13, Dh: 8 }],
  ['T 150 over 150 keys: three key tiles, GQA 6:3', { B: 1, H: 6, KV: 3, T: 150, S: 150, Dh: 4 }],
  ['MQA 6:1, window 5', { B: 1, H: 6, KV: 1, T: 21, S: 21, Dh: 8, window: 5 }],
  ['window 4 + prefix 3, GQA 4:2, padding inside the window', { B: 2, H: 4, KV: 2, T: 17, S: 17, Dh: 4, window: 4, prefix: 3, mask: [range(17).map(() => 1), range(17).map((s) => (s >= 5 && s < 8 ? 0 : 1))] }],
  ['window 3 + prefix 4, no padding (index ranges), GQA 6:2', { B: 1, H: 6, KV: 2, T: 20, S: 20, Dh: 8, window: 3, prefix: 4 }],
  ['non-causal, no padding, T 5 over 70 keys', { B: 1, H: 2, KV: 1, T: 5, S: 70, Dh: 4, causal: false }],
  ['soft cap, window 4 + prefix 2, padding inside the window', { B: 2, H: 2, KV: 1, T: 12, S: 12, Dh: 4, softcap: 2, window: 4, prefix: 2, mask: [range(12).map(() => 1), range(12).map((s) => (s === 7 || s === 9 ? 0 : 1))] }],
  ['window 1 (each query sees itself)', { B: 1, H: 2, KV: 1, T: 7, S: 7, Dh: 4, window: 1 }],
  ['padding hides every key of some rows (zeros, finite gradients)', { B: 2, H: 2, KV: 2, T: 6, S: 6, Dh: 4, mask: pad(2, 6, [3, 0]), zeroRow: true }],
  ['non-causal, soft cap, Dv ≠ Dh, padding', { B: 2, H: 4, KV: 1, T: 9, S: 9, Dh: 4, Dv: 6, causal: false, softcap: 1.5, mask: pad(2, 9, [2, 0]) }],
  ['rolling-cache key order, window 6 + prefix 2, T 3', { B: 1, H: 4, KV: 2, T: 3, S: 8, Dh: 4, window: 6, prefix: 2, keyPositions: [0, 1, 8, 9, 10, 5, 6, 7], queryStart: 8 }],
  ['T 70 queries after 60 cached keys (S 130)', { B: 1, H: 2, KV: 1, T: 70, S: 130, Dh: 8, window: 100 }],
];

export function inputs(g: Grid, seed: number) {
  const Dv = g.Dv ?? g.Dh;
  const q = tf.tensor4d(randn(g.B * g.H * g.T * g.Dh, seed), [g.B, g.H, g.T, g.Dh]); // [B, H, T, Dh]
  const k = tf.tensor4d(randn(g.B * g.KV * g.S * g.Dh, seed + 1), [g.B, g.KV, g.S, g.Dh]); // [B, KV, S, Dh]
  const v = tf.tensor4d(randn(g.B * g.KV * g.S * Dv, seed + 2), [g.B, g.KV, g.S, Dv]); // [B, KV, S, Dv]
  const keyPositions = g.keyPositions ?? range(g.S);
  const queryStart = g.queryStart ?? g.S - g.T;
  const keyMask = g.mask != null ? tf.tensor2d(g.mask) : null; // [B, S]
  const options: AttentionKernelOptions = {
    scale: 1 / Math.sqrt(g.Dh),
    softcap: g.softcap ?? null,
    rules: { causal: g.causal ?? true, slidingWindow: g.window ?? null, prefixLength: g.prefix ?? 0 },
    queryPositions: range(g.T, queryStart),
    keyPositions,
    keyMask,
  };
  const w = tf.tensor4d(randn(g.B * g.H * g.T * Dv, seed + 3), [g.B, g.H, g.T, Dv]); // weights of the loss
  return { q, k, v, keyMask, w, options, dispose: () => disposeAll(q, k, v, keyMask, w) };
}

/**
 * The fused kernel of the current backend against the naive oracle on one grid case: values within `tolerance`,
 * zeros for a fully masked row, gradients of Σ w ⊙ attention with respect to q, k and v within 1e-4 (through the
 * op's registered gradient), no tensor left behind.
 */
export async function expectFusedMatchesNaive(g: Grid, seed: number, backend: string, tolerance: number): Promise<void> {
  const x = inputs(g, seed);
  const before = tf.memory().numTensors;
  const naive = await take(naiveAttention(x.q, x.k, x.v, x.options));
  const fused = await take(fusedAttention(x.q, x.k, x.v, { ...x.options, implementation: 'fused' }));
  expect(fusedAttentionLastRun()).toEqual({ op: 'SlmkitFusedAttention', backend, implementation: 'fused' });
  expect(tf.memory().numTensors).toBe(before);
  expect(fused.every(Number.isFinite)).toBe(true);
  expectClose(fused, naive, tolerance);
  const Dv = g.Dv ?? g.Dh;
  if (g.zeroRow === true) expect(fused.slice(0, Dv)).toEqual(new Array(Dv).fill(0));

  const loss = (kernel: typeof naiveAttention) => (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
    tf.sum(tf.mul(kernel(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, x.options), x.w));
  const want = tf.grads(loss(naiveAttention))([x.q, x.k, x.v]);
  const got = tf.grads(loss((q, k, v, o) => fusedAttention(q, k, v, { ...o, implementation: 'fused' })))([x.q, x.k, x.v]);
  for (let i = 0; i < 3; i++) {
    const w = await take(want[i]);
    expect(w.every(Number.isFinite), 'naive gradient finite').toBe(true);
    expectClose(await take(got[i]), w, 1e-4);
  }
  expect(tf.memory().numTensors).toBe(before);
  x.dispose();
}

/** A block with every rule on (bias, window 5 with a prefix of 2, soft cap, per-head q/k norm, rotary) and its padding. */
export const blockCase: Case = { B: 2, T: 11, D: 16, H: 4, KV: 2, Dh: 4, bias: true, window: 5, prefix: 2, softcap: 4, qkNorm: 'head', rotary: { base: 100 } };
/** Row 0 has three padding tokens in front, row 1 none. */
export const blockMask = [range(11).map((t) => (t < 3 ? 0 : 1)), range(11).map(() => 1)];

/**
 * The block on the current backend with `auto` picking the fused kernel equals the same block with the naive
 * kernel: a full forward, then prefill and cached decoding (single-token steps, the decode fast path) through a
 * `KVCache` and a `SlidingWindowCache` with a prefix; values within `tolerance`, nothing left behind.
 */
export async function expectBlockMatchesNaive(c: Case, mask: number[][], tolerance: number): Promise<void> {
  const { attn, x } = build(c);
  const { tensor } = x(c.B, c.T, 5);
  const m = tf.tensor2d(mask);
  const naive = await take(attn.forward(tensor, { attentionMask: m, implementation: 'naive' }));
  const before = tf.memory().numTensors;
  const fused = await take(attn.forward(tensor, { attentionMask: m }));
  expect(attn.lastImplementation).toBe('fused');
  expect(tf.memory().numTensors).toBe(before);
  expectClose(fused, naive, tolerance);

  for (const cache of [new KVCache(), new SlidingWindowCache(5, { prefixLength: 2 })]) {
    for (const [t0, n] of [[0, 6], [6, 1], [7, 1], [8, 3]]) {
      const xs = tf.slice(tensor, [0, t0, 0], [c.B, n, c.D]) as tf.Tensor3D; // [B, n, D]
      const ms = tf.slice(m, [0, 0], [c.B, t0 + n]) as tf.Tensor2D; // [B, t0 + n]
      const y = await take(attn.forward(xs, { cache, attentionMask: ms })); // [B, n, D]
      expect(attn.lastImplementation).toBe('fused');
      // Row b, token t of the full forward is at (b·T + t)·D.
      const want = range(c.B).flatMap((b) => naive.slice((b * c.T + t0) * c.D, (b * c.T + t0 + n) * c.D));
      expectClose(y, want, tolerance);
      disposeAll(xs, ms);
    }
    cache.dispose();
  }
  expect(tf.memory().numTensors).toBe(before);
  disposeAll(tensor, m);
  attn.dispose();
}

/**
 * A block forward at sequence length `T` with the fused kernel allocates no `[T, T]` tensor: under `tf.profile`,
 * peak bytes stay below `T·T·4 / peakDivisor` and no kernel output reaches `T·T / outputDivisor` elements.
 */
export async function expectNoSquareTensor(T: number, peakDivisor: number, outputDivisor: number): Promise<void> {
  const c: Case = { B: 1, T, D: 16, H: 2, KV: 1, Dh: 8, rotary: { base: 10000 } };
  const { attn, x } = build(c);
  const { tensor } = x(1, T, 3);
  const before = tf.memory().numTensors;
  const info = await tf.profile(async () => {
    await take(attn.forward(tensor));
  });
  expect(attn.lastImplementation).toBe('fused');
  expect(tf.memory().numTensors).toBe(before);
  // Inputs, q/k/v, rotary tables and the output are a few T·D floats each.
  expect(info.peakBytes).toBeLessThan((T * T * 4) / peakDivisor);
  const largest = Math.max(...info.kernels.flatMap((k) => k.outputShapes.map((s) => (s ?? []).reduce((a, d) => a * d, 1))));
  expect(largest).toBeLessThan((T * T) / outputDivisor);
  tensor.dispose();
  attn.dispose();
}
