import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, Linear, RMSNorm, RotaryEmbedding, ShapeError, initBackend } from '@slmkit/core';
import { Attention, KVCache, SlidingWindowCache, type AttentionOptions, type AttentionParts } from '../src/index.js';
import { build, type Case } from './build.js';
import { disposeAll, expectNoLeak, linear } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

describe('memory', () => {
  const c: Case = { B: 2, T: 5, D: 8, H: 4, KV: 2, Dh: 4, bias: true, window: 3, prefix: 1, qkNorm: 'head', rotary: { base: 100 }, queryBlockSize: 2, keyBlockSize: 2 };

  it('forward, forwardWithKV and both kernels leave the tensor count unchanged', () => {
    const { attn, x } = build(c);
    const { tensor } = x(c.B, c.T, 1);
    const mask = tf.tensor2d([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]);
    expectNoLeak(() => {
      tf.dispose(attn.forward(tensor, { implementation: 'naive', attentionMask: mask }));
      tf.dispose(attn.forward(tensor, { implementation: 'chunked', attentionMask: mask }));
      const { output, kv } = attn.forwardWithKV(tensor);
      tf.dispose([output, kv.keys, kv.values]);
    });
    disposeAll(tensor, mask);
    attn.dispose();
  });

  it('cache steps, consumers and cache.dispose() bring the count back to where it started', () => {
    const { attn, x, options } = build(c);
    const consumer = new Attention(options, { qProj: linear(8, 16, 5), oProj: linear(16, 8, 6) });
    const { tensor } = x(c.B, 1, 2);
    const prompt = x(c.B, 4, 3).tensor;
    const before = tf.memory().numTensors;
    for (const cache of [new KVCache(), new SlidingWindowCache(3, { prefixLength: 1 })]) {
      tf.dispose(attn.forward(prompt, { cache }));
      const afterPrefill = tf.memory().numTensors;
      for (let i = 0; i < 6; i++) {
        const { output, kv } = attn.forwardWithKV(tensor, { cache, implementation: i % 2 === 0 ? 'naive' : 'chunked' });
        tf.dispose([output, consumer.forward(tensor, { sharedKV: kv }), kv.keys, kv.values]);
        // The cache replaces its two tensors (keys, values) in place: the count never grows.
        expect(tf.memory().numTensors).toBe(afterPrefill);
      }
      cache.dispose();
      expect(tf.memory().numTensors).toBe(before);
    }
    disposeAll(tensor, prompt);
    attn.dispose();
    consumer.dispose();
  });

  it('a call that throws leaves nothing behind, and the cache unchanged', () => {
    const { attn, x } = build(c);
    const cache = new KVCache();
    const { tensor } = x(c.B, 2, 1);
    tf.dispose(attn.forward(tensor, { cache }));
    const badMask = tf.ones([c.B, 3]) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    expect(() => attn.forward(tensor, { cache, attentionMask: badMask })).toThrow(ShapeError);
    expect(tf.memory().numTensors).toBe(before);
    expect(cache.length).toBe(2);
    disposeAll(tensor, badMask);
    cache.dispose();
    attn.dispose();
  });
});

describe('validation', () => {
  const options: AttentionOptions = { hiddenSize: 16, numHeads: 4, numKVHeads: 2, headDim: 4 };
  const parts = (): AttentionParts => ({
    qProj: new Linear(16, 16),
    kProj: new Linear(16, 8),
    vProj: new Linear(16, 8),
    oProj: new Linear(16, 16),
  });

  const bad: [string, Partial<AttentionOptions>, string | RegExp][] = [
    ['numKVHeads not dividing numHeads', { numHeads: 8, numKVHeads: 3 }, 'Attention: numKVHeads (3) must divide numHeads (8)'],
    ['zero heads', { numHeads: 0 }, 'Attention: numHeads must be a positive integer, found 0'],
    ['fractional head dim', { headDim: 2.5 }, 'Attention: headDim must be a positive integer, found 2.5'],
    ['valueHeadDim', { valueHeadDim: -1 }, 'Attention: valueHeadDim must be a positive integer, found -1'],
    ['scale', { scale: 0 }, 'Attention: scale must be a finite number > 0, found 0'],
    ['softcap', { softcap: -5 }, 'Attention: softcap must be a finite number > 0 or null, found -5'],
    ['slidingWindow', { slidingWindow: 0 }, 'Attention: slidingWindow must be a positive integer, found 0'],
    ['window without causal', { slidingWindow: 4, causal: false }, 'Attention: slidingWindow (4) needs causal attention, but causal is false'],
    ['prefixLength', { prefixLength: 1.5 }, 'Attention: prefixLength must be a non-negative integer, found 1.5'],
    ['qkNormScope', { qkNormScope: 'row' as 'head' }, 'Attention: qkNormScope must be "head" or "projection", found "row"'],
    ['implementation', { implementation: 'flash' as 'auto' }, 'Attention: implementation must be "auto", "naive", "chunked" or "fused", found "flash"'],
    ['block size', { keyBlockSize: 0 }, 'Attention: keyBlockSize must be a positive integer, found 0'],
    ['outputSize', { outputSize: 0 }, 'Attention: outputSize must be a positive integer, found 0'],
    ['names', { names: { q: 'q.proj' } }, /name "q.proj" must match/],
  ];
  for (const [name, patch, message] of bad) {
    it(`rejects ${name} with ConfigError naming it`, () => {
      const p = parts();
      let err: unknown;
      try {
        new Attention({ ...options, ...patch }, p);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      if (typeof message === 'string') expect((err as Error).message).toBe(message);
      else expect((err as Error).message).toMatch(message);
      Object.values(p).forEach((m) => (m as Linear).dispose());
    });
  }

  it('rejects parts that do not fit', () => {
    const p = parts();
    expect(() => new Attention(options, { ...p, kProj: new Linear(16, 12) })).toThrow('Attention: kProj.outFeatures (12) must be 8');
    expect(() => new Attention(options, { ...p, qProj: new Linear(8, 16) })).toThrow('Attention: qProj.inFeatures (8) must be 16');
    expect(() => new Attention(options, { ...p, oProj: new Linear(8, 16) })).toThrow('Attention: oProj.inFeatures (8) must be 16');
    expect(() => new Attention(options, { ...p, qkvProj: new Linear(16, 32) })).toThrow('give either qkvProj or qProj/kProj/vProj, not both');
    expect(() => new Attention(options, { qkvProj: new Linear(16, 30), oProj: p.oProj })).toThrow('Attention: qkvProj.outFeatures (30) must be 32');
    expect(() => new Attention(options, { qProj: p.qProj, kProj: p.kProj, oProj: p.oProj })).toThrow(/kProj and parts.vProj come together \(vProj is missing\)/);
    expect(() => new Attention(options, { kProj: p.kProj, vProj: p.vProj, oProj: p.oProj })).toThrow('parts.qProj (or qkvProj) is required');
    expect(() => new Attention(options, { ...p, oProj: undefined as unknown as Linear })).toThrow('parts.oProj is required');
    expect(() => new Attention(options, { ...p, qNorm: new RMSNorm(16, { eps: 1e-6 }) })).toThrow('Attention: qNorm normalises 16 values but qkNormScope "head" needs 4');
    expect(() => new Attention({ ...options, qkNormScope: 'projection' }, { ...p, kNorm: new RMSNorm(4, { eps: 1e-6 }) })).toThrow(
      'kNorm normalises 4 values but qkNormScope "projection" needs 8',
    );
    expect(() => new Attention(options, { qProj: p.qProj, oProj: p.oProj, kNorm: new RMSNorm(4, { eps: 1e-6 }) })).toThrow(/a KV consumer .* cannot have a kNorm/);
    expect(() => new Attention(options, { ...p, rotary: new RotaryEmbedding({ headDim: 8, base: 1e4, maxPositionEmbeddings: 64 }) })).toThrow(
      'Attention: rotary.headDim (8) must equal headDim (4)',
    );
    expect(() => new Attention({ ...options, outputSize: 8 }, p)).toThrow('Attention: oProj.outFeatures (16) must be 8');
    Object.values(p).forEach((m) => (m as Linear).dispose());
  });

  it('writes outputSize features when it differs from the input width (Zamba: 2·hidden in, hidden out)', () => {
    const p = { ...parts(), oProj: new Linear(16, 8) };
    const attn = new Attention({ ...options, outputSize: 8 }, p);
    expect(attn.outputSize).toBe(8);
    const x = tf.randomNormal([2, 3, 16]) as tf.Tensor3D;
    const y = attn.forward(x);
    expect(y.shape).toEqual([2, 3, 8]);
    expect(() => attn.forward(tf.zeros([2, 3, 8]) as tf.Tensor3D)).toThrow(ShapeError);
    tf.dispose([x, y]);
    attn.dispose();
  });

  describe('calls', () => {
    const c: Case = { B: 2, T: 3, D: 8, H: 4, KV: 2, Dh: 4, window: 4 };
    it('ShapeError for a wrong input width, rank or dtype', () => {
      const { attn } = build(c);
      const wide = tf.zeros([2, 3, 9]) as tf.Tensor3D;
      expect(() => attn.forward(wide)).toThrow(ShapeError);
      expect(() => attn.forward(wide)).toThrow("Attention: x's last dimension must be hiddenSize = 8, found 9 (x shape [2, 3, 9])");
      const flat = tf.zeros([3, 8]) as unknown as tf.Tensor3D;
      expect(() => attn.forward(flat)).toThrow('Attention: x must be rank 3 [B, T, 8], found [3, 8]');
      const ints = tf.zeros([2, 3, 8], 'int32') as tf.Tensor3D;
      expect(() => attn.forward(ints)).toThrow('Attention: x must be float32, found int32');
      disposeAll(wide, flat, ints);
      attn.dispose();
    });

    it('ShapeError for a mask of the wrong shape, naming the expected [B, S_total]', () => {
      const { attn, x } = build(c);
      const { tensor } = x(2, 3, 1);
      const m = tf.ones([2, 4]) as tf.Tensor2D;
      expect(() => attn.forward(tensor, { attentionMask: m })).toThrow(
        'Attention: attentionMask must be [B, S_total] = [2, 3] (every position so far, cached and new), found [2, 4]',
      );
      const cache = new KVCache();
      tf.dispose(attn.forward(tensor, { cache }));
      // After 3 cached positions, 3 new ones need a mask over 6.
      const m3 = tf.ones([2, 3]) as tf.Tensor2D;
      expect(() => attn.forward(tensor, { cache, attentionMask: m3 })).toThrow(/= \[2, 6\]/);
      disposeAll(tensor, m, m3);
      cache.dispose();
      attn.dispose();
    });

    it('clear errors for caches that disagree with the layer', () => {
      const { attn, x } = build(c);
      const { tensor } = x(2, 3, 1);
      const one = x(1, 3, 1).tensor;
      const cache = new KVCache();
      tf.dispose(attn.forward(tensor, { cache }));
      expect(() => attn.forward(one, { cache })).toThrow('KVCache: new keys/values have [B, KV, Dh, Dv] = [1, 2, 4, 4] but the cache holds [2, 2, 4, 4]');
      expect(() => attn.forward(tensor, { cache, positions: 7 })).toThrow("Attention: positions (7) must equal the cache's length (3)");
      const narrow = new SlidingWindowCache(2);
      expect(() => attn.forward(tensor, { cache: narrow })).toThrow(ConfigError);
      expect(() => attn.forward(tensor, { cache: narrow })).toThrow(/window 2 would drop keys this layer still sees \(slidingWindow 4\)/);
      const { attn: full } = build({ ...c, window: null });
      expect(() => full.forward(tensor, { cache: new SlidingWindowCache(8) })).toThrow(/slidingWindow null/);
      cache.dispose();
      expect(() => attn.forward(tensor, { cache })).toThrow('KVCache: used after dispose()');
      disposeAll(tensor, one);
      attn.dispose();
      full.dispose();
    });

    it('clear errors for a consumer given the wrong sharedKV', () => {
      const { options, x } = build(c);
      const consumer = new Attention(options, { qProj: linear(8, 16, 1), oProj: linear(16, 8, 2) });
      const { tensor } = x(2, 3, 1);
      const keys = tf.zeros([2, 1, 3, 4]) as tf.Tensor4D;
      const values = tf.zeros([2, 2, 3, 4]) as tf.Tensor4D;
      expect(() => consumer.forward(tensor, { sharedKV: { keys, values, keyPositions: [0, 1, 2] } })).toThrow(
        'Attention: sharedKV.keys must be [2, 2, 3, 4], found [2, 1, 3, 4]',
      );
      expect(() => consumer.forward(tensor, { sharedKV: { keys: values, values, keyPositions: [0, 1] } })).toThrow(
        'Attention: sharedKV.keyPositions must list 3 positions, found 2',
      );
      expect(() => consumer.forward(tensor, { cache: new KVCache(), sharedKV: { keys: values, values, keyPositions: [0, 1, 2] } })).toThrow(
        /a KV consumer does not update a cache/,
      );
      disposeAll(tensor, keys, values);
      consumer.dispose();
    });

    it('ShapeError for per-row positions of the wrong shape; ConfigError for a bad implementation', () => {
      const { attn, x } = build(c);
      const { tensor } = x(2, 3, 1);
      expect(() => attn.forward(tensor, { positions: [[0, 1, 2]] })).toThrow('Attention: per-row positions must be [2][3] finite numbers, found 1 rows');
      expect(() => attn.forward(tensor, { positions: -1 })).toThrow(ConfigError);
      expect(() => attn.forward(tensor, { implementation: 'fast' as 'auto' })).toThrow(ConfigError);
      const { attn: roped } = build({ ...c, rotary: { base: 100 } });
      const cos = tf.ones([4, 4]);
      expect(() => roped.forward(tensor, { rotaryTables: { cos, sin: cos } })).toThrow(
        'Attention: rotaryTables cos and sin must be [3, 4] or [2, 3, 4], found [4, 4] and [4, 4]',
      );
      cos.dispose();
      roped.dispose();
      tensor.dispose();
      attn.dispose();
    });
  });
});
