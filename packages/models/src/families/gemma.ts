/**
 * Gemma (`GemmaForCausalLM`, Gemma 1): embeddings scaled by `sqrt(hidden_size)`, RMSNorm as `x * (1 + w)`, GeGLU
 * with the tanh GELU, a head dim that need not be `hidden_size / heads`, tied embeddings.
 *
 * @module
 */
import type { CausalLMConfig } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';
import { LLAMA_NAMES } from './names.js';

/**
 * Maps a Gemma `config.json` to a {@link CausalLMConfig}, with `GemmaConfig`'s defaults (head_dim 256,
 * rms_norm_eps 1e-6, max_position_embeddings 8192, tied head, bos 2, eos 1, pad 0).
 *
 * The activation is `hidden_activation`, else the tanh GELU: the first Gemma configs say `hidden_act: "gelu"`,
 * but the models were trained with the approximation, and `transformers` uses it unless `hidden_activation` says
 * otherwise.
 *
 * @throws `ConfigError` naming the field for a missing or malformed value.
 *
 * @example
 * ```ts
 * import { gemmaConfigFromHF } from '@slmkit/models';
 * const config = gemmaConfigFromHF({
 *   model_type: 'gemma', vocab_size: 256000, hidden_size: 2048, intermediate_size: 16384, num_hidden_layers: 18,
 *   num_attention_heads: 8, num_key_value_heads: 1, head_dim: 256, hidden_act: 'gelu',
 * });
 * console.log(config.activation, config.norm); // "gelu_tanh" { type: 'rms', eps: 1e-6, unitOffset: true }
 * ```
 */
export function gemmaConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  const f = new HFFields(json, 'gemma');
  const dims = f.dimensions({ default: 256 });
  const { headDim } = dims;
  const attentionBias = f.flag('attention_bias', false);
  const maxPositionEmbeddings = f.int('max_position_embeddings', 8192);
  return {
    family: 'gemma',
    ...dims,
    activation: f.activation(['hidden_activation'], 'gelu_pytorch_tanh'),
    mlp: 'gated',
    norm: { type: 'rms', eps: f.positive('rms_norm_eps', 1e-6), unitOffset: true },
    rotary: f.rotary({ max_position_embeddings: maxPositionEmbeddings, head_dim: headDim }),
    attentionBias: { q: attentionBias, k: attentionBias, v: attentionBias, o: attentionBias },
    mlpBias: false,
    qkNorm: null,
    fusedQKV: false,
    fusedGateUp: false,
    parallelResidual: false,
    slidingWindow: null,
    tieWordEmbeddings: f.flag('tie_word_embeddings', true),
    lmHeadBias: false,
    scaleEmbeddings: true,
    maxPositionEmbeddings,
    ...f.specialTokens(2, 1, 0),
  };
}

/**
 * The Gemma family: `model_type` `gemma`, Llama's parameter names.
 *
 * @example
 * ```ts
 * import { gemmaFamily } from '@slmkit/models';
 * console.log(gemmaFamily.hfClass); // "GemmaForCausalLM"
 * ```
 */
export const gemmaFamily: ModelFamily = Object.freeze({
  modelType: 'gemma',
  hfClass: 'GemmaForCausalLM',
  names: LLAMA_NAMES,
  configFromHF: gemmaConfigFromHF,
});
