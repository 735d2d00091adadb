/**
 * Mistral (`MistralForCausalLM`): Llama's layer with a sliding-window attention on every layer.
 *
 * @module
 */
import type { CausalLMConfig } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';
import { LLAMA_NAMES } from './names.js';

/**
 * Maps a Mistral `config.json` to a {@link CausalLMConfig}, with `MistralConfig`'s defaults (8 KV heads,
 * rms_norm_eps 1e-6, sliding_window 4096, max_position_embeddings 131072, untied head). A `sliding_window` of
 * null means full attention. Key j is visible to query i iff `0 <= i - j < sliding_window`.
 *
 * @throws `ConfigError` naming the field for a missing or malformed value.
 *
 * @example
 * ```ts
 * import { mistralConfigFromHF } from '@slmkit/models';
 * const config = mistralConfigFromHF({
 *   model_type: 'mistral', vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
 *   num_attention_heads: 32, num_key_value_heads: 8, sliding_window: 4096,
 * });
 * console.log(config.slidingWindow); // 4096
 * ```
 */
export function mistralConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  const f = new HFFields(json, 'mistral');
  const dims = f.dimensions('explicit', 8);
  const { headDim } = dims;
  const maxPositionEmbeddings = f.int('max_position_embeddings', 4096 * 32);
  // An explicit null disables the window; an absent field takes MistralConfig's default of 4096.
  const slidingWindow = json.sliding_window === null ? null : f.int('sliding_window', 4096);
  return {
    family: 'mistral',
    ...dims,
    activation: f.activation(['hidden_act'], 'silu'),
    mlp: 'gated',
    norm: { type: 'rms', eps: f.positive('rms_norm_eps', 1e-6) },
    rotary: f.rotary({ max_position_embeddings: maxPositionEmbeddings, head_dim: headDim }),
    attentionBias: { q: false, k: false, v: false, o: false },
    mlpBias: false,
    qkNorm: null,
    fusedQKV: false,
    fusedGateUp: false,
    parallelResidual: false,
    slidingWindow,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    lmHeadBias: false,
    scaleEmbeddings: false,
    maxPositionEmbeddings,
    ...f.specialTokens(1, 2, null),
  };
}

/**
 * The Mistral family: `model_type` `mistral`, Llama's parameter names.
 *
 * @example
 * ```ts
 * import { mistralFamily } from '@slmkit/models';
 * console.log(mistralFamily.hfClass); // "MistralForCausalLM"
 * ```
 */
export const mistralFamily: ModelFamily = Object.freeze({
  modelType: 'mistral',
  hfClass: 'MistralForCausalLM',
  names: LLAMA_NAMES,
  configFromHF: mistralConfigFromHF,
});
