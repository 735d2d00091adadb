import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, HF_ACTIVATIONS, rotaryConfigFromHF } from '@slmkit/core';
import { FIXTURES_DIR } from '@slmkit/fixtures';
import type { CausalLMConfig } from '../src/config.js';
import { countParameters } from '../src/count.js';
import { PRESETS, gemma2b, phi2, smollm135m, tinyllama, type PresetName } from '../src/presets.js';

interface SpecEntry {
  hf_class: string;
  params: number;
  published: number | null;
  config: Record<string, unknown>;
}

const spec = JSON.parse(readFileSync(join(FIXTURES_DIR, '..', 'specs', 'param-counts.json'), 'utf8')) as Record<
  string,
  SpecEntry
>;

// Mamba (SSM) models are not CausalLMConfig transformers (their presets are in mamba-presets.ts).
const TRANSFORMERS = Object.keys(spec).filter((name) => !/^mamba/.test(name));

/**
 * The spec was generated from the shapes, so the fields that cannot change a parameter count carry
 * `transformers`' class defaults in places. The presets follow each model's published config.json there instead;
 * these are the published values. Only non-shape keys may appear (checked below), so the count check stays exact.
 */
const PUBLISHED: Record<string, Record<string, unknown>> = {
  'tinyllama-1.1b': { rms_norm_eps: 1e-5 },
  'smollm-135m': { rms_norm_eps: 1e-5, bos_token_id: 0, eos_token_id: 0 },
  'smollm-360m': { rms_norm_eps: 1e-5, bos_token_id: 0, eos_token_id: 0 },
  'smollm-1.7b': { rms_norm_eps: 1e-5, bos_token_id: 0, eos_token_id: 0 },
  'llama-3.2-1b': {
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    max_position_embeddings: 131072,
    bos_token_id: 128000,
    eos_token_id: 128001,
  },
  'mistral-7b': { rms_norm_eps: 1e-5, max_position_embeddings: 32768 },
  'qwen2-0.5b': { rope_theta: 1e6, max_position_embeddings: 131072, bos_token_id: 151643, eos_token_id: 151643 },
  'qwen2-1.5b': { rope_theta: 1e6, max_position_embeddings: 131072, bos_token_id: 151643, eos_token_id: 151643 },
  'phi-3-mini-4k': { sliding_window: 2047 },
  'phi-1.5': { bos_token_id: 50256, eos_token_id: 50256 },
  'phi-2': { bos_token_id: 50256, eos_token_id: 50256 },
  'mixtral-8x7b': { max_position_embeddings: 32768, router_aux_loss_coef: 0.02 },
};
const NON_SHAPE_KEYS = new Set([
  'rms_norm_eps',
  'rope_theta',
  'rope_scaling',
  'max_position_embeddings',
  'bos_token_id',
  'eos_token_id',
  'sliding_window',
  'router_aux_loss_coef',
]);

/** The fields a preset must share with a (published) HF config, mapped the way `transformers` reads them. */
function expectedFields(hf: Record<string, unknown>) {
  const heads = hf.num_attention_heads as number;
  const hidden = hf.hidden_size as number;
  const type = hf.model_type as string;
  const window =
    type === 'qwen2' ? (hf.use_sliding_window === true ? hf.sliding_window : null) : (hf.sliding_window ?? null);
  return {
    family: type,
    vocabSize: hf.vocab_size,
    hiddenSize: hidden,
    numLayers: hf.num_hidden_layers,
    numHeads: heads,
    numKVHeads: hf.num_key_value_heads ?? heads,
    headDim: hf.head_dim ?? hidden / heads,
    intermediateSize: hf.intermediate_size,
    // PretrainedConfig's default is true (Gemma's config.json does not spell it out).
    tieWordEmbeddings: hf.tie_word_embeddings ?? true,
    activation: HF_ACTIVATIONS[(hf.hidden_activation ?? hf.hidden_act) as string],
    eps: hf.rms_norm_eps ?? hf.layer_norm_eps,
    maxPositionEmbeddings: hf.max_position_embeddings,
    slidingWindow: window,
    bosTokenId: hf.bos_token_id ?? null,
    eosTokenId: hf.eos_token_id ?? null,
    padTokenId: hf.pad_token_id ?? null,
  };
}

function presetFields(p: CausalLMConfig) {
  return {
    family: p.family,
    vocabSize: p.vocabSize,
    hiddenSize: p.hiddenSize,
    numLayers: p.numLayers,
    numHeads: p.numHeads,
    numKVHeads: p.numKVHeads,
    headDim: p.headDim,
    intermediateSize: p.intermediateSize,
    tieWordEmbeddings: p.tieWordEmbeddings,
    activation: p.activation,
    eps: p.norm.eps,
    maxPositionEmbeddings: p.maxPositionEmbeddings,
    slidingWindow: p.slidingWindow,
    bosTokenId: p.bosTokenId,
    eosTokenId: p.eosTokenId,
    padTokenId: p.padTokenId,
  };
}

describe('presets', () => {
  it('has one preset for every transformer entry of param-counts.json, and no other', () => {
    expect(TRANSFORMERS.length).toBe(13);
    expect(Object.keys(PRESETS).sort()).toEqual([...TRANSFORMERS].sort());
  });

  it('overrides only fields that cannot change a parameter count', () => {
    for (const [name, fields] of Object.entries(PUBLISHED)) {
      expect(Object.keys(fields).filter((k) => !NON_SHAPE_KEYS.has(k)), name).toEqual([]);
    }
  });

  describe.each(TRANSFORMERS)('%s', (name) => {
    const entry = spec[name]!;
    const make = PRESETS[name as PresetName];
    const published = { ...entry.config, ...PUBLISHED[name] };

    it('counts exactly the parameters transformers counted', () => {
      expect(countParameters(make()).total).toBe(entry.params);
      // Mixture of experts: the parameters one token uses, as the spec lists them.
      const active = (entry as SpecEntry & { active_params_per_token?: number }).active_params_per_token ?? entry.params;
      expect(countParameters(make()).active).toBe(active);
    });

    it('agrees with the spec config on every shape field', () => {
      const shape = (f: ReturnType<typeof expectedFields>) => ({
        family: f.family,
        vocabSize: f.vocabSize,
        hiddenSize: f.hiddenSize,
        numLayers: f.numLayers,
        numHeads: f.numHeads,
        numKVHeads: f.numKVHeads,
        headDim: f.headDim,
        intermediateSize: f.intermediateSize,
        tieWordEmbeddings: f.tieWordEmbeddings,
        activation: f.activation,
      });
      expect(shape(presetFields(make()) as ReturnType<typeof expectedFields>)).toEqual(shape(expectedFields(entry.config)));
    });

    it('agrees with the published config.json on every field it maps, rotary included', () => {
      const preset = make();
      expect(presetFields(preset)).toEqual(expectedFields(published));
      expect(preset.rotary).toEqual(rotaryConfigFromHF(published));
    });

    it('is JSON round-trippable and fresh on every call', () => {
      const a = make();
      expect(JSON.parse(JSON.stringify(a))).toEqual(a);
      const b = make();
      expect(b).toEqual(a);
      expect(b).not.toBe(a);
      b.rotary.base = 1;
      b.attentionBias.q = !b.attentionBias.q;
      Object.assign(b.rotary.scaling ?? {}, { factor: 123 });
      expect(make()).toEqual(a);
    });
  });

  it('maps the family-specific layout of each family', () => {
    const g = gemma2b();
    expect(g.norm).toEqual({ type: 'rms', eps: 1e-6, unitOffset: true });
    expect(g.scaleEmbeddings).toBe(true);
    const p = phi2();
    expect(p.parallelResidual).toBe(true);
    expect(p.lmHeadBias).toBe(true);
    expect(p.mlp).toBe('plain');
    expect(p.norm).toEqual({ type: 'layer', eps: 1e-5, bias: true });
    expect(PRESETS['qwen2-1.5b']().attentionBias).toEqual({ q: true, k: true, v: true, o: false });
    expect(PRESETS['phi-3-mini-4k']()).toMatchObject({ fusedQKV: true, fusedGateUp: true });
    expect(PRESETS['mistral-7b']().slidingWindow).toBe(4096);
  });
});

describe('countParameters', () => {
  it('breaks a count into parts that add up', () => {
    for (const make of Object.values(PRESETS)) {
      const c = countParameters(make());
      const config = make();
      expect(c.perLayer).toBe(c.attentionPerLayer + c.mlpPerLayer + c.normsPerLayer);
      expect(c.layers).toBe(c.perLayer * config.numLayers);
      expect(c.total).toBe(c.embedding + c.layers + c.finalNorm + c.lmHead);
      expect(c.nonEmbedding).toBe(c.layers + c.finalNorm);
    }
  });

  it('counts the pieces of a tiny config by hand', () => {
    // D=8, H=2, KV=1, hd=4, I=16, V=10, 3 layers, untied.
    const tiny: CausalLMConfig = {
      ...tinyllama(),
      vocabSize: 10, hiddenSize: 8, numLayers: 3, numHeads: 2, numKVHeads: 1, headDim: 4, intermediateSize: 16,
      rotary: { headDim: 4, base: 10000, maxPositionEmbeddings: 32 },
    };
    const q = 8 * 8, kv = 8 * 4, o = 8 * 8;
    const attention = q + 2 * kv + o; // 192
    const mlp = 3 * 8 * 16; // 384
    const norms = 2 * 8;
    let c = countParameters(tiny);
    expect(c).toMatchObject({ embedding: 80, attentionPerLayer: attention, mlpPerLayer: mlp, normsPerLayer: norms, finalNorm: 8, lmHead: 80 });
    expect(c.total).toBe(80 + 3 * (attention + mlp + norms) + 8 + 80);

    // Tying removes the head; a head bias stays.
    c = countParameters({ ...tiny, tieWordEmbeddings: true, lmHeadBias: true });
    expect(c.lmHead).toBe(10);

    // Biases: q (8) + k (4) + v (4) + o (8); gated MLP biases gate (16) + up (16) + down (8).
    c = countParameters({ ...tiny, attentionBias: { q: true, k: true, v: true, o: true }, mlpBias: true });
    expect(c.attentionPerLayer).toBe(attention + 24);
    expect(c.mlpPerLayer).toBe(mlp + 40);

    // Plain MLP with biases: fc1 (8·16 + 16) + fc2 (16·8 + 8).
    c = countParameters({ ...tiny, mlp: 'plain', mlpBias: true });
    expect(c.mlpPerLayer).toBe(8 * 16 + 16 + 16 * 8 + 8);

    // LayerNorm with and without bias; one norm per layer with a parallel residual.
    expect(countParameters({ ...tiny, norm: { type: 'layer', eps: 1e-5 } }).normsPerLayer).toBe(32);
    expect(countParameters({ ...tiny, norm: { type: 'layer', eps: 1e-5, bias: false } }).normsPerLayer).toBe(16);
    expect(countParameters({ ...tiny, parallelResidual: true }).normsPerLayer).toBe(8);

    // q/k norms: one weight (and bias) per q feature (8) and per k feature (4), per head or over the projection.
    const head = countParameters({ ...tiny, qkNorm: { norm: { type: 'layer', eps: 1e-5, bias: true }, scope: 'head' } });
    expect(head.attentionPerLayer).toBe(attention + 2 * 12);
    const proj = countParameters({ ...tiny, qkNorm: { norm: { type: 'rms', eps: 1e-6 }, scope: 'projection' } });
    expect(proj.attentionPerLayer).toBe(attention + 12);

    // Fused projections change names, not counts.
    expect(countParameters({ ...tiny, fusedQKV: true, fusedGateUp: true }).total).toBe(countParameters(tiny).total);
  });

  it('rejects sizes that are not positive integers, naming the field', () => {
    expect(() => countParameters({ ...smollm135m(), numHeads: 0 })).toThrow(ConfigError);
    expect(() => countParameters({ ...smollm135m(), hiddenSize: 57.5 })).toThrow(/hiddenSize/);
  });
});
