// Equivalences between ways of building the same attention: GQA/MQA vs MHA with repeated K/V heads, fused vs
// separate projections, and a KV consumer vs a layer holding the producer's k/v weights.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Linear, RotaryEmbedding, initBackend } from '@slmkit/core';
import { Attention, KVCache, SlidingWindowCache, type AttentionCache, type AttentionOptions } from '../src/index.js';
import { build, type Case } from './build.js';
import { disposeAll, expectClose, hfWeight, linear, take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

/** A Linear holding the given weight (and bias) tensors. */
async function linearFrom(weight: tf.Tensor2D, bias: tf.Tensor1D | null): Promise<Linear> {
  const lin = new Linear(weight.shape[1], weight.shape[0], { bias: bias != null });
  await lin.loadWeights(bias == null ? { weight } : { weight, bias });
  return lin;
}

/** Rows of a `[KV·d, in]` projection repeated per query head: head h gets KV head ⌊h / G⌋. */
function repeatHeads(t: tf.Tensor, KV: number, G: number, d: number): tf.Tensor {
  return tf.tidy(() => {
    const rest = t.shape.slice(1);
    const heads = tf.reshape(t, [KV, d, ...rest]); // [KV, d, ...]
    const idx = tf.tensor1d(Array.from({ length: KV * G }, (_, h) => Math.floor(h / G)), 'int32');
    return tf.reshape(tf.gather(heads, idx), [KV * G * d, ...rest]); // [H·d, ...]
  });
}

describe('GQA and MQA equal MHA with repeated K/V heads', () => {
  for (const KV of [2, 1]) {
    it(`KV = ${KV} of H = 4 (${KV === 1 ? 'MQA' : 'GQA'}), with bias, rotary, window and padding`, async () => {
      const c: Case = { B: 2, T: 6, D: 8, H: 4, KV, Dh: 4, bias: true, rotary: { base: 100 }, window: 3, qkNorm: 'head' };
      const { attn, x, options } = build(c);
      const G = c.H / KV;
      const p = attn.parts;
      const lin = (m: unknown) => m as Linear;
      /** An MHA projection whose rows (HF layout [KV·Dh, D]) repeat the GQA one's per query head. */
      const repeated = async (proj: Linear): Promise<Linear> => {
        const w = hfWeight(proj); // [KV·Dh, D]
        const wRep = repeatHeads(w, KV, G, c.Dh) as tf.Tensor2D; // [H·Dh, D]
        const bRep = repeatHeads(proj.bias!, KV, G, c.Dh) as tf.Tensor1D; // [H·Dh]
        const out = await linearFrom(wRep, bRep);
        tf.dispose([w, wRep, bRep]);
        return out;
      };
      const kMha = await repeated(lin(p.kProj));
      const vMha = await repeated(lin(p.vProj));
      const mha = new Attention({ ...options, numKVHeads: c.H }, { ...p, kProj: kMha, vProj: vMha });
      const { tensor } = x(c.B, c.T, 5);
      const mask = tf.tensor2d([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]);
      for (const implementation of ['naive', 'chunked'] as const) {
        const a = await take(attn.forward(tensor, { attentionMask: mask, implementation }));
        const b = await take(mha.forward(tensor, { attentionMask: mask, implementation }));
        expectClose(a, b, 1e-5, implementation);
      }
      disposeAll(tensor, mask);
      kMha.dispose();
      vMha.dispose();
      attn.dispose();
    });
  }
});

describe('a fused qkvProj equals separate q/k/v projections', () => {
  it('Phi-3 layout [H·Dh | KV·Dh | KV·Dv], with Dv ≠ Dh', async () => {
    const c: Case = { B: 2, T: 5, D: 8, H: 4, KV: 2, Dh: 4, Dv: 6, bias: true, rotary: { base: 100 } };
    const { attn, x, options } = build(c);
    const p = attn.parts;
    const lins = [p.qProj, p.kProj, p.vProj] as unknown as Linear[];
    const hf = lins.map(hfWeight); // [out, in] each
    const w = tf.concat(hf, 0) as tf.Tensor2D; // [H·Dh + KV·Dh + KV·Dv, D]
    tf.dispose(hf);
    const bias = tf.concat(lins.map((l) => l.bias!), 0) as tf.Tensor1D;
    const qkvProj = await linearFrom(w, bias);
    const fused = new Attention(options, { qkvProj, oProj: p.oProj, rotary: p.rotary });
    expect(fused.namedParameters().map(([n]) => n)).toEqual(['qkv_proj.weight', 'qkv_proj.bias', 'o_proj.weight', 'o_proj.bias']);
    const { tensor } = x(c.B, c.T, 8);
    expectClose(await take(fused.forward(tensor)), await take(attn.forward(tensor)), 1e-5);
    // With caches, too.
    const c1 = new KVCache();
    const c2 = new KVCache();
    for (const [t0, n] of [[0, 3], [3, 1], [4, 1]]) {
      const xs = tf.slice(tensor, [0, t0, 0], [c.B, n, c.D]) as tf.Tensor3D;
      expectClose(await take(fused.forward(xs, { cache: c1 })), await take(attn.forward(xs, { cache: c2 })), 1e-5);
      xs.dispose();
    }
    disposeAll(tensor, w, bias);
    c1.dispose();
    c2.dispose();
    qkvProj.dispose();
    attn.dispose();
  });
});

describe('cross-layer KV sharing', () => {
  const c: Case = { B: 2, T: 9, D: 8, H: 4, KV: 2, Dh: 4, bias: true, rotary: { base: 100 } };

  /** A producer, a consumer (own q and o, no k/v) and a reference with the consumer's q/o and the producer's k/v. */
  function trio(extra: Partial<AttentionOptions> = {}) {
    const { attn: producer, options, x } = build({ ...c, window: extra.slidingWindow, prefix: extra.prefixLength });
    const opts = { ...options, ...extra };
    const rotary = new RotaryEmbedding({ headDim: c.Dh, base: 100, maxPositionEmbeddings: 4096 });
    const qProj = linear(c.D, c.H * c.Dh, 77, true, 2);
    const oProj = linear(c.H * c.Dh, c.D, 78, true);
    const consumer = new Attention(opts, { qProj, oProj, rotary });
    const reference = new Attention(opts, { qProj, kProj: producer.parts.kProj, vProj: producer.parts.vProj, oProj, rotary });
    return { producer, consumer, reference, x };
  }

  it('a consumer has only q and o parameters and must be given sharedKV', () => {
    const { producer, consumer, x } = trio();
    expect(consumer.isKVConsumer).toBe(true);
    expect(consumer.namedParameters().map(([n]) => n)).toEqual(['q_proj.weight', 'q_proj.bias', 'o_proj.weight', 'o_proj.bias']);
    const { tensor } = x(1, 2, 1);
    expect(() => consumer.forward(tensor)).toThrow(/a KV consumer\): pass sharedKV/);
    expect(() => producer.forward(tensor, { sharedKV: { keys: tf.zeros([1, 2, 2, 4]) as tf.Tensor4D, values: tf.zeros([1, 2, 2, 4]) as tf.Tensor4D, keyPositions: [0, 1] } })).toThrow(
      /sharedKV is only for a KV consumer/,
    );
    tensor.dispose();
    producer.dispose();
    consumer.dispose();
  });

  it('full forward: the consumer over the producer\'s K/V equals a layer with the producer\'s k/v weights', async () => {
    const { producer, consumer, reference, x } = trio();
    const { tensor } = x(c.B, c.T, 4);
    const mask = tf.tensor2d([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1]]);
    const { output, kv } = producer.forwardWithKV(tensor, { attentionMask: mask });
    expect(kv.keys.shape).toEqual([c.B, c.KV, c.T, c.Dh]);
    expect(kv.keyPositions).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    // The producer's own output is what forward gives.
    expectClose(await take(output), await take(producer.forward(tensor, { attentionMask: mask })), 0);
    for (const implementation of ['naive', 'chunked'] as const) {
      const got = await take(consumer.forward(tensor, { sharedKV: kv, attentionMask: mask, implementation }));
      const want = await take(reference.forward(tensor, { attentionMask: mask, implementation }));
      expectClose(got, want, 1e-5, implementation);
    }
    disposeAll(tensor, mask, kv.keys, kv.values);
    producer.dispose();
    consumer.dispose();
  });

  const cacheKinds: [string, Partial<AttentionOptions>, () => AttentionCache][] = [
    ['KVCache', {}, () => new KVCache()],
    ['SlidingWindowCache (window 3, prefix 1)', { slidingWindow: 3, prefixLength: 1 }, () => new SlidingWindowCache(3, { prefixLength: 1 })],
  ];
  for (const [name, extra, makeCache] of cacheKinds) {
    it(`with a ${name}: prefill then steps, via forwardWithKV and via cache.read()`, async () => {
      const { producer, consumer, reference, x } = trio(extra);
      const { tensor } = x(c.B, c.T, 6);
      const before = tf.memory().numTensors;
      const pCache = makeCache();
      const rCache = makeCache();
      for (const [t0, n] of [[0, 5], [5, 1], [6, 1], [7, 2]]) {
        const xs = tf.slice(tensor, [0, t0, 0], [c.B, n, c.D]) as tf.Tensor3D;
        const { output, kv } = producer.forwardWithKV(xs, { cache: pCache });
        const got = await take(consumer.forward(xs, { sharedKV: kv }));
        const want = await take(reference.forward(xs, { cache: rCache }));
        expectClose(got, want, 1e-5, `${name} tokens ${t0}..${t0 + n - 1}`);
        if (n === 1) {
          // In a one-token step the cache holds all the consumer needs.
          const stored = pCache.read();
          expectClose(await take(consumer.forward(xs, { sharedKV: stored })), want, 1e-5, 'cache.read()');
          disposeAll(stored.keys, stored.values);
        }
        disposeAll(xs, output, kv.keys, kv.values);
      }
      pCache.dispose();
      rCache.dispose();
      expect(tf.memory().numTensors).toBe(before);
      tensor.dispose();
      producer.dispose();
      consumer.dispose();
    });
  }
});
