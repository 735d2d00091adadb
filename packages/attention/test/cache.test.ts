import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError, initBackend } from '@slmkit/core';
import { AttentionCache, KVCache, SlidingWindowCache } from '../src/index.js';
import { build, type Case } from './build.js';
import { disposeAll, expectClose, take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const base: Case = { B: 2, T: 11, D: 12, H: 4, KV: 2, Dh: 6, rotary: { base: 100 }, bias: true };

/**
 * Runs a prefill of `prefill` tokens through `cache`, then the rest one token at a time (or in chunks of
 * `step`), and compares every step's output with the matching rows of one full forward.
 */
async function decodeMatchesFull(
  c: Case,
  makeCache: () => AttentionCache,
  prefill: number,
  opts: { step?: number; mask?: number[][]; implementation?: 'naive' | 'chunked'; maxHeld?: number } = {},
): Promise<void> {
  const { attn, x } = build(c);
  const { tensor } = x(c.B, c.T, 7);
  const mask = opts.mask ? tf.tensor2d(opts.mask) : undefined;
  const full = await take(attn.forward(tensor, { attentionMask: mask, implementation: 'naive' }));
  const before = tf.memory().numTensors;
  const cache = makeCache();
  const step = opts.step ?? 1;
  for (let t0 = 0; t0 < c.T; ) {
    const n = t0 === 0 ? prefill : Math.min(step, c.T - t0);
    const xs = tf.slice(tensor, [0, t0, 0], [c.B, n, c.D]) as tf.Tensor3D;
    const m = mask ? (tf.slice(mask, [0, 0], [c.B, t0 + n]) as tf.Tensor2D) : undefined;
    const y = attn.forward(xs, { cache, attentionMask: m, implementation: opts.implementation });
    expect(cache.length).toBe(t0 + n);
    if (opts.maxHeld != null) expect(cache.heldLength).toBeLessThanOrEqual(opts.maxHeld);
    const got = await take(y);
    const want: number[] = [];
    for (let b = 0; b < c.B; b++) want.push(...full.slice((b * c.T + t0) * c.D, (b * c.T + t0 + n) * c.D));
    expectClose(got, want, 1e-5, `tokens ${t0}..${t0 + n - 1}`);
    disposeAll(xs, m);
    t0 += n;
  }
  cache.dispose();
  expect(tf.memory().numTensors).toBe(before);
  disposeAll(tensor, mask);
  attn.dispose();
}

describe('KVCache', () => {
  it('prefill then one-token steps equals one full forward', async () => {
    await decodeMatchesFull(base, () => new KVCache(), 4);
  });
  it('prefill of 1, then chunks of 3', async () => {
    await decodeMatchesFull(base, () => new KVCache(), 1, { step: 3 });
  });
  it('with a padding mask (left padding)', async () => {
    const mask = [
      [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ];
    await decodeMatchesFull(base, () => new KVCache(), 5, { mask });
  });
  it('with the chunked kernel for prefill', async () => {
    await decodeMatchesFull({ ...base, queryBlockSize: 3, keyBlockSize: 2 }, () => new KVCache(), 6, { implementation: 'chunked' });
  });
  it('grows by T and holds every position', () => {
    const cache = new KVCache();
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const kv = cache.update(tf.ones([1, 2, 3, 4]) as tf.Tensor4D, tf.ones([1, 2, 3, 5]) as tf.Tensor4D);
      expect(kv.keys.shape).toEqual([1, 2, 3, 4]);
      expect(kv.values.shape).toEqual([1, 2, 3, 5]);
      expect(kv.keyPositions).toEqual([0, 1, 2]);
    });
    tf.tidy(() => {
      const kv = cache.update(tf.ones([1, 2, 1, 4]) as tf.Tensor4D, tf.ones([1, 2, 1, 5]) as tf.Tensor4D);
      expect(kv.keyPositions).toEqual([0, 1, 2, 3]);
    });
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(cache.length).toBe(4);
    expect(cache.heldLength).toBe(4);
    expect(cache.dims).toEqual({ batch: 1, kvHeads: 2, headDim: 4, valueHeadDim: 5 });
    expect(cache.byteSize).toBe((8 * 4 + 8 * 5) * 4);
    const read = cache.read();
    expect(read.keys.shape).toEqual([1, 2, 4, 4]);
    tf.dispose([read.keys, read.values]);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(cache.isDisposed).toBe(true);
    expect(() => cache.read()).toThrow(ConfigError);
  });
  it('clone is independent', () => {
    const before = tf.memory().numTensors;
    const cache = new KVCache();
    tf.tidy(() => {
      cache.update(tf.ones([1, 1, 2, 2]) as tf.Tensor4D, tf.ones([1, 1, 2, 2]) as tf.Tensor4D);
    });
    const copy = cache.clone();
    tf.tidy(() => {
      copy.update(tf.zeros([1, 1, 1, 2]) as tf.Tensor4D, tf.zeros([1, 1, 1, 2]) as tf.Tensor4D);
    });
    expect(cache.length).toBe(2);
    expect(copy.length).toBe(3);
    cache.dispose();
    const r = copy.read();
    expect(Array.from(r.keys.dataSync())).toEqual([1, 1, 1, 1, 0, 0]);
    tf.dispose([r.keys, r.values]);
    copy.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
  it('rejects keys that disagree with what it holds', () => {
    const cache = new KVCache();
    tf.tidy(() => {
      cache.update(tf.ones([1, 2, 3, 4]) as tf.Tensor4D, tf.ones([1, 2, 3, 4]) as tf.Tensor4D);
    });
    const k = tf.ones([1, 3, 1, 4]) as tf.Tensor4D;
    expect(() => cache.update(k, k)).toThrow(ShapeError);
    expect(() => cache.update(k, k)).toThrow('[B, KV, Dh, Dv] = [1, 3, 4, 4] but the cache holds [1, 2, 4, 4]');
    k.dispose();
    cache.dispose();
  });
});

describe('SlidingWindowCache', () => {
  const swa: Case = { ...base, T: 14, window: 4 };
  it('decoding well past the window equals one full forward, holding at most window positions', async () => {
    await decodeMatchesFull(swa, () => new SlidingWindowCache(4), 3, { maxHeld: 4 });
  });
  it('a prefill longer than the window, then steps', async () => {
    await decodeMatchesFull(swa, () => new SlidingWindowCache(4), 9, { maxHeld: 4 });
  });
  it('with an always-visible prefix: holds at most window + prefix', async () => {
    await decodeMatchesFull({ ...swa, prefix: 2 }, () => new SlidingWindowCache(4, { prefixLength: 2 }), 1, { maxHeld: 6 });
    await decodeMatchesFull({ ...swa, prefix: 2 }, () => new SlidingWindowCache(4, { prefixLength: 2 }), 8, { maxHeld: 6 });
  });
  it('with padding and chunks of 3', async () => {
    const mask = [
      [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ];
    await decodeMatchesFull({ ...swa, prefix: 1 }, () => new SlidingWindowCache(4, { prefixLength: 1 }), 2, { mask, step: 3, maxHeld: 5 });
  });
  it('keeps the prefix and the last window positions, in order', () => {
    const cache = new SlidingWindowCache(3, { prefixLength: 2 });
    const held: number[][] = [];
    for (const n of [1, 4, 1, 1, 2]) {
      tf.tidy(() => {
        const kv = cache.update(tf.ones([1, 1, n, 2]) as tf.Tensor4D, tf.ones([1, 1, n, 2]) as tf.Tensor4D);
        expect(kv.keys.shape[2]).toBe(kv.keyPositions.length);
      });
      held.push(cache.keyPositions);
      expect(cache.heldLength).toBeLessThanOrEqual(cache.capacity);
    }
    expect(held).toEqual([[0], [0, 1, 2, 3, 4], [0, 1, 3, 4, 5], [0, 1, 4, 5, 6], [0, 1, 6, 7, 8]]);
    cache.dispose();
  });
  it('rejects a window that is not a positive integer', () => {
    expect(() => new SlidingWindowCache(0)).toThrow(ConfigError);
    expect(() => new SlidingWindowCache(2, { prefixLength: -1 })).toThrow(/prefixLength must be a non-negative integer, found -1/);
  });
});

describe('snapshots', () => {
  it('snapshot then restore continues decoding exactly like the original (both kinds)', async () => {
    const c: Case = { ...base, T: 8, window: 3, prefix: 1 };
    const { attn, x } = build(c);
    const { tensor } = x(c.B, c.T, 2);
    for (const make of [() => new KVCache(), () => new SlidingWindowCache(3, { prefixLength: 1 })]) {
      const cache = make();
      const prompt = tf.slice(tensor, [0, 0, 0], [c.B, 6, c.D]) as tf.Tensor3D;
      tf.dispose(attn.forward(prompt, { cache }));
      const saved = await cache.snapshot();
      expect(saved.length).toBe(6);
      expect(saved.keyPositions).toEqual(cache.keyPositions);
      const restored = AttentionCache.restore(structuredClone(saved));
      expect(restored.constructor).toBe(cache.constructor);
      expect(restored.dims).toEqual(cache.dims);
      const step = tf.slice(tensor, [0, 6, 0], [c.B, 1, c.D]) as tf.Tensor3D;
      expectClose(await take(attn.forward(step, { cache: restored })), await take(attn.forward(step, { cache })), 0);
      disposeAll(prompt, step);
      cache.dispose();
      restored.dispose();
    }
    tensor.dispose();
    attn.dispose();
  });
  it('restore rejects a malformed snapshot with ConfigError', () => {
    const data = new Float32Array(8);
    const bad = { kind: 'kv' as const, length: 2, keyPositions: [0, 1, 2], keys: { shape: [1, 1, 2, 4], data }, values: { shape: [1, 1, 2, 4], data } };
    expect(() => AttentionCache.restore(bad)).toThrow('AttentionCache.restore: keys of shape [1, 1, 2, 4] and 8 values do not fit 3 positions');
    expect(() => AttentionCache.restore({ ...bad, kind: 'paged' as 'kv' })).toThrow(ConfigError);
  });
});
