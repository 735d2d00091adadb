/**
 * StableLM (`StableLmForCausalLM`: StableLM 2, StableLM-3B-4E1T, Zephyr-3B): LayerNorm with bias, partial rotary,
 * optional q/k/v biases, an optional parallel residual and optional per-head q/k LayerNorms.
 *
 * @module
 */
import type { CausalLMConfig } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';

/**
 * Maps a StableLM `config.json` to a {@link CausalLMConfig}, with `StableLmConfig`'s defaults (layer_norm_eps
 * 1e-5, partial_rotary_factor 0.25, no qkv bias, no qk_layernorm, sequential residual, max_position_embeddings
 * 4096, untied head, bos 0, eos 0). The head dim is `hidden_size / num_attention_heads`.
 *
 * - `use_qkv_bias`: q, k and v have biases (o never does);
 * - `use_parallel_residual`: `x + attn(ln1(x)) + mlp(ln1(x))`, with no post-attention norm;
 * - `qk_layernorm`: one weight-only LayerNorm over `head_dim` per head, for q and for k, before rotary
 *   (`self_attn.q_layernorm.norms.<h>.weight`).
 *
 * @throws `ConfigError` naming the field for a missing or malformed value.
 *
 * @example
 * ```ts
 * import { stablelmConfigFromHF } from '@slmkit/models';
 * const config = stablelmConfigFromHF({
 *   model_type: 'stablelm', vocab_size: 100352, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 24,
 *   num_attention_heads: 32, num_key_value_heads: 32, use_qkv_bias: true,
 * });
 * console.log(config.rotary.rotaryDim, config.attentionBias.q); // 16 true
 * ```
 */
export function stablelmConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  const f = new HFFields(json, 'stablelm');
  const dims = f.dimensions('derived');
  const { headDim } = dims;
  const eps = f.positive('layer_norm_eps', 1e-5);
  const qkvBias = f.flag('use_qkv_bias', false);
  const maxPositionEmbeddings = f.int('max_position_embeddings', 4096);
  return {
    family: 'stablelm',
    ...dims,
    activation: f.activation(['hidden_act'], 'silu'),
    mlp: 'gated',
    norm: { type: 'layer', eps, bias: true },
    rotary: f.rotary({
      max_position_embeddings: maxPositionEmbeddings,
      head_dim: headDim,
      partial_rotary_factor: 0.25,
    }),
    attentionBias: { q: qkvBias, k: qkvBias, v: qkvBias, o: false },
    mlpBias: false,
    qkNorm: f.flag('qk_layernorm', false) ? { norm: { type: 'layer', eps, bias: false }, scope: 'head' } : null,
    fusedQKV: false,
    fusedGateUp: false,
    parallelResidual: f.flag('use_parallel_residual', false),
    slidingWindow: null,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    lmHeadBias: false,
    scaleEmbeddings: false,
    maxPositionEmbeddings,
    ...f.specialTokens(0, 0, null),
  };
}

/**
 * The StableLM family: `model_type` `stablelm`; `self_attn.q_layernorm.norms.<h>` for its per-head norms.
 *
 * @example
 * ```ts
 * import { stablelmFamily } from '@slmkit/models';
 * console.log(stablelmFamily.names.qNorm); // "q_layernorm"
 * ```
 */
export const stablelmFamily: ModelFamily = Object.freeze({
  modelType: 'stablelm',
  hfClass: 'StableLmForCausalLM',
  names: Object.freeze({ finalNorm: 'norm', oProj: 'o_proj', qNorm: 'q_layernorm', kNorm: 'k_layernorm' }),
  configFromHF: stablelmConfigFromHF,
});
