// Hymba's invariants: cached decoding under the default rule equals the full forward; a consumer attends over
// exactly its producer's keys and values; meta tokens stay visible in sliding-window layers; each branch alone,
// checked against the library's Attention block and Mamba mixer with the same weights; no leaked tensors.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Attention } from '@slmkit/attention';
import { ConfigError, Linear, Module, RotaryEmbedding, initBackend, type RotaryConfig } from '@slmkit/core';
import { MambaMixer } from '@slmkit/ssm';
import { HybridModel, HymbaBlock, countHybridParameters, validateHybridSpec, type HybridSpec, type LayerContext, type LayerSpec } from '../src/index.js';

const D = 16;
const H = 4;
const KV = 2;
const DH = 4;
const I = 32;
const W = 3;
const M = 2;
const ROTARY: RotaryConfig = { headDim: DH, base: 10000, maxPositionEmbeddings: 64, scaling: { type: 'ntk', factor: 3 } };

/** Global 0, windowed 1 → consumer 2, global 3 (a small copy of the fixture's pattern). */
const LAYERS: LayerSpec[] = [
  { mixer: 'hymba', feedForward: 'dense' },
  { mixer: 'hymba', feedForward: 'dense', window: true },
  { mixer: 'hymba', feedForward: 'dense', window: true, kvFrom: 1 },
  { mixer: 'hymba', feedForward: 'dense' },
];

function makeSpec(overrides: Partial<HybridSpec> = {}): HybridSpec {
  return {
    vocabSize: 32,
    hiddenSize: D,
    normEps: 1e-6,
    tieWordEmbeddings: true,
    attention: { numHeads: H, numKVHeads: KV, headDim: DH, valueHeadDim: I / H, rotary: ROTARY, slidingWindow: W },
    mamba: { intermediateSize: I, stateSize: 4, convKernel: 4, timeStepRank: 2, dtBCNorm: { eps: 1e-6, weight: true } },
    mlp: { intermediateSize: 24 },
    metaTokens: M,
    layers: LAYERS,
    ...overrides,
  };
}

/** Random values for every parameter (norm weights and meta tokens included), so no branch is trivial. */
async function randomise(module: Module, seed: number): Promise<void> {
  const weights: Record<string, tf.Tensor> = {};
  module.namedParameters().forEach(([name], i) => {
    const shape = module.checkpointShapes()[name];
    const scale = name.endsWith('A_log.0') ? 0.5 : name.includes('norm') ? 0.5 : 1 / Math.sqrt(shape[shape.length - 1]);
    const base = name.includes('norm') || name.endsWith('D.0') ? 1 : 0;
    weights[name] = tf.add(tf.randomNormal(shape, 0, scale, 'float32', seed + i), base);
  });
  await module.loadWeights(weights);
  tf.dispose(Object.values(weights));
}

/** Sets one parameter (checkpoint layout). */
async function setParameter(module: Module, name: string, value: tf.Tensor): Promise<void> {
  await module.loadWeights({ [name]: value }, { strict: false });
  value.dispose();
}

async function values(t: tf.Tensor): Promise<Float32Array> {
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** An output projection that passes the attention heads / SSM channels through, so references stop before out_proj. */
class Identity extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    return x.clone();
  }
}

/** Rows `[from, from + n)` of a block's `in_proj.weight` (checkpoint layout `[out, in]`). */
function inProjRows(block: HymbaBlock, from: number, n: number): tf.Tensor {
  return tf.tidy(() => tf.slice(block.inProj.stateDict().weight, [from, 0], [n, D]));
}

/** The library's Attention block with a block's q (and k, v) rows: the attention branch computed independently. */
async function referenceAttention(block: HymbaBlock, rotary: RotaryEmbedding, ownKV: boolean): Promise<Attention> {
  const attention = new Attention(
    { hiddenSize: D, numHeads: H, numKVHeads: KV, headDim: DH, valueHeadDim: I / H, slidingWindow: block.window == null ? null : block.window + 1, prefixLength: M },
    {
      qProj: new Linear(D, H * DH, { bias: false }),
      ...(ownKV ? { kProj: new Linear(D, KV * DH, { bias: false }), vProj: new Linear(D, KV * (I / H), { bias: false }) } : {}),
      oProj: new Identity(),
      rotary,
    },
  );
  const weights: Record<string, tf.Tensor> = { 'q_proj.weight': inProjRows(block, 0, H * DH) };
  if (ownKV) {
    weights['k_proj.weight'] = inProjRows(block, H * DH, KV * DH);
    weights['v_proj.weight'] = inProjRows(block, H * DH + KV * DH, KV * (I / H));
  }
  await attention.loadWeights(weights);
  tf.dispose(Object.values(weights));
  return attention;
}

/** `out_proj(norm(branch) / 2)`: what the block returns when the other branch's norm weight is zero. */
function fuseOne(block: HymbaBlock, norm: 'attention' | 'ssm', branch: tf.Tensor): tf.Tensor {
  return tf.tidy(() => block.outProj.forward(tf.div((norm === 'attention' ? block.attentionNorm : block.ssmNorm).forward(branch), 2)));
}

beforeAll(async () => {
  await initBackend('cpu');
});

describe('HymbaBlock', () => {
  it('with pre_avg_layernorm2 zeroed equals its attention branch alone (the Attention block with the same q, k, v)', async () => {
    const spec = makeSpec();
    validateHybridSpec(spec);
    const rotary = new RotaryEmbedding(ROTARY);
    for (const layer of [0, 1]) {
      const block = new HymbaBlock(spec, layer, { rotary });
      await randomise(block, 10 + layer);
      await setParameter(block, 'pre_avg_layernorm2.weight', tf.zeros([I]));
      const x = tf.randomNormal([2, 9, D], 0, 1, 'float32', 3) as tf.Tensor3D;
      const got = await values(block.forward(x, { offset: 0, kv: [] }, layer));
      const reference = await referenceAttention(block, rotary, true);
      const want = await values(tf.tidy(() => fuseOne(block, 'attention', reference.forward(x))));
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
      // The SSM branch matters once its norm has weight again.
      await setParameter(block, 'pre_avg_layernorm2.weight', tf.ones([I]));
      expect(maxAbsDiff(await values(block.forward(x, { offset: 0, kv: [] }, layer)), want)).toBeGreaterThan(1e-3);
      tf.dispose(x);
      block.dispose();
      reference.dispose();
    }
  });

  it('with pre_avg_layernorm1 zeroed equals its SSM branch alone (the Mamba-1 mixer with the same weights)', async () => {
    const spec = makeSpec();
    const block = new HymbaBlock(spec, 1, { rotary: new RotaryEmbedding(ROTARY) });
    await randomise(block, 20);
    await setParameter(block, 'pre_avg_layernorm1.weight', tf.zeros([I]));
    const mixer = new MambaMixer(
      { hiddenSize: D, intermediateSize: I, stateSize: 4, convKernel: 4, timeStepRank: 2, dtBCNorm: { eps: 1e-6, weight: true } },
      { outProj: new Identity() },
    );
    const state = block.stateDict();
    const qkv = H * DH + KV * DH + KV * (I / H);
    const weights: Record<string, tf.Tensor> = {
      'in_proj.weight': tf.slice(state['in_proj.weight'], [qkv, 0], [2 * I, D]), // [u | z]
      'conv1d.weight': state['conv1d.weight'],
      'conv1d.bias': state['conv1d.bias'],
      'x_proj.weight': state['x_proj.0.weight'],
      'dt_proj.weight': state['dt_proj.0.weight'],
      'dt_proj.bias': state['dt_proj.0.bias'],
      A_log: state['A_log.0'],
      D: state['D.0'],
      'dt_layernorm.weight': state['dt_layernorm.weight'],
      'b_layernorm.weight': state['B_layernorm.weight'],
      'c_layernorm.weight': state['C_layernorm.weight'],
    };
    await mixer.loadWeights(weights);
    tf.dispose([...Object.values(weights), ...Object.values(state)]);
    const x = tf.randomNormal([2, 9, D], 0, 1, 'float32', 4) as tf.Tensor3D;
    const got = await values(block.forward(x, { offset: 0, kv: [] }, 1));
    const want = await values(tf.tidy(() => fuseOne(block, 'ssm', mixer.forward(x))));
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
    await setParameter(block, 'pre_avg_layernorm1.weight', tf.ones([I]));
    expect(maxAbsDiff(await values(block.forward(x, { offset: 0, kv: [] }, 1)), want)).toBeGreaterThan(1e-3);
    tf.dispose(x);
    block.dispose();
    mixer.dispose();
  });

  it("a consumer layer's attention uses exactly the producer's keys and values", async () => {
    const spec = makeSpec();
    const rotary = new RotaryEmbedding(ROTARY);
    const producer = new HymbaBlock(spec, 1, { rotary });
    const consumer = new HymbaBlock(spec, 2, { rotary });
    // The consumer's in_proj has no k/v rows: [q | u | z].
    expect(consumer.inProj.checkpointShapes().weight).toEqual([H * DH + 2 * I, D]);
    await randomise(producer, 30);
    await randomise(consumer, 40);
    await setParameter(consumer, 'pre_avg_layernorm2.weight', tf.zeros([I]));
    const x1 = tf.randomNormal([2, 9, D], 0, 1, 'float32', 5) as tf.Tensor3D; // the producer's input
    const x2 = tf.randomNormal([2, 9, D], 0, 1, 'float32', 6) as tf.Tensor3D; // the consumer's (another layer's)
    const ctx: LayerContext = { offset: 0, kv: [], kvProducers: new Set([1]) };
    const y1 = producer.forward(x1, ctx, 1);
    const got = await values(consumer.forward(x2, ctx, 2));
    // Reference: the producer's keys and values from its own k/v rows on x1, attended by the consumer's q on x2.
    const producerAttention = await referenceAttention(producer, rotary, true);
    const consumerAttention = await referenceAttention(consumer, rotary, false);
    const { output, kv } = producerAttention.forwardWithKV(x1);
    expect(maxAbsDiff(await values(ctx.kv[1]!.keys.clone()), await values(kv.keys.clone()))).toBeLessThan(1e-5);
    const want = await values(tf.tidy(() => fuseOne(consumer, 'attention', consumerAttention.forward(x2, { sharedKV: kv }))));
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
    // Another layer's keys and values would give something else.
    const { output: other, kv: otherKV } = producerAttention.forwardWithKV(x2);
    const wrong = await values(tf.tidy(() => fuseOne(consumer, 'attention', consumerAttention.forward(x2, { sharedKV: otherKV }))));
    expect(maxAbsDiff(got, wrong)).toBeGreaterThan(1e-3);
    tf.dispose([x1, x2, y1, output, kv.keys, kv.values, other, otherKV.keys, otherKV.values, ctx.kv[1]!.keys, ctx.kv[1]!.values]);
    [producer, consumer, producerAttention, consumerAttention].forEach((m) => m.dispose());
  });
});

describe('HybridModel with Hymba layers', () => {
  it('with the default decode rule, cached decoding equals the full forward; the reference rule differs', async () => {
    const model = new HybridModel(makeSpec());
    await randomise(model, 50);
    const state = model.stateDict();
    const reference = new HybridModel(makeSpec({ hymbaDecodeWindow: 'reference' }));
    await reference.loadWeights(state);
    tf.dispose(Object.values(state));
    const rows = [
      [3, 7, 1, 30, 12, 5, 9, 22, 17, 2, 8, 14],
      [11, 4, 28, 6, 19, 0, 25, 13, 7, 31, 16, 10],
    ];
    const [B, L, P] = [2, 12, 4];
    const ids = tf.tensor2d(rows, [B, L], 'int32');
    const full = await values(model.forward(ids));
    const decode = async (m: HybridModel): Promise<Float32Array> => {
      const cache = m.createCache();
      const out = new Float32Array(B * L * D);
      const put = async (t: tf.Tensor, from: number, n: number) => {
        const v = await values(t);
        for (let b = 0; b < B; b++) out.set(v.subarray(b * n * D, (b + 1) * n * D), (b * L + from) * D);
      };
      const prompt = tf.slice(ids, [0, 0], [B, P]) as tf.Tensor2D;
      await put(m.forward(prompt, { cache }), 0, P);
      prompt.dispose();
      expect(cache.length).toBe(M + P);
      for (let t = P; t < L; t++) {
        const step = tf.slice(ids, [0, t], [B, 1]) as tf.Tensor2D;
        await put(m.forward(step, { cache }), t, 1);
        step.dispose();
      }
      expect(cache.length).toBe(M + L);
      cache.dispose();
      return out;
    };
    expect(maxAbsDiff(await decode(model), full)).toBeLessThan(1e-4);
    // NVIDIA's decode window (one position fewer) changes the steps past the window: the rule is really applied.
    expect(maxAbsDiff(await decode(reference), full)).toBeGreaterThan(1e-3);
    ids.dispose();
    model.dispose();
    reference.dispose();
  });

  it('meta tokens are visible from every position of a sliding-window layer, keys beyond the window are not', async () => {
    const spec = makeSpec({ layers: [{ mixer: 'hymba', feedForward: 'none', window: true }], metaTokens: M });
    const model = new HybridModel(spec);
    await randomise(model, 60);
    // Attention only: the SSM branch would carry the meta tokens forward on its own.
    await setParameter(model, 'layers.0.mamba.pre_avg_layernorm2.weight', tf.zeros([I]));
    const L = 10;
    const row = [5, 9, 2, 14, 7, 21, 3, 18, 11, 6];
    const ids = tf.tensor2d([row], [1, L], 'int32');
    const before = await values(model.forward(ids));
    await setParameter(model, 'memory_tokens', tf.randomNormal([M, D], 0, 1, 'float32', 61));
    const after = await values(model.forward(ids));
    for (let t = 0; t < L; t++) {
      const diff = maxAbsDiff(before.subarray(t * D, (t + 1) * D), after.subarray(t * D, (t + 1) * D));
      expect(diff, `position ${t}`).toBeGreaterThan(1e-4);
    }
    // Control: the first real token lies W + 1 or more positions before the last W − 1 queries, which do not see it.
    const changed = tf.tensor2d([[0, ...row.slice(1)]], [1, L], 'int32');
    const other = await values(model.forward(changed));
    for (let t = W + 1; t < L; t++) expect(maxAbsDiff(after.subarray(t * D, (t + 1) * D), other.subarray(t * D, (t + 1) * D))).toBeLessThan(1e-6);
    expect(maxAbsDiff(after.subarray(W * D, (W + 1) * D), other.subarray(W * D, (W + 1) * D))).toBeGreaterThan(1e-4); // q − k = W: seen
    tf.dispose([ids, changed]);
    model.dispose();
  });

  it('leaks no tensor in a forward, cached decoding or a training step', async () => {
    const model = new HybridModel(makeSpec());
    const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7]], [1, 7], 'int32');
    const mask = tf.tensor2d([[0, 1, 1, 1, 1, 1, 1]], [1, 7]);
    const start = tf.memory().numTensors;
    tf.dispose(model.forward(ids, { attentionMask: mask }));
    expect(tf.memory().numTensors).toBe(start);
    const cache = model.createCache();
    tf.dispose(model.forward(ids, { cache, attentionMask: mask }));
    for (let t = 0; t < 6; t++) {
      const step = tf.tensor2d([[t + 1]], [1, 1], 'int32');
      const stepMask = tf.ones([1, 8 + t]) as tf.Tensor2D;
      tf.dispose([model.forward(step, { cache, attentionMask: stepMask }), step, stepMask]);
    }
    expect(cache.length).toBe(M + 13);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(start);
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(model.forward(ids))) as tf.Scalar);
    expect(Object.keys(grads)).toContain(model.memoryTokens!.name);
    tf.dispose([value, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(start);
    tf.dispose([ids, mask]);
    model.dispose();
  });

  it('registers memory_tokens only with meta tokens, under NVIDIA names', () => {
    const model = new HybridModel(makeSpec());
    const names = model.namedParameters().map(([n]) => n);
    expect(names).toContain('memory_tokens');
    for (const n of ['layers.1.mamba.in_proj.weight', 'layers.1.mamba.x_proj.0.weight', 'layers.1.mamba.dt_proj.0.bias', 'layers.1.mamba.A_log.0', 'layers.1.mamba.D.0', 'layers.1.mamba.B_layernorm.weight', 'layers.1.pre_moe_layernorm.weight', 'layers.1.moe.experts.0.down_proj.weight']) {
      expect(names).toContain(n);
    }
    model.dispose();
    const plain = new HybridModel(makeSpec({ metaTokens: 0 }));
    expect(plain.namedParameters().map(([n]) => n)).not.toContain('memory_tokens');
    plain.dispose();
  });

  it('rejects a bad decode rule and mismatched branch widths, naming the field', () => {
    const bad = (spec: HybridSpec, field: string) => {
      try {
        validateHybridSpec(spec);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        expect((e as ConfigError).details.field).toBe(field);
      }
    };
    bad(makeSpec({ hymbaDecodeWindow: 'nvidia' as never }), 'hymbaDecodeWindow');
    bad(makeSpec({ attention: { numHeads: H, numKVHeads: KV, headDim: DH, valueHeadDim: DH, rotary: null, slidingWindow: W } }), 'attention.valueHeadDim');
  });
});

describe('countHybridParameters', () => {
  it('equals the parameter count of the built model for Hymba, Jamba-like and attention-bias stacks', () => {
    const specs: HybridSpec[] = [
      makeSpec(),
      makeSpec({ tieWordEmbeddings: false, metaTokens: 0, mamba: { intermediateSize: I, stateSize: 4, convKernel: 4, timeStepRank: 2, convBias: false, projBias: true } }),
      {
        vocabSize: 50, hiddenSize: D, normEps: 1e-6, tieWordEmbeddings: false,
        attention: { numHeads: H, numKVHeads: KV, headDim: DH, rotary: null, slidingWindow: 4, bias: true },
        mamba: { intermediateSize: I, stateSize: 4, convKernel: 4, timeStepRank: 2, dtBCNorm: { eps: 1e-6, weight: true } },
        mlp: { intermediateSize: 24 },
        moe: { numExperts: 3, topK: 2, normalize: false },
        layers: [
          { mixer: 'mamba', feedForward: 'dense' },
          { mixer: 'attention', feedForward: 'moe' },
          { mixer: 'sliding-attention', feedForward: 'none' },
          { mixer: 'sliding-attention', feedForward: 'dense', kvFrom: 2 },
        ],
      },
    ];
    for (const spec of specs) {
      const model = new HybridModel(spec);
      // The body has no LM head: count it as tied.
      const count = countHybridParameters({ ...spec, tieWordEmbeddings: true });
      expect(count.total).toBe(model.parameterCount().total);
      model.dispose();
    }
  });

  it('counts an untied head and the experts a token skips', () => {
    const spec = makeSpec({ tieWordEmbeddings: false });
    const c = countHybridParameters(spec);
    expect(c.lmHead).toBe(32 * D);
    expect(c.total).toBe(c.embeddings + c.lmHead + c.metaTokens + c.mixers + c.feedForwards + c.norms);
    expect(c.activePerToken).toBe(c.total);
  });
});
