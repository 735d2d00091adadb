// The chunked (online-softmax) kernel against the naive one: through the block, and directly on the kernels with
// key positions that are not 0..S-1 (what a sliding-window cache holds).
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@slmkit/core';
import { CHUNKED_THRESHOLD, chunkedAttention, naiveAttention, resolveImplementation, type MaskRules } from '../src/index.js';
import { build, type Case } from './build.js';
import { disposeAll, expectClose, randn, take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

describe('chunked equals naive through the block', () => {
  const base: Case = { B: 2, T: 23, D: 8, H: 4, KV: 2, Dh: 4, rotary: { base: 100 }, bias: true };
  const padding = [
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
  ];
  const cases: [string, Case, number[][]?][] = [
    ['causal, blocks 5 × 7', { ...base, queryBlockSize: 5, keyBlockSize: 7 }],
    ['causal, blocks 4 × 3, padding', { ...base, queryBlockSize: 4, keyBlockSize: 3 }, padding],
    ['window 6, blocks 5 × 4', { ...base, window: 6, queryBlockSize: 5, keyBlockSize: 4 }],
    ['window 5 + prefix 3, blocks 6 × 4, padding', { ...base, window: 5, prefix: 3, queryBlockSize: 6, keyBlockSize: 4 }, padding],
    ['window 1, blocks 3 × 3', { ...base, window: 1, queryBlockSize: 3, keyBlockSize: 3 }],
    ['non-causal, softcap, Dv ≠ Dh, blocks 7 × 5', { ...base, causal: false, softcap: 1.5, Dv: 6, queryBlockSize: 7, keyBlockSize: 5 }, padding],
    ['MQA, blocks larger than T', { ...base, KV: 1, queryBlockSize: 64, keyBlockSize: 128 }, padding],
    ['blocks of 1', { ...base, window: 4, prefix: 1, queryBlockSize: 1, keyBlockSize: 1 }, padding],
  ];
  for (const [name, c, mask] of cases) {
    it(name, async () => {
      const { attn, x } = build(c);
      const { tensor } = x(c.B, c.T, 12);
      const m = mask ? tf.tensor2d(mask) : undefined;
      const naive = await take(attn.forward(tensor, { attentionMask: m, implementation: 'naive' }));
      const before = tf.memory().numTensors;
      const chunked = await take(attn.forward(tensor, { attentionMask: m, implementation: 'chunked' }));
      expect(tf.memory().numTensors).toBe(before);
      expect(attn.lastImplementation).toBe('chunked');
      expectClose(chunked, naive, 1e-5);
      disposeAll(tensor, m);
      attn.dispose();
    });
  }

  it('never materialises a [T, S] score matrix: every kernel output is at most a tile wide', async () => {
    const c: Case = { B: 1, T: 64, D: 8, H: 2, KV: 1, Dh: 4, window: 8, queryBlockSize: 8, keyBlockSize: 8 };
    const { attn, x } = build(c);
    const { tensor } = x(1, c.T, 3);
    const profile = await tf.profile(() => {
      tf.dispose(attn.forward(tensor, { implementation: 'chunked' }));
    });
    const scoreLike = profile.kernels.filter((k) => k.outputShapes.some((s) => s.length >= 3 && s[s.length - 1] === c.T));
    expect(scoreLike.map((k) => k.name)).toEqual([]);
    const tiles = profile.kernels.filter((k) => k.name === 'BatchMatMul');
    // Window 8 with 8 × 8 tiles: query block 0 sees key block 0, blocks 1..7 see 2 key blocks each; the other 6 of
    // every 8 are skipped. 15 tiles × 2 matmuls (q·kᵀ, p·v) + the 4 projections.
    expect(tiles.length).toBe(15 * 2 + 4);
    const naive = await tf.profile(() => {
      tf.dispose(attn.forward(tensor, { implementation: 'naive' }));
    });
    expect(naive.kernels.some((k) => k.outputShapes.some((s) => s.length === 4 && s[2] === c.T && s[3] === c.T))).toBe(true);
    tensor.dispose();
    attn.dispose();
  });

  it('auto picks fused on cpu at any length (the T·S = 256·256 rule applies where there is no fused kernel)', async () => {
    expect(CHUNKED_THRESHOLD).toBe(65536);
    expect(resolveImplementation('auto', 257, 256, false)).toBe('chunked');
    expect(resolveImplementation('auto', 256, 256, false)).toBe('naive');
    const c: Case = { B: 1, T: 257, D: 4, H: 1, KV: 1, Dh: 4, window: 8, queryBlockSize: 128, keyBlockSize: 128 };
    const { attn, x } = build(c);
    const long = x(1, 257, 1).tensor;
    const y = attn.forward(long);
    expect(attn.lastImplementation).toBe('fused');
    const short = x(1, 256, 1).tensor;
    const y2 = attn.forward(short);
    expect(attn.lastImplementation).toBe('fused');
    disposeAll(long, y, short, y2);
    attn.dispose();
  });
});

describe('the kernels directly', () => {
  /** q [B, H, T, Dh], k/v [B, KV, S, D] from seeds. */
  function inputs(B: number, H: number, KV: number, T: number, S: number, Dh: number, Dv: number) {
    return {
      q: tf.tensor4d(randn(B * H * T * Dh, 1, 1.5), [B, H, T, Dh]),
      k: tf.tensor4d(randn(B * KV * S * Dh, 2, 1.5), [B, KV, S, Dh]),
      v: tf.tensor4d(randn(B * KV * S * Dv, 3), [B, KV, S, Dv]),
    };
  }

  it('agree on a rolling-cache layout: held prefix + window keys, then new queries', async () => {
    // Keys as a SlidingWindowCache (window 4, prefix 2) holds them at step 20, plus 3 new positions.
    const keyPositions = [0, 1, 16, 17, 18, 19, 20, 21, 22];
    const queryPositions = [20, 21, 22];
    const rules: MaskRules = { causal: true, slidingWindow: 4, prefixLength: 2 };
    const { q, k, v } = inputs(2, 6, 3, 3, keyPositions.length, 5, 3);
    const keyMask = tf.tensor2d([[1, 1, 1, 0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1, 1]]);
    const opts = { scale: 0.4, softcap: 4, rules, queryPositions, keyPositions, keyMask };
    const naive = await take(naiveAttention(q, k, v, opts));
    for (const [qb, kb] of [[1, 1], [2, 3], [3, 4], [5, 9]]) {
      const chunked = await take(chunkedAttention(q, k, v, { ...opts, queryBlockSize: qb, keyBlockSize: kb }));
      expectClose(chunked, naive, 1e-5, `blocks ${qb} × ${kb}`);
    }
    disposeAll(q, k, v, keyMask);
  });

  it('give finite, equal gradients when padding hides every key of a row, on both kernels', async () => {
    const { q, k, v } = inputs(2, 2, 1, 4, 4, 4, 4);
    // Row 0: keys 0–1 are padding, so queries 0 and 1 see nothing; row 1: no padding.
    const keyMask = tf.tensor2d([[0, 0, 1, 1], [1, 1, 1, 1]]);
    const positions = [0, 1, 2, 3];
    const opts = { scale: 0.5, rules: { causal: true, slidingWindow: null, prefixLength: 0 }, queryPositions: positions, keyPositions: positions, keyMask };
    const w = tf.tensor4d(randn(2 * 2 * 4 * 4, 9), [2, 2, 4, 4]);
    const grads = (kernel: (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(kernel(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D), w)))([q, k, v]);
    const naive = grads((a, b, c) => naiveAttention(a, b, c, opts));
    const chunked = grads((a, b, c) => chunkedAttention(a, b, c, { ...opts, queryBlockSize: 2, keyBlockSize: 3 }));
    for (let i = 0; i < 3; i++) {
      const n = await take(naive[i]);
      expect(n.every(Number.isFinite), `naive d${'qkv'[i]}`).toBe(true);
      expectClose(await take(chunked[i]), n, 1e-5, `d${'qkv'[i]}`);
    }
    disposeAll(q, k, v, keyMask, w);
  });

  it('return zeros for queries that see no key, on both kernels', async () => {
    const { q, k, v } = inputs(1, 2, 1, 2, 3, 4, 4);
    const opts = { scale: 0.5, rules: { causal: true, slidingWindow: null, prefixLength: 0 }, queryPositions: [0, 1], keyPositions: [5, 6, 7] };
    expect(await take(naiveAttention(q, k, v, opts))).toEqual(new Array(16).fill(0));
    expect(await take(chunkedAttention(q, k, v, { ...opts, queryBlockSize: 1, keyBlockSize: 2 }))).toEqual(new Array(16).fill(0));
    disposeAll(q, k, v);
  });

  it('reject mismatched shapes with ShapeError naming the input', () => {
    const { q, k, v } = inputs(1, 3, 2, 2, 3, 4, 4);
    const opts = { scale: 0.5, rules: { causal: true, slidingWindow: null, prefixLength: 0 }, queryPositions: [0, 1], keyPositions: [0, 1, 2] };
    expect(() => naiveAttention(q, k, v, opts)).toThrow("naiveAttention: k's heads (2) must divide q's heads (3)");
    const ok = inputs(1, 2, 1, 2, 3, 4, 4);
    expect(() => chunkedAttention(ok.q, ok.k, ok.v, { ...opts, queryBlockSize: 0 })).toThrow(/queryBlockSize must be a positive integer, found 0/);
    expect(() => naiveAttention(ok.q, ok.k, ok.v, { ...opts, keyPositions: [0, 1] })).toThrow('naiveAttention: 2 key positions for 3 keys');
    disposeAll(q, k, v, ok.q, ok.k, ok.v);
  });
});
