// HybridModel built from a spec: cached decoding equals the full forward (Mamba, attention, a sliding window,
// shared KV, a mixture of experts), consumers own no key/value projections, errors are typed, nothing leaks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError, initBackend } from '@slmkit/core';
import { HybridCache, HybridModel, type HybridSpec } from '../src/index.js';

const spec = (): HybridSpec => ({
  vocabSize: 40,
  hiddenSize: 16,
  normEps: 1e-6,
  tieWordEmbeddings: true,
  attention: { numHeads: 4, numKVHeads: 2, headDim: 4, rotary: { headDim: 4, base: 10_000, maxPositionEmbeddings: 64 }, slidingWindow: 3 },
  mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2, dtBCNorm: { eps: 1e-6, weight: true } },
  mlp: { intermediateSize: 24 },
  moe: { numExperts: 4, topK: 2, normalize: false },
  layers: [
    { mixer: 'mamba', feedForward: 'dense' },
    { mixer: 'attention', feedForward: 'moe' },
    { mixer: 'attention', feedForward: 'dense', kvFrom: 1 },
    { mixer: 'sliding-attention', feedForward: 'none' },
    { mixer: 'sliding-attention', feedForward: 'moe', kvFrom: 3 },
    { mixer: 'mamba', feedForward: 'none' },
  ],
});

const ROWS = [
  [3, 7, 1, 9, 12, 5, 30, 2, 8, 4],
  [11, 0, 6, 6, 21, 39, 17, 3, 3, 14],
];

describe.each(['cpu', 'wasm'] as const)('HybridModel on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('decodes through its cache exactly what one full forward computes (prefill, then one token at a time)', async () => {
    const model = new HybridModel(spec());
    const L = ROWS[0].length;
    const full = tf.tensor2d(ROWS, undefined, 'int32');
    const want = (await model.forward(full).data()) as Float32Array; // [B, L, D]
    const before = tf.memory().numTensors;
    const cache = model.createCache();
    const Lp = 6;
    const parts: Float32Array[] = [];
    const run = async (rows: number[][]) => {
      const ids = tf.tensor2d(rows, undefined, 'int32');
      const h = model.forward(ids, { cache });
      parts.push((await h.data()) as Float32Array);
      tf.dispose([ids, h]);
    };
    await run(ROWS.map((r) => r.slice(0, Lp)));
    for (let t = Lp; t < L; t++) await run(ROWS.map((r) => [r[t]]));
    expect(cache.length).toBe(L);
    // The windowed producer keeps its window, the full one every position; consumers keep nothing of their own.
    expect(cache.layers[1].attention!.heldLength).toBe(L);
    expect(cache.layers[3].attention!.heldLength).toBe(3);
    expect(cache.layers[2].attention).toBeUndefined();
    const D = 16;
    let worst = 0;
    for (let b = 0; b < 2; b++) {
      for (let t = 0; t < L; t++) {
        const part = t < Lp ? parts[0].subarray((b * Lp + t) * D, (b * Lp + t + 1) * D) : parts[t - Lp + 1].subarray(b * D, (b + 1) * D);
        for (let c = 0; c < D; c++) worst = Math.max(worst, Math.abs(part[c] - want[(b * L + t) * D + c]));
      }
    }
    expect(worst).toBeLessThan(2e-5);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
    full.dispose();
    model.dispose();
  });

  it('gives KV consumers no key/value projections, and their output depends on the producer\'s', async () => {
    const model = new HybridModel(spec());
    const names = model.namedParameters().map(([n]) => n);
    expect(names).toContain('layers.1.self_attn.k_proj.weight');
    expect(names.filter((n) => n.startsWith('layers.2.self_attn.'))).toEqual(['layers.2.self_attn.q_proj.weight', 'layers.2.self_attn.o_proj.weight']);
    // Zeroing the producer's value projection zeroes the consumer's attention: its output is then o_proj(0) = 0,
    // so layer 2 adds only its MLP.
    const ids = tf.tensor2d(ROWS, undefined, 'int32');
    const a = (await model.forward(ids).data()) as Float32Array;
    const v = model.namedParameters().find(([n]) => n === 'layers.1.self_attn.v_proj.weight')![1];
    v.assign(tf.zerosLike(v));
    const b = (await model.forward(ids).data()) as Float32Array;
    expect(Math.max(...a.map((x, i) => Math.abs(x - b[i])))).toBeGreaterThan(1e-3);
    ids.dispose();
    model.dispose();
  });

  it('rejects a cache of another model, a disposed cache and a mask of the wrong shape', () => {
    const model = new HybridModel(spec());
    const ids = tf.tensor2d([[1, 2, 3]], undefined, 'int32');
    const other = new HybridModel({ ...spec(), layers: spec().layers.slice(0, 2) });
    const wrong = other.createCache();
    expect(() => model.forward(ids, { cache: wrong })).toThrow(ConfigError);
    expect(() => model.forward(ids, { cache: wrong })).toThrow(/HybridCache of 6 layers/);
    const cache = model.createCache();
    cache.dispose();
    expect(() => model.forward(ids, { cache })).toThrow(ConfigError);
    try {
      model.forward(ids, { cache });
    } catch (e) {
      expect(String((e as ConfigError).details.found)).toMatch(/disposed/);
    }
    const mask = tf.ones([1, 4]) as tf.Tensor2D;
    expect(() => model.forward(ids, { attentionMask: mask })).toThrow(ShapeError);
    expect(() => model.forward(tf.zeros([1, 3]) as tf.Tensor2D)).toThrow(/int32/);
    tf.dispose([ids, mask]);
    wrong.dispose();
    other.dispose();
    model.dispose();
  });

  it('clones a cache into an independent copy', async () => {
    const model = new HybridModel(spec());
    const cache = model.createCache();
    const ids = tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32');
    model.forward(ids, { cache }).dispose();
    const copy = cache.clone();
    expect(copy).toBeInstanceOf(HybridCache);
    expect(copy.length).toBe(4);
    const next = tf.tensor2d([[5]], undefined, 'int32');
    const x = (await model.forward(next, { cache }).data()) as Float32Array;
    const y = (await model.forward(next, { cache: copy }).data()) as Float32Array;
    expect(Array.from(y)).toEqual(Array.from(x));
    tf.dispose([ids, next]);
    cache.dispose();
    copy.dispose();
    model.dispose();
  });
});
