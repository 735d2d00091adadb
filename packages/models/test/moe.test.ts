// Mixture-of-experts models: parameter counts against the checkpoints' own tensors, router logits gathered for
// the auxiliary losses, a leak-free training step with them, and typed errors for bad MoE configs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, initBackend } from '@slmkit/core';
import { SparseMoE, loadBalancingLoss, routerZLoss } from '@slmkit/moe';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { CausalLM, configFromHF, countParameters, fromPretrained, isSparseLayer, validateCausalLMConfig, type CausalLMConfig } from '../src/index.js';

const MOE_FAMILIES = ['mixtral', 'qwen2_moe', 'olmoe'] as const;

/** Sizes of every tensor in a fixture's model.safetensors, read from its header. */
function checkpointSizes(family: string): number[] {
  const bytes = readFileSync(join(caseDir(family), 'model.safetensors'));
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { shape: number[] }>;
  return Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .map(([, v]) => v.shape.reduce((a, b) => a * b, 1));
}

describe('MoE configs and parameter counts', () => {
  it.each(MOE_FAMILIES)('%s: counts exactly the tensors of its checkpoint, and the active part by hand', (family) => {
    const config = configFromHF(loadCase(family).config!);
    const stored = checkpointSizes(family).reduce((a, b) => a + b, 0);
    const c = countParameters(config);
    expect(c.total).toBe(stored);
    const moe = config.moe!;
    const sparse = Array.from({ length: config.numLayers }, (_, i) => isSparseLayer(config, i)).filter(Boolean).length;
    const expert = 3 * config.hiddenSize * moe.expertIntermediateSize;
    expect(c.routedExperts).toBe(sparse * moe.numExperts * expert);
    expect(c.active).toBe(stored - sparse * (moe.numExperts - moe.topK) * expert);
  });

  it('maps Qwen2-MoE sparse layers from decoder_sparse_step and mlp_only_layers', () => {
    const base = loadCase('qwen2_moe').config!;
    expect(configFromHF(base).moe!.sparseLayers).toEqual([0, 2]); // mlp_only_layers [1]
    expect(configFromHF({ ...base, mlp_only_layers: [], decoder_sparse_step: 2 }).moe!.sparseLayers).toEqual([1]);
    expect(configFromHF({ ...base, mlp_only_layers: [] }).moe!.sparseLayers).toBeUndefined(); // every layer
    expect(configFromHF(base).moe).toMatchObject({ numExperts: 4, topK: 2, normalizeTopK: false, expertIntermediateSize: 32, sharedExpertIntermediateSize: 48 });
    expect(configFromHF(loadCase('mixtral').config!).moe).toMatchObject({ normalizeTopK: true, expertIntermediateSize: 48, sharedExpertIntermediateSize: null });
  });

  it('rejects bad MoE fields, naming them with the expected and found values', () => {
    const mixtral = loadCase('mixtral').config!;
    expect(() => configFromHF({ ...mixtral, num_experts_per_tok: 5 })).toThrow(/num_experts_per_tok must be at most num_local_experts \(4\), found 5/);
    expect(() => configFromHF({ ...mixtral, router_jitter_noise: 1.5 })).toThrow(/router_jitter_noise must be a number in \[0, 1\), found 1.5/);
    expect(() => configFromHF({ ...loadCase('olmoe').config!, clip_qkv: 8 })).toThrow(/clip_qkv must be null/);
    expect(() => configFromHF({ ...loadCase('qwen2_moe').config!, mlp_only_layers: 'none' })).toThrow(ConfigError);
    const config = configFromHF(mixtral);
    const bad = (moe: Partial<NonNullable<CausalLMConfig['moe']>>): CausalLMConfig => ({ ...config, moe: { ...config.moe!, ...moe } });
    const fieldOf = (c: CausalLMConfig) => {
      try {
        validateCausalLMConfig(c);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as ConfigError).details.field;
      }
      return undefined;
    };
    expect(fieldOf(bad({ topK: 9 }))).toBe('moe.topK');
    expect(fieldOf(bad({ numExperts: 0 }))).toBe('moe.numExperts');
    expect(fieldOf(bad({ sparseLayers: [1, 0] }))).toBe('moe.sparseLayers[1]');
    expect(fieldOf(bad({ sparseLayers: [5] }))).toBe('moe.sparseLayers[0]');
    expect(fieldOf(bad({ normalizeTopK: 'yes' as never }))).toBe('moe.normalizeTopK');
    expect(() => new CausalLM(bad({ topK: 9 }))).toThrow(/moe\.topK must be at most moe\.numExperts \(4\), found 9/);
  });
});

describe.each(['cpu', 'wasm'] as const)('MoE models on %s', (backend) => {
  let model: CausalLM;
  beforeAll(async () => {
    await initBackend(backend);
    model = (await fromPretrained(caseDir('qwen2_moe'))) as CausalLM;
    return () => model.dispose();
  });

  it('builds SparseMoE blocks on the sparse layers only, under the checkpoint names', () => {
    const kinds = model.model.layers.items.map((l) => (l.mlp instanceof SparseMoE ? 'moe' : 'dense'));
    expect(kinds).toEqual(['moe', 'dense', 'moe']);
    const names = model.namedParameters().map(([n]) => n);
    expect(names).toContain('model.layers.0.mlp.shared_expert_gate.weight');
    expect(names).toContain('model.layers.2.mlp.experts.3.down_proj.weight');
    expect(names).toContain('model.layers.1.mlp.gate_proj.weight');
  });

  it('hands out each sparse layer\'s router logits, and trains with the auxiliary losses without leaking', async () => {
    const fixture = loadCase('qwen2_moe');
    const [B, L] = fixture.logitsShape as number[];
    const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
    const mask = tf.tensor2d(fixture.attentionMask, [B, L]);
    const before = tf.memory().numTensors;
    const routerLogits: tf.Tensor2D[] = [];
    const logits = model.forward(ids, { routerLogits });
    expect(routerLogits.map((t) => t.shape)).toEqual([[B * L, 4], [B * L, 4]]);
    const aux = loadBalancingLoss(routerLogits, { numExperts: 4, topK: 2, attentionMask: mask });
    const auxValue = (await aux.data())[0];
    expect(auxValue).toBeGreaterThanOrEqual(2 - 1e-6); // k · 1 is the minimum at k = 2
    expect(auxValue).toBeLessThan(2 * 4);
    tf.dispose([logits, aux, ...routerLogits]);
    expect(tf.memory().numTensors).toBe(before);

    const optimizer = tf.train.sgd(1e-3);
    const params = model.trainableParameters();
    const { value, grads } = tf.variableGrads(() => {
      const collected: tf.Tensor2D[] = [];
      const out = model.forward(ids, { routerLogits: collected }); // [B, L, V]
      const V = out.shape[2];
      const targets = tf.oneHot(tf.reshape(tf.slice(ids, [0, 1], [B, L - 1]), [-1]), V); // [B·(L−1), V]
      const predicted = tf.reshape(tf.slice(out, [0, 0, 0], [B, L - 1, V]), [-1, V]); // [B·(L−1), V]
      const ce = tf.losses.softmaxCrossEntropy(targets, predicted);
      const balance = loadBalancingLoss(collected, { numExperts: 4, topK: 2, attentionMask: mask });
      const z = routerZLoss(collected, { attentionMask: mask });
      const total = tf.addN([ce, tf.mul(balance, model.config.moe!.routerAuxLossCoef), tf.mul(z, 1e-3)]) as tf.Scalar;
      tf.dispose(collected);
      return total;
    }, params);
    const routerGrad = grads[(model.model.layers.at(0).mlp as SparseMoE).router.weight.name];
    expect(Math.max(...Array.from(await routerGrad.data()).map(Math.abs))).toBeGreaterThan(0);
    optimizer.applyGradients(grads);
    tf.dispose([value, ...Object.values(grads)]);
    optimizer.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([ids, mask]);
  });
});
