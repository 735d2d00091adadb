/**
 * Phi-1, Phi-1.5 and Phi-2 (`PhiForCausalLM`): one LayerNorm per layer feeding attention and the MLP in parallel
 * (`x + attn(ln(x)) + mlp(ln(x))`), partial rotary, a plain `fc1`/`fc2` GELU MLP, biases everywhere including the
 * LM head, and the parameter names `self_attn.dense` and `model.final_layernorm`.
 *
 * @module
 */
import type { CausalLMConfig } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';

/**
 * Maps a Phi `config.json` to a {@link CausalLMConfig}, with `PhiConfig`'s defaults (gelu_new, layer_norm_eps
 * 1e-5, partial_rotary_factor 0.5, max_position_embeddings 2048, untied head, bos 1, eos 2). The head dim is
 * `hidden_size / num_attention_heads`; `qk_layernorm` adds one LayerNorm over `head_dim` (with bias) shared by
 * every head, for q and for k.
 *
 * @throws `ConfigError` naming the field for a missing or malformed value.
 *
 * @example
 * ```ts
 * import { phiConfigFromHF } from '@slmkit/models';
 * const config = phiConfigFromHF({
 *   model_type: 'phi', vocab_size: 51200, hidden_size: 2560, intermediate_size: 10240, num_hidden_layers: 32,
 *   num_attention_heads: 32, partial_rotary_factor: 0.4,
 * });
 * console.log(config.rotary.rotaryDim, config.parallelResidual); // 32 true
 * ```
 */
export function phiConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  const f = new HFFields(json, 'phi');
  const dims = f.dimensions('derived');
  const { headDim } = dims;
  const eps = f.positive('layer_norm_eps', 1e-5);
  const maxPositionEmbeddings = f.int('max_position_embeddings', 2048);
  return {
    family: 'phi',
    ...dims,
    activation: f.activation(['hidden_act'], 'gelu_new'),
    mlp: 'plain',
    norm: { type: 'layer', eps, bias: true },
    rotary: f.rotary({
      max_position_embeddings: maxPositionEmbeddings,
      head_dim: headDim,
      partial_rotary_factor: 0.5,
    }),
    attentionBias: { q: true, k: true, v: true, o: true },
    mlpBias: true,
    qkNorm: f.flag('qk_layernorm', false)
      ? { norm: { type: 'layer', eps, bias: true }, scope: 'head', sharedAcrossHeads: true }
      : null,
    fusedQKV: false,
    fusedGateUp: false,
    parallelResidual: true,
    slidingWindow: null,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    lmHeadBias: true,
    scaleEmbeddings: false,
    maxPositionEmbeddings,
    ...f.specialTokens(1, 2, null),
  };
}

/**
 * The Phi family (Phi-1, 1.5, 2): `model_type` `phi`; `self_attn.dense`, `self_attn.q_layernorm`,
 * `model.final_layernorm`.
 *
 * @example
 * ```ts
 * import { phiFamily } from '@slmkit/models';
 * console.log(phiFamily.names.oProj); // "dense"
 * ```
 */
export const phiFamily: ModelFamily = Object.freeze({
  modelType: 'phi',
  hfClass: 'PhiForCausalLM',
  names: Object.freeze({ finalNorm: 'final_layernorm', oProj: 'dense', qNorm: 'q_layernorm', kNorm: 'k_layernorm' }),
  configFromHF: phiConfigFromHF,
});
