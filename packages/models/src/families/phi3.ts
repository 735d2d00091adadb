/**
 * Phi-3 and Phi-3.5 (`Phi3ForCausalLM`): Llama's layer with q, k and v fused into one `qkv_proj` and gate and up
 * fused into one `gate_up_proj`, and rotary scaling including LongRoPE.
 *
 * @module
 */
import type { CausalLMConfig } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';
import { LLAMA_NAMES } from './names.js';

/**
 * Maps a Phi-3 `config.json` to a {@link CausalLMConfig}, with `Phi3Config`'s defaults (rms_norm_eps 1e-5,
 * max_position_embeddings 4096, no sliding window, untied head, bos 1, eos 32000, pad 32000). The head dim is
 * `hidden_size / num_attention_heads`. `rope_scaling` of type `longrope` (or the legacy `su` / `yarn` with short and
 * long factors) becomes LongRoPE, with the top-level `original_max_position_embeddings`.
 *
 * @throws `ConfigError` naming the field for a missing or malformed value.
 *
 * @example
 * ```ts
 * import { phi3ConfigFromHF } from '@slmkit/models';
 * const config = phi3ConfigFromHF({
 *   model_type: 'phi3', vocab_size: 32064, hidden_size: 3072, intermediate_size: 8192, num_hidden_layers: 32,
 *   num_attention_heads: 32, max_position_embeddings: 4096, sliding_window: 2047,
 * });
 * console.log(config.fusedQKV, config.fusedGateUp, config.slidingWindow); // true true 2047
 * ```
 */
export function phi3ConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  const f = new HFFields(json, 'phi3');
  const dims = f.dimensions('derived');
  const { headDim } = dims;
  const maxPositionEmbeddings = f.int('max_position_embeddings', 4096);
  return {
    family: 'phi3',
    ...dims,
    activation: f.activation(['hidden_act'], 'silu'),
    mlp: 'gated',
    norm: { type: 'rms', eps: f.positive('rms_norm_eps', 1e-5) },
    rotary: f.rotary({ max_position_embeddings: maxPositionEmbeddings, head_dim: headDim }),
    attentionBias: { q: false, k: false, v: false, o: false },
    mlpBias: false,
    qkNorm: null,
    fusedQKV: true,
    fusedGateUp: true,
    parallelResidual: false,
    slidingWindow: f.has('sliding_window') ? f.int('sliding_window') : null,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    lmHeadBias: false,
    scaleEmbeddings: false,
    maxPositionEmbeddings,
    ...f.specialTokens(1, 32000, 32000),
  };
}

/**
 * The Phi-3 family: `model_type` `phi3`; `self_attn.qkv_proj` and `mlp.gate_up_proj` hold the fused projections.
 *
 * @example
 * ```ts
 * import { phi3Family } from '@slmkit/models';
 * console.log(phi3Family.hfClass); // "Phi3ForCausalLM"
 * ```
 */
export const phi3Family: ModelFamily = Object.freeze({
  modelType: 'phi3',
  hfClass: 'Phi3ForCausalLM',
  names: LLAMA_NAMES,
  configFromHF: phi3ConfigFromHF,
});
