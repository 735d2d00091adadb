/**
 * Qwen2-MoE (`Qwen2MoeForCausalLM`, Qwen1.5-MoE): Qwen2's attention (q/k/v biases) with a sparse mixture of
 * SwiGLU experts plus a gated shared expert on the sparse layers, and dense SwiGLU MLPs on the others.
 *
 * @module
 */
import type { CausalLMConfig } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';
import { routingFromHF } from './moe-fields.js';
import { LLAMA_NAMES, type FamilyNames } from './names.js';
import { qwen2Config } from './qwen2.js';

/**
 * Maps a Qwen2-MoE `config.json` to a {@link CausalLMConfig}, with `Qwen2MoeConfig`'s defaults (rms_norm_eps 1e-6,
 * rope_theta 10000, 60 experts, 4 per token, `norm_topk_prob` false, moe_intermediate_size 1408,
 * shared_expert_intermediate_size 5632, decoder_sparse_step 1, no `mlp_only_layers`, untied head). Layer `i` is
 * sparse iff `i ∉ mlp_only_layers` and `(i + 1) % decoder_sparse_step == 0`; the other layers keep a dense MLP of
 * `intermediate_size`. The head dim is `hidden_size / num_attention_heads`; the sliding window follows Qwen2.
 *
 * @throws `ConfigError` naming the field for a missing or malformed value.
 *
 * @example
 * ```ts
 * import { qwen2MoeConfigFromHF } from '@slmkit/models';
 * const config = qwen2MoeConfigFromHF({
 *   model_type: 'qwen2_moe', vocab_size: 151936, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 24,
 *   num_attention_heads: 16, num_key_value_heads: 16, num_experts: 60, num_experts_per_tok: 4,
 *   moe_intermediate_size: 1408, shared_expert_intermediate_size: 5632,
 * });
 * console.log(config.moe?.sharedExpertIntermediateSize, config.moe?.normalizeTopK); // 5632 false
 * ```
 */
export function qwen2MoeConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  const f = new HFFields(json, 'qwen2_moe');
  const config = qwen2Config(f, 'qwen2_moe', 'derived');
  const { numLayers } = config;
  const step = f.int('decoder_sparse_step', 1);
  const mlpOnly = json.mlp_only_layers ?? [];
  if (!Array.isArray(mlpOnly) || mlpOnly.some((l) => !Number.isInteger(l) || l < 0)) {
    f.fail('mlp_only_layers', 'a list of layer indices', mlpOnly);
  }
  const routing = routingFromHF(f, { numExpertsField: 'num_experts', numExperts: 60, topK: 4, normalizeTopK: { default: false }, routerAuxLossCoef: 0.001 });
  const sparseLayers = Array.from({ length: numLayers }, (_, i) => i).filter((i) => !(mlpOnly as number[]).includes(i) && (i + 1) % step === 0);

  config.moe = {
    ...routing,
    expertIntermediateSize: f.int('moe_intermediate_size', 1408),
    sharedExpertIntermediateSize: f.int('shared_expert_intermediate_size', 5632),
    ...(sparseLayers.length === numLayers ? {} : { sparseLayers }),
  };
  return config;
}

/** Qwen2-MoE's and OLMoE's names: the sparse block is `mlp`, its experts use `gate_proj` / `up_proj` / `down_proj`. */
export const MLP_MOE_NAMES: Readonly<FamilyNames> = Object.freeze({
  ...LLAMA_NAMES,
  moe: {
    block: 'mlp',
    router: 'gate',
    experts: 'experts',
    expert: { gate: 'gate_proj', up: 'up_proj', down: 'down_proj' },
    sharedExpert: 'shared_expert',
    sharedExpertGate: 'shared_expert_gate',
  },
});

/**
 * The Qwen2-MoE family: `model_type` `qwen2_moe`, Llama's attention names, `mlp.gate`, `mlp.experts.N.*`,
 * `mlp.shared_expert.*` and `mlp.shared_expert_gate`.
 *
 * @example
 * ```ts
 * import { qwen2MoeFamily } from '@slmkit/models';
 * console.log(qwen2MoeFamily.hfClass); // "Qwen2MoeForCausalLM"
 * ```
 */
export const qwen2MoeFamily: ModelFamily = Object.freeze({
  modelType: 'qwen2_moe',
  hfClass: 'Qwen2MoeForCausalLM',
  names: MLP_MOE_NAMES,
  configFromHF: qwen2MoeConfigFromHF,
});
