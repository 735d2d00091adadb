/**
 * OLMoE (`OlmoeForCausalLM`): a Llama layer with RMSNorms over the whole q and k projections and a sparse mixture
 * of SwiGLU experts in every layer (softmax top-k, renormalised only with `norm_topk_prob`).
 *
 * @module
 */
import type { CausalLMConfig } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';
import { routingFromHF } from './moe-fields.js';
import { MLP_MOE_NAMES } from './qwen2-moe.js';

/**
 * Maps an OLMoE `config.json` to a {@link CausalLMConfig}, with `OlmoeConfig`'s defaults (rms_norm_eps 1e-5,
 * rope_theta 10000, 64 experts, 8 per token, `norm_topk_prob` false, router_aux_loss_coef 0.01, untied head,
 * eos 50279, pad 1). `q_norm` and `k_norm` are RMSNorms over the whole projection outputs (`numHeads · headDim`
 * and `numKVHeads · headDim`), applied before the heads are split and before rotary. Each expert has width
 * `intermediate_size`. `attention_bias` puts a bias on q, k, v and o.
 *
 * @throws `ConfigError` naming the field for a missing or malformed value, and for a `clip_qkv` other than null
 *   (clamping q, k and v is not implemented; no released OLMoE uses it).
 *
 * @example
 * ```ts
 * import { olmoeConfigFromHF } from '@slmkit/models';
 * const config = olmoeConfigFromHF({
 *   model_type: 'olmoe', vocab_size: 50304, hidden_size: 2048, intermediate_size: 1024, num_hidden_layers: 16,
 *   num_attention_heads: 16, num_experts: 64, num_experts_per_tok: 8,
 * });
 * console.log(config.qkNorm?.scope, config.moe?.topK); // "projection" 8
 * ```
 */
export function olmoeConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  const f = new HFFields(json, 'olmoe');
  const dims = f.dimensions('derived');
  const { headDim } = dims;
  if (f.has('clip_qkv')) f.fail('clip_qkv', 'null (clamping q, k and v is not supported)', json.clip_qkv);
  const maxPositionEmbeddings = f.int('max_position_embeddings', 4096);
  const eps = f.positive('rms_norm_eps', 1e-5);
  const bias = f.flag('attention_bias', false);
  return {
    family: 'olmoe',
    ...dims,
    activation: f.activation(['hidden_act'], 'silu'),
    mlp: 'gated',
    norm: { type: 'rms', eps },
    rotary: f.rotary({ max_position_embeddings: maxPositionEmbeddings, head_dim: headDim }),
    attentionBias: { q: bias, k: bias, v: bias, o: bias },
    mlpBias: false,
    qkNorm: { norm: { type: 'rms', eps }, scope: 'projection' },
    fusedQKV: false,
    fusedGateUp: false,
    parallelResidual: false,
    slidingWindow: null,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    lmHeadBias: false,
    scaleEmbeddings: false,
    maxPositionEmbeddings,
    ...f.specialTokens(null, 50279, 1),
    moe: {
      ...routingFromHF(f, { numExpertsField: 'num_experts', numExperts: 64, topK: 8, normalizeTopK: { default: false }, routerAuxLossCoef: 0.01 }),
      expertIntermediateSize: dims.intermediateSize,
      sharedExpertIntermediateSize: null,
    },
  };
}

/**
 * The OLMoE family: `model_type` `olmoe`, Llama's attention names with `q_norm` / `k_norm`, `mlp.gate` and
 * `mlp.experts.N.gate_proj/up_proj/down_proj`.
 *
 * @example
 * ```ts
 * import { olmoeFamily } from '@slmkit/models';
 * console.log(olmoeFamily.hfClass); // "OlmoeForCausalLM"
 * ```
 */
export const olmoeFamily: ModelFamily = Object.freeze({
  modelType: 'olmoe',
  hfClass: 'OlmoeForCausalLM',
  names: MLP_MOE_NAMES,
  configFromHF: olmoeConfigFromHF,
});
