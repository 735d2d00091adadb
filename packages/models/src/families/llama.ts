/**
 * Llama (`LlamaForCausalLM`), and the checkpoints that reuse its architecture: TinyLlama, SmolLM, Llama 2 and 3.
 * RMSNorm, RoPE (with any scaling), GQA, SwiGLU, optional attention and MLP biases.
 *
 * @module
 */
import type { CausalLMConfig } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';
import { LLAMA_NAMES } from './names.js';

/**
 * Maps a Llama `config.json` to a {@link CausalLMConfig}, with `LlamaConfig`'s defaults (rms_norm_eps 1e-6,
 * untied head, no biases, bos 1, eos 2).
 *
 * @throws `ConfigError` naming the field for a missing or malformed value.
 *
 * @example
 * ```ts
 * import { llamaConfigFromHF } from '@slmkit/models';
 * const config = llamaConfigFromHF({
 *   model_type: 'llama', vocab_size: 49152, hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30,
 *   num_attention_heads: 9, num_key_value_heads: 3, tie_word_embeddings: true, max_position_embeddings: 2048,
 * });
 * console.log(config.headDim, config.numKVHeads); // 64 3
 * ```
 */
export function llamaConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  const f = new HFFields(json, 'llama');
  const dims = f.dimensions('explicit');
  const { headDim } = dims;
  const attentionBias = f.flag('attention_bias', false);
  const maxPositionEmbeddings = f.int('max_position_embeddings', 2048);
  return {
    family: 'llama',
    ...dims,
    activation: f.activation(['hidden_act'], 'silu'),
    mlp: 'gated',
    norm: { type: 'rms', eps: f.positive('rms_norm_eps', 1e-6) },
    rotary: f.rotary({ max_position_embeddings: maxPositionEmbeddings, head_dim: headDim }),
    attentionBias: { q: attentionBias, k: attentionBias, v: attentionBias, o: attentionBias },
    mlpBias: f.flag('mlp_bias', false),
    qkNorm: null,
    fusedQKV: false,
    fusedGateUp: false,
    parallelResidual: false,
    slidingWindow: null,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    lmHeadBias: false,
    scaleEmbeddings: false,
    maxPositionEmbeddings,
    ...f.specialTokens(1, 2, null),
  };
}

/**
 * The Llama family: `model_type` `llama`, Llama's parameter names.
 *
 * @example
 * ```ts
 * import { llamaFamily } from '@slmkit/models';
 * console.log(llamaFamily.hfClass); // "LlamaForCausalLM"
 * ```
 */
export const llamaFamily: ModelFamily = Object.freeze({
  modelType: 'llama',
  hfClass: 'LlamaForCausalLM',
  names: LLAMA_NAMES,
  configFromHF: llamaConfigFromHF,
});
