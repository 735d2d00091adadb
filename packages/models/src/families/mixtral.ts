/**
 * Mixtral (`MixtralForCausalLM`): Mistral's attention with a sparse mixture of SwiGLU experts in every layer
 * (`block_sparse_moe`: router `gate`, experts `w1` / `w3` / `w2`), softmax top-k routing with renormalisation.
 *
 * @module
 */
import type { CausalLMConfig } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';
import { routingFromHF } from './moe-fields.js';
import { LLAMA_NAMES, type FamilyNames } from './names.js';

/**
 * Maps a Mixtral `config.json` to a {@link CausalLMConfig}, with `MixtralConfig`'s defaults (8 KV heads,
 * rms_norm_eps 1e-5, rope_theta 1e6, no sliding window, 8 local experts, 2 per token, router_aux_loss_coef 0.001,
 * untied head, bos 1, eos 2). Every layer is sparse; each expert has width `intermediate_size`, and the k routing
 * weights are always renormalised.
 *
 * `router_jitter_noise` is kept as the router's training jitter; slmkit applies it to the router's input only,
 * where `transformers` also scales the experts' input by the same draw.
 *
 * @throws `ConfigError` naming the field for a missing or malformed value.
 *
 * @example
 * ```ts
 * import { mixtralConfigFromHF } from '@slmkit/models';
 * const config = mixtralConfigFromHF({
 *   model_type: 'mixtral', vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
 *   num_attention_heads: 32, num_key_value_heads: 8, num_local_experts: 8, num_experts_per_tok: 2,
 * });
 * console.log(config.moe?.numExperts, config.moe?.topK, config.slidingWindow); // 8 2 null
 * ```
 */
export function mixtralConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  const f = new HFFields(json, 'mixtral');
  const dims = f.dimensions('explicit', 8);
  const { headDim } = dims;
  const maxPositionEmbeddings = f.int('max_position_embeddings', 4096 * 32);
  return {
    family: 'mixtral',
    ...dims,
    activation: f.activation(['hidden_act'], 'silu'),
    mlp: 'gated',
    norm: { type: 'rms', eps: f.positive('rms_norm_eps', 1e-5) },
    rotary: f.rotary({ max_position_embeddings: maxPositionEmbeddings, head_dim: headDim, rope_theta: 1e6 }),
    attentionBias: { q: false, k: false, v: false, o: false },
    mlpBias: false,
    qkNorm: null,
    fusedQKV: false,
    fusedGateUp: false,
    parallelResidual: false,
    // MixtralConfig's default is None (full attention); Mistral's is 4096.
    slidingWindow: f.has('sliding_window') ? f.int('sliding_window') : null,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    lmHeadBias: false,
    scaleEmbeddings: false,
    maxPositionEmbeddings,
    ...f.specialTokens(1, 2, null),
    moe: {
      ...routingFromHF(f, { numExpertsField: 'num_local_experts', numExperts: 8, topK: 2, normalizeTopK: { fixed: true }, routerAuxLossCoef: 0.001 }),
      expertIntermediateSize: dims.intermediateSize,
      sharedExpertIntermediateSize: null,
    },
  };
}

const MIXTRAL_NAMES: Readonly<FamilyNames> = Object.freeze({
  ...LLAMA_NAMES,
  moe: {
    block: 'block_sparse_moe',
    router: 'gate',
    experts: 'experts',
    expert: { gate: 'w1', up: 'w3', down: 'w2' },
    sharedExpert: 'shared_expert',
    sharedExpertGate: 'shared_expert_gate',
  },
});

/**
 * The Mixtral family: `model_type` `mixtral`, Llama's attention names, `block_sparse_moe.gate` and
 * `block_sparse_moe.experts.N.w1/w2/w3`.
 *
 * @example
 * ```ts
 * import { mixtralFamily } from '@slmkit/models';
 * console.log(mixtralFamily.hfClass, mixtralFamily.names.moe?.block); // "MixtralForCausalLM" "block_sparse_moe"
 * ```
 */
export const mixtralFamily: ModelFamily = Object.freeze({
  modelType: 'mixtral',
  hfClass: 'MixtralForCausalLM',
  names: MIXTRAL_NAMES,
  configFromHF: mixtralConfigFromHF,
});
