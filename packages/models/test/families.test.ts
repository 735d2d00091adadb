// configFromHF for each family: the fields every fixture config maps to, the class defaults of absent fields, the
// flags the fixtures do not exercise (Qwen2's window layers, StableLM's parallel residual and qk_layernorm, Phi's
// qk_layernorm, Phi-3's longrope), and ConfigErrors that name the field.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCase } from '@slmkit/fixtures';
import { ConfigError, LayerNorm } from '@slmkit/core';
import {
  CausalLM,
  FAMILIES,
  PerHeadLayerNorm,
  configFromHF,
  layerWindow,
  validateCausalLMConfig,
  type CausalLMConfig,
} from '../src/index.js';
import { maxAbsDiff, take, useBackend } from './helpers.js';

beforeAll(async () => {
  await useBackend('cpu');
});

const fixtureConfig = (family: string): Record<string, unknown> => loadCase(family).config as Record<string, unknown>;

/** The error a call throws (or undefined). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

const tiny = {
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
};

describe('configFromHF on the fixture configs', () => {
  it('maps llama', () => {
    const c = configFromHF(fixtureConfig('llama'));
    expect(c).toMatchObject({
      family: 'llama', vocabSize: 128, hiddenSize: 48, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 12,
      intermediateSize: 96, activation: 'silu', mlp: 'gated', norm: { type: 'rms', eps: 1e-5 },
      attentionBias: { q: false, k: false, v: false, o: false }, mlpBias: false, tieWordEmbeddings: false,
      slidingWindow: null, bosTokenId: 1, eosTokenId: 2, padTokenId: 0,
    });
    expect(c.rotary).toMatchObject({ headDim: 12, rotaryDim: 12, base: 10000, maxPositionEmbeddings: 128 });
  });

  it('maps mistral with its window, qwen2 with biases and no window, gemma with its quirks', () => {
    expect(configFromHF(fixtureConfig('mistral')).slidingWindow).toBe(6);
    const q = configFromHF(fixtureConfig('qwen2'));
    expect(q).toMatchObject({ attentionBias: { q: true, k: true, v: true, o: false }, tieWordEmbeddings: true, slidingWindow: null });
    expect(q.rotary.base).toBe(1e6);
    expect(q.layerTypes).toBeUndefined();
    const g = configFromHF(fixtureConfig('gemma'));
    expect(g).toMatchObject({
      headDim: 16, numKVHeads: 1, activation: 'gelu_tanh', scaleEmbeddings: true, tieWordEmbeddings: true,
      norm: { type: 'rms', eps: 1e-6, unitOffset: true }, bosTokenId: 2, eosTokenId: 1,
    });
  });

  it('maps phi, phi3 and stablelm', () => {
    const phi = configFromHF(fixtureConfig('phi'));
    expect(phi).toMatchObject({
      mlp: 'plain', activation: 'gelu_tanh', parallelResidual: true, lmHeadBias: true, mlpBias: true,
      attentionBias: { q: true, k: true, v: true, o: true }, norm: { type: 'layer', eps: 1e-5, bias: true }, qkNorm: null,
    });
    expect(phi.rotary.rotaryDim).toBe(8);
    expect(configFromHF(fixtureConfig('phi3'))).toMatchObject({ fusedQKV: true, fusedGateUp: true, slidingWindow: null });
    const s = configFromHF(fixtureConfig('stablelm'));
    expect(s).toMatchObject({ numHeads: 3, headDim: 16, attentionBias: { q: true, k: true, v: true, o: false }, parallelResidual: false });
    expect(s.rotary.rotaryDim).toBe(4);
  });

  it('produces JSON-serialisable configs that validate', () => {
    for (const family of Object.keys(FAMILIES)) {
      const c = configFromHF(fixtureConfig(family));
      expect(JSON.parse(JSON.stringify(c))).toEqual(c);
      expect(() => validateCausalLMConfig(c)).not.toThrow();
    }
  });
});

describe('configFromHF defaults and flags', () => {
  it('uses each config class default for absent fields', () => {
    const llama = configFromHF({ model_type: 'llama', ...tiny });
    expect(llama).toMatchObject({ numKVHeads: 4, headDim: 8, norm: { eps: 1e-6 }, tieWordEmbeddings: false, maxPositionEmbeddings: 2048, bosTokenId: 1, eosTokenId: 2, padTokenId: null });
    expect(configFromHF({ model_type: 'mistral', ...tiny, num_key_value_heads: 2 }).slidingWindow).toBe(4096);
    expect(configFromHF({ model_type: 'mistral', ...tiny, num_key_value_heads: 2, sliding_window: null }).slidingWindow).toBeNull();
    expect(configFromHF({ model_type: 'gemma', ...tiny, head_dim: 8 })).toMatchObject({ tieWordEmbeddings: true, activation: 'gelu_tanh' });
    expect(configFromHF({ model_type: 'gemma', ...tiny }).headDim).toBe(256);
    expect(configFromHF({ model_type: 'phi', ...tiny }).rotary.rotaryDim).toBe(4); // partial_rotary_factor 0.5
    expect(configFromHF({ model_type: 'stablelm', ...tiny }).rotary.rotaryDim).toBe(2); // 0.25
    expect(configFromHF({ model_type: 'phi3', ...tiny })).toMatchObject({ norm: { eps: 1e-5 }, eosTokenId: 32000, padTokenId: 32000 });
    expect(configFromHF({ model_type: 'llama', ...tiny, eos_token_id: [128001, 128009] }).eosTokenId).toEqual([128001, 128009]);
  });

  it('applies Qwen2 windows only when use_sliding_window is on, to layers >= max_window_layers', () => {
    const off = configFromHF({ model_type: 'qwen2', ...tiny, num_hidden_layers: 4, use_sliding_window: false, sliding_window: 8, max_window_layers: 2 });
    expect(off.slidingWindow).toBeNull();
    const on = configFromHF({ model_type: 'qwen2', ...tiny, num_hidden_layers: 4, use_sliding_window: true, sliding_window: 8, max_window_layers: 2 });
    expect(on.slidingWindow).toBe(8);
    expect(on.layerTypes).toEqual(['full_attention', 'full_attention', 'sliding_attention', 'sliding_attention']);
    expect([0, 1, 2, 3].map((i) => layerWindow(on, i))).toEqual([null, null, 8, 8]);
    const allFull = configFromHF({ model_type: 'qwen2', ...tiny, use_sliding_window: true, sliding_window: 8, max_window_layers: 28 });
    expect(allFull.slidingWindow).toBeNull();
    const model = new CausalLM(on);
    expect(model.createCache().layers.map((c) => c.constructor.name)).toEqual(['KVCache', 'KVCache', 'SlidingWindowCache', 'SlidingWindowCache']);
    model.dispose();
  });

  it('maps Phi-3 longrope scaling with the top-level original_max_position_embeddings', () => {
    const short = Array.from({ length: 4 }, (_, i) => 1 + i / 10);
    const long = Array.from({ length: 4 }, (_, i) => 2 + i);
    const c = configFromHF({
      model_type: 'phi3', ...tiny, max_position_embeddings: 131072, original_max_position_embeddings: 4096,
      rope_scaling: { type: 'longrope', short_factor: short, long_factor: long },
    });
    expect(c.rotary.scaling).toEqual({ type: 'longrope', shortFactor: short, longFactor: long, originalMaxPositionEmbeddings: 4096 });
  });

  it('builds StableLM qk_layernorm per head and the parallel residual without a post-attention norm', () => {
    const c = configFromHF({ model_type: 'stablelm', ...tiny, num_key_value_heads: 2, qk_layernorm: true, use_parallel_residual: true });
    const model = new CausalLM(c);
    const names = model.namedParameters().map(([n]) => n);
    expect(names).toContain('model.layers.0.self_attn.q_layernorm.norms.3.weight');
    expect(names).toContain('model.layers.0.self_attn.k_layernorm.norms.1.weight');
    expect(names).not.toContain('model.layers.0.self_attn.k_layernorm.norms.2.weight');
    expect(names.some((n) => n.includes('layernorm.norms.0.bias'))).toBe(false);
    expect(names.some((n) => n.includes('post_attention_layernorm'))).toBe(false);
    model.dispose();
  });

  it('builds Phi qk_layernorm as one LayerNorm over head_dim shared by the heads', () => {
    const model = new CausalLM(configFromHF({ model_type: 'phi', ...tiny, qk_layernorm: true }));
    const names = model.namedParameters().map(([n]) => n);
    for (const n of ['q_layernorm.weight', 'q_layernorm.bias', 'k_layernorm.weight', 'k_layernorm.bias']) {
      expect(names).toContain(`model.layers.0.self_attn.${n}`);
    }
    expect(model.checkpointShapes()['model.layers.0.self_attn.q_layernorm.weight']).toEqual([8]);
    model.dispose();
  });
});

describe('configFromHF errors', () => {
  it('names model_type when it is unknown or missing', () => {
    for (const modelType of ['gpt2', undefined, 42]) {
      const e = thrown(() => configFromHF({ ...tiny, model_type: modelType }));
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).details.field).toBe('model_type');
      expect((e as Error).message).toMatch(/llama, mistral, qwen2, gemma, phi, phi3, stablelm/);
    }
  });

  it('names the missing or malformed field', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ model_type: 'llama', ...tiny, vocab_size: undefined }, 'vocab_size'],
      [{ model_type: 'llama', ...tiny, hidden_size: 32.5 }, 'hidden_size'],
      [{ model_type: 'qwen2', ...tiny, rms_norm_eps: -1 }, 'rms_norm_eps'],
      [{ model_type: 'phi', ...tiny, hidden_act: 'quick_gelu' }, 'hidden_act'],
      [{ model_type: 'stablelm', ...tiny, use_parallel_residual: 'yes' }, 'use_parallel_residual'],
      // MistralConfig's default of 8 KV heads would not divide tiny's 4 heads: give a valid count, so the window is the only fault.
      [{ model_type: 'mistral', ...tiny, num_key_value_heads: 2, sliding_window: 0 }, 'sliding_window'],
      [{ model_type: 'llama', ...tiny, num_attention_heads: 5 }, 'num_attention_heads'],
      [{ model_type: 'phi3', ...tiny, rope_scaling: { type: 'longrope', short_factor: [1], long_factor: [1] } }, 'rope_scaling.short_factor'],
      [{ model_type: 'qwen2', ...tiny, layer_types: ['full_attention'] }, 'layer_types'],
      [{ model_type: 'llama', ...tiny, eos_token_id: [2, -1] }, 'eos_token_id[1]'],
    ];
    for (const [json, field] of cases) {
      const e = thrown(() => configFromHF(json));
      expect(e, field).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).details.field, field).toBe(field);
      expect((e as Error).message, field).toContain(`${json.model_type as string} config.json`);
    }
  });

  it('validates a hand-written config eagerly in the CausalLM constructor', () => {
    const base = configFromHF({ model_type: 'llama', ...tiny });
    const bad: [Partial<CausalLMConfig>, string][] = [
      [{ numKVHeads: 3 }, 'numKVHeads'],
      [{ headDim: 0 }, 'headDim'],
      [{ slidingWindow: -2 }, 'slidingWindow'],
      [{ layerTypes: ['full_attention'] }, 'layerTypes'],
      [{ tieWordEmbeddings: true, lmHeadBias: true }, 'lmHeadBias'],
    ];
    for (const [patch, field] of bad) {
      const before = tf.memory().numTensors;
      const e = thrown(() => new CausalLM({ ...base, ...patch }));
      expect(e, field).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).details.field, field).toBe(field);
      expect(tf.memory().numTensors).toBe(before);
    }
  });
});

describe('DecoderLayer wiring', () => {
  it('adds attention and MLP of one normalised input with a parallel residual', async () => {
    const model = new CausalLM(configFromHF({ model_type: 'stablelm', ...tiny, use_parallel_residual: true, qk_layernorm: true }));
    const layer = model.model.layers.at(0);
    const x = tf.randomNormal([2, 5, 32], 0, 1, 'float32', 3) as tf.Tensor3D;
    const got = await take(layer.forward(x));
    const want = tf.tidy(() => {
      const h = layer.inputLayernorm.forward(x) as tf.Tensor3D;
      return tf.add(tf.add(x, layer.selfAttn.forward(h)), layer.mlp.forward(h));
    });
    expect(maxAbsDiff(got, await take(want))).toBeLessThan(1e-6);
    x.dispose();
    model.dispose();
  });

  it('adds them in sequence, each after its own norm, otherwise', async () => {
    const model = new CausalLM(configFromHF({ model_type: 'llama', ...tiny }));
    const layer = model.model.layers.at(1);
    const x = tf.randomNormal([1, 4, 32], 0, 1, 'float32', 4) as tf.Tensor3D;
    const got = await take(layer.forward(x));
    const want = tf.tidy(() => {
      const mid = tf.add(x, layer.selfAttn.forward(layer.inputLayernorm.forward(x) as tf.Tensor3D));
      return tf.add(mid, layer.mlp.forward(layer.postAttentionLayernorm!.forward(mid)));
    });
    expect(maxAbsDiff(got, await take(want))).toBeLessThan(1e-6);
    x.dispose();
    model.dispose();
  });
});

describe('PerHeadLayerNorm', () => {
  it('equals one LayerNorm per head with that head\'s weight', async () => {
    const norm = new PerHeadLayerNorm(3, 8, { eps: 1e-5, bias: true });
    norm.norms.forEach((n, h) => {
      n.weight!.assign(tf.randomNormal([8], 1, 0.5, 'float32', h));
      n.bias!.assign(tf.randomNormal([8], 0, 0.5, 'float32', 10 + h));
    });
    const x = tf.randomNormal([2, 5, 3, 8], 0, 1, 'float32', 7); // [B, T, H, Dh]
    const got = await take(norm.forward(x));
    const perHead = tf.tidy(() => {
      const heads = tf.unstack(x, 2).map((xh, h) => norm.norms[h].forward(xh)); // [B, T, Dh] each
      return tf.stack(heads, 2); // [B, T, H, Dh]
    });
    expect(maxAbsDiff(got, await take(perHead))).toBeLessThan(1e-6);
    expect(norm.norms[0]).toBeInstanceOf(LayerNorm);
    x.dispose();
    norm.dispose();
  });
});
