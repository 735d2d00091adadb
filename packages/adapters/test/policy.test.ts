// Adapter policies on built models: which layers a target selects (names, suffixes, globs, RegExps, predicates),
// per-layer rank / alpha, freezing, typed errors, model-wide switching, and the Mamba mixer's four projections.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, initBackend, Linear } from '@slmkit/core';
import { Attention } from '@slmkit/attention';
import { caseDir } from '@slmkit/fixtures';
import { CausalLM, configFromHF, fromPretrained, type PretrainedLM } from '@slmkit/models';
import {
  activeAdapter,
  adaptedLayers,
  adapterNames,
  adapterParameters,
  addAdapter,
  deleteAdapter,
  disableAdapters,
  LoRALinear,
  mergeAdapters,
  setAdapter,
  unmergeAdapters,
} from '../src/index.js';
import { maxAbsDiff, take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

function tinyLlama(): CausalLM {
  return new CausalLM(configFromHF({
    model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2,
  }));
}

const names = (model: CausalLM, adapter?: string) =>
  adaptedLayers(model).filter(([, l]) => adapter == null || l.adapter(adapter) != null).map(([n]) => n);

describe('adapter policies', () => {
  it('selects layers by suffix, full name, glob, RegExp and predicate', () => {
    const model = tinyLlama();
    addAdapter(model, 'suffix', { target: ['q_proj', 'model.layers.1.mlp.down_proj'], rank: 2 });
    expect(names(model, 'suffix')).toEqual(['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.mlp.down_proj']);
    addAdapter(model, 'glob', { target: 'model.layers.0.mlp.*_proj', rank: 2 });
    expect(names(model, 'glob')).toEqual(['model.layers.0.mlp.gate_proj', 'model.layers.0.mlp.up_proj', 'model.layers.0.mlp.down_proj']);
    addAdapter(model, 'regex', { target: /model\.layers\.1\.self_attn\.[kv]_proj/, rank: 2 });
    expect(names(model, 'regex')).toEqual(['model.layers.1.self_attn.k_proj', 'model.layers.1.self_attn.v_proj']);
    addAdapter(model, 'wide', { target: (_name, layer: Linear) => layer.outFeatures === 32, rank: 2 });
    expect(names(model, 'wide')).toEqual(['lm_head']);
    expect(adapterNames(model)).toEqual(['suffix', 'glob', 'regex', 'wide']);
    expect(activeAdapter(model)).toBe('wide');
    model.dispose();
  });

  it('applies rank and alpha patterns, freezes the base, and trains only adapter parameters', () => {
    const model = tinyLlama();
    const total = model.parameterCount().total;
    addAdapter(model, 'a', { target: ['q_proj', 'v_proj'], rank: 4, alpha: 8, rankPattern: { 'layers.1.self_attn.v_proj': 2 }, alphaPattern: { 'model.layers.0.self_attn.q_proj': 1 } });
    const got = adaptedLayers(model).map(([n, l]) => [n, l.adapter('a')!.rank, l.adapter('a')!.scaling]);
    expect(got).toEqual([
      ['model.layers.0.self_attn.q_proj', 4, 0.25],
      ['model.layers.0.self_attn.v_proj', 4, 2],
      ['model.layers.1.self_attn.q_proj', 4, 2],
      ['model.layers.1.self_attn.v_proj', 2, 4],
    ]);
    // q: 16 -> 16, v: 16 -> 8; A is [r, 16], B is [out, r].
    const adapterSize = 4 * (16 + 16) + 4 * (16 + 8) + 4 * (16 + 16) + 2 * (16 + 8);
    expect(model.parameterCount()).toEqual({ total: total + adapterSize, trainable: adapterSize });
    expect(adapterParameters(model).reduce((n, v) => n + v.size, 0)).toBe(adapterSize);
    // Parameter names are the Hugging Face ones plus the adapters'.
    const paramNames = model.namedParameters().map(([n]) => n);
    expect(paramNames).toContain('model.layers.0.self_attn.q_proj.weight');
    expect(paramNames).toContain('model.layers.0.self_attn.q_proj.adapters.a.lora_A');
    model.dispose();
  });

  it('rejects bad targets and options with typed errors and changes nothing', () => {
    const model = tinyLlama();
    const count = model.parameterCount();
    const cases: [unknown, RegExp][] = [
      [{ target: ['q_proj', 'query'], rank: 2 }, /target "query" matches no module of the model \(its linear layers are named q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head\)/],
      [{ target: 'mlp', rank: 2 }, /matches model\.layers\.0\.mlp, a GatedMLP/],
      [{ target: [], rank: 2 }, /target must be/],
      [{ target: 'q_proj', rank: 1.5 }, /rank must be a positive integer, found 1\.5/],
      [{ target: 'q_proj', rank: 2, rankPattern: { q_proj: 0 } }, /rankPattern\["q_proj"\] must be a positive integer, found 0/],
      [{ target: 'q_proj', rank: 2, rankPattern: { '(': 3 } }, /rankPattern: key "\(" is not a valid regular expression/],
      [{ target: 'q_proj', rank: 2, dora: 'yes' }, /dora must be a boolean/],
      [{ target: (_n: string) => false, rank: 2 }, /selects no linear layer/],
    ];
    for (const [policy, message] of cases) {
      expect(() => addAdapter(model, 'x', policy as never), String(message)).toThrow(ConfigError);
      expect(() => addAdapter(model, 'x', policy as never)).toThrow(message);
    }
    expect(adaptedLayers(model)).toEqual([]);
    expect(model.parameterCount()).toEqual(count);
    expect(() => setAdapter(model, 'x')).toThrow(/no adapters/);
    addAdapter(model, 'x', { target: 'q_proj', rank: 2 });
    expect(() => addAdapter(model, 'x', { target: 'q_proj', rank: 2 })).toThrow(/already has an adapter named "x"/);
    expect(() => setAdapter(model, 'y')).toThrow(/no adapter named "y" \(adapters: x\)/);
    model.dispose();
  });

  it('switches between named adapters on one base without reloading, merges, unmerges and deletes', async () => {
    const model = tinyLlama();
    addAdapter(model, 'one', { target: ['q_proj', 'v_proj'], rank: 2 });
    addAdapter(model, 'two', { target: ['o_proj'], rank: 2 });
    for (const v of adapterParameters(model, 'one').concat(adapterParameters(model, 'two'))) v.assign(tf.randomNormal(v.shape, 0, 0.5, 'float32', 1));
    const ids = tf.tensor2d([[1, 2, 3, 4, 5]], undefined, 'int32');
    const run = async () => take(model.forward(ids));
    disableAdapters(model);
    const base = await run();
    setAdapter(model, 'one');
    const one = await run();
    setAdapter(model, 'two');
    const two = await run();
    expect(maxAbsDiff(one, base)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(two, base)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(one, two)).toBeGreaterThan(1e-3);
    // Layers without the active adapter run their base weights.
    expect(adaptedLayers(model).map(([, l]) => l.activeAdapter)).toEqual([undefined, undefined, 'two', undefined, undefined, 'two']);
    expect(mergeAdapters(model)).toBe(2);
    expect(maxAbsDiff(await run(), two)).toBeLessThan(1e-5);
    expect(() => setAdapter(model, 'one')).toThrow(/merged into model\.layers\.0\.self_attn\.o_proj; call unmergeAdapters first/);
    expect(() => mergeAdapters(model)).toThrow(ConfigError);
    expect(unmergeAdapters(model)).toBe(2);
    setAdapter(model, 'one');
    expect(maxAbsDiff(await run(), one)).toBe(0);
    const before = tf.memory().numTensors;
    deleteAdapter(model, 'two');
    expect(tf.memory().numTensors).toBe(before - 4);
    expect(adapterNames(model)).toEqual(['one']);
    expect(() => deleteAdapter(model, 'two')).toThrow(/no adapter named "two"/);
    ids.dispose();
    model.dispose();
  });

  it('adds to a LoRALinear a block was built with instead of wrapping it twice', () => {
    const q = new LoRALinear(new Linear(16, 16, { seed: 1 }), { rank: 2 });
    const attn = new Attention({ hiddenSize: 16, numHeads: 4, numKVHeads: 2, headDim: 4 }, {
      qProj: q, kProj: new Linear(16, 8), vProj: new Linear(16, 8), oProj: new Linear(16, 16),
    });
    addAdapter(attn, 'second', { target: ['q_proj', 'v_proj'], rank: 2 });
    expect(adaptedLayers(attn).map(([n, l]) => [n, l === q, l.adapterNames()])).toEqual([
      ['q_proj', true, ['default', 'second']],
      ['v_proj', false, ['second']],
    ]);
    expect(() => new LoRALinear(q.base)).toThrow(/already hands its forward to a LoRALinear/);
    attn.dispose();
  });

  it('disposes the model with its adapters, merged ones included, without leaking', () => {
    const before = tf.memory().numTensors;
    const model = tinyLlama();
    addAdapter(model, 'one', { target: ['q_proj', 'down_proj'], rank: 2, dora: true });
    mergeAdapters(model);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("LoRA on the Mamba mixer's in_proj, x_proj, dt_proj and out_proj", () => {
  let model: PretrainedLM;
  beforeAll(async () => {
    model = await fromPretrained(caseDir('mamba'));
  });
  afterAll(() => model?.dispose());

  it('wraps all four projections of every mixer, and each one changes the output', async () => {
    const ids = tf.tensor2d([[3, 1, 4, 1, 5, 9, 2, 6]], undefined, 'int32');
    const base = await take(model.forward(ids));
    for (const proj of ['in_proj', 'x_proj', 'dt_proj', 'out_proj']) {
      addAdapter(model, proj, { target: proj, rank: 2, alpha: 4 });
      const layers = adaptedLayers(model).filter(([, l]) => l.adapter(proj) != null);
      expect(layers.map(([n]) => n)).toEqual([0, 1].map((i) => `backbone.layers.${i}.mixer.${proj}`));
      expect(layers.every(([, l]) => l instanceof LoRALinear)).toBe(true);
      for (const v of adapterParameters(model, proj)) v.assign(tf.randomNormal(v.shape, 0, 0.3, 'float32', 5));
      const adapted = await take(model.forward(ids));
      expect(maxAbsDiff(adapted, base), proj).toBeGreaterThan(1e-3);
      // Merged (the mixer's Linear computes alone) equals unmerged (the adapter runs as the Linear's delegate).
      mergeAdapters(model);
      expect(maxAbsDiff(await take(model.forward(ids)), adapted), proj).toBeLessThan(1e-4);
      unmergeAdapters(model);
    }
    disableAdapters(model);
    expect(maxAbsDiff(await take(model.forward(ids)), base)).toBe(0);
    ids.dispose();
  });
});
