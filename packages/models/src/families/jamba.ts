/**
 * The `jamba` family (AI21's Jamba, `JambaForCausalLM`): interleaved attention and Mamba layers with a mixture of
 * experts every other layer, as a {@link HybridLMConfig}.
 *
 * @module
 */
import { ConfigError } from '@slmkit/core';
import type { LayerSpec } from '@slmkit/hybrid';
import type { HybridLMConfig } from '../hybrid-lm.js';
import { HFFields } from './hf-fields.js';

/**
 * Maps a Jamba `config.json` to a {@link HybridLMConfig}, with `transformers`' `JambaConfig` defaults for absent
 * fields. Layer `i` has attention iff `i % attn_layer_period == attn_layer_offset` (Mamba otherwise, with weighted
 * RMSNorms of dt, B and C), and a mixture of `num_experts` experts iff `i % expert_layer_period ==
 * expert_layer_offset` (a dense MLP otherwise); routing is softmax top-k without renormalisation. The attention has
 * no positional encoding.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the field when one is missing or malformed.
 *
 * @example
 * ```ts
 * import { jambaConfigFromHF } from '@slmkit/models';
 * const c = jambaConfigFromHF({ model_type: 'jamba', hidden_size: 64, num_hidden_layers: 8, vocab_size: 100 });
 * console.log(c.layers.map((l) => `${l.mixer}/${l.feedForward}`).join(' '));
 * // mamba/dense mamba/moe mamba/dense mamba/moe attention/dense mamba/moe mamba/dense mamba/moe
 * ```
 */
export function jambaConfigFromHF(json: Record<string, unknown>): HybridLMConfig {
  if (json.model_type !== 'jamba') {
    throw new ConfigError(`jambaConfigFromHF: model_type must be "jamba", found ${JSON.stringify(json.model_type)}`, {
      field: 'model_type',
      expected: 'jamba',
      found: json.model_type,
    });
  }
  const f = new HFFields(json, 'jamba');
  const hiddenSize = f.int('hidden_size', 4096);
  const numLayers = f.int('num_hidden_layers', 32);
  const numHeads = f.int('num_attention_heads', 32);
  const attnPeriod = f.int('attn_layer_period', 8);
  const attnOffset = f.int('attn_layer_offset', 4);
  const expertPeriod = f.int('expert_layer_period', 2);
  const expertOffset = f.int('expert_layer_offset', 1);
  const numExperts = f.int('num_experts', 16);
  if (attnOffset >= attnPeriod) f.fail('attn_layer_offset', `less than attn_layer_period = ${attnPeriod}`, attnOffset);
  if (expertOffset >= expertPeriod) f.fail('expert_layer_offset', `less than expert_layer_period = ${expertPeriod}`, expertOffset);
  const rank = json.mamba_dt_rank;
  const timeStepRank = rank === 'auto' || rank == null ? Math.ceil(hiddenSize / 16) : f.int('mamba_dt_rank');
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') f.fail('hidden_act', '"silu" (what Jamba uses)', act);
  if (json.sliding_window != null) f.fail('sliding_window', 'null (a sliding window in Jamba is not supported)', json.sliding_window);
  const normEps = f.positive('rms_norm_eps', 1e-6);
  // With one expert, Jamba's "MoE" layers are a dense MLP (transformers builds JambaMLP then).
  const layers: LayerSpec[] = Array.from({ length: numLayers }, (_, i) => ({
    mixer: i % attnPeriod === attnOffset ? 'attention' : 'mamba',
    feedForward: numExperts > 1 && i % expertPeriod === expertOffset ? 'moe' : 'dense',
  }));
  const intermediateSize = f.int('intermediate_size', 14336);
  return {
    family: 'jamba',
    vocabSize: f.int('vocab_size', 65536),
    hiddenSize,
    normEps,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    attention: { numHeads, numKVHeads: f.kvHeads(numHeads, 8), headDim: f.headDim(hiddenSize, numHeads, false), rotary: null },
    mamba: {
      intermediateSize: f.int('mamba_expand', 2) * hiddenSize,
      stateSize: f.int('mamba_d_state', 16),
      convKernel: f.int('mamba_d_conv', 4),
      timeStepRank,
      dtBCNorm: { eps: normEps, weight: true },
      convBias: f.flag('mamba_conv_bias', true),
      projBias: f.flag('mamba_proj_bias', false),
    },
    mlp: { intermediateSize, activation: 'silu' },
    moe: numExperts > 1 ? { numExperts, topK: f.int('num_experts_per_tok', 2), normalize: false } : undefined,
    layers,
    bosTokenId: f.tokenId('bos_token_id', 1),
    eosTokenId: f.tokenIds('eos_token_id', 2),
    padTokenId: f.tokenId('pad_token_id', 0),
  };
}
