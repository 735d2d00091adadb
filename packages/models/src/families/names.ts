/**
 * How a family names the parts of its layers in a Hugging Face `state_dict`, where it departs from Llama's names.
 *
 * @module
 */

/**
 * The Hugging Face names of the parts that differ between families. Everything else is Llama's naming
 * (`model.embed_tokens`, `model.layers.<i>.input_layernorm`, `self_attn.q_proj`, `mlp.gate_proj`, `lm_head`).
 *
 * @example
 * ```ts
 * import type { FamilyNames } from '@slmkit/models';
 * const phi: FamilyNames = { finalNorm: 'final_layernorm', oProj: 'dense', qNorm: 'q_layernorm', kNorm: 'k_layernorm' };
 * ```
 */
export interface FamilyNames {
  /** The final norm under `model.` (`norm`; Phi's `final_layernorm`). */
  finalNorm: string;
  /** The attention output projection under `self_attn.` (`o_proj`; Phi's `dense`). */
  oProj: string;
  /** The query norm under `self_attn.` (`q_norm`; Phi's and StableLM's `q_layernorm`). */
  qNorm: string;
  /** The key norm under `self_attn.` (`k_norm`; Phi's and StableLM's `k_layernorm`). */
  kNorm: string;
  /** Where a sparse MoE family names its feed-forward parts; absent for dense families. */
  moe?: MoENames;
}

/**
 * How a mixture-of-experts family names its sparse feed-forward in a Hugging Face `state_dict`.
 *
 * @example
 * ```ts
 * import type { MoENames } from '@slmkit/models';
 * const mixtral: MoENames = {
 *   block: 'block_sparse_moe', router: 'gate', experts: 'experts', expert: { gate: 'w1', up: 'w3', down: 'w2' },
 *   sharedExpert: 'shared_expert', sharedExpertGate: 'shared_expert_gate',
 * };
 * ```
 */
export interface MoENames {
  /** The sparse block under the layer (`block_sparse_moe`; Qwen2-MoE and OLMoE: `mlp`). */
  block: string;
  /** The router under the block (`gate`). */
  router: string;
  /** The expert list under the block (`experts`). */
  experts: string;
  /** Each expert's gate, up and down projections (`w1`, `w3`, `w2`; or `gate_proj`, `up_proj`, `down_proj`). */
  expert: { gate: string; up: string; down: string };
  /** The shared expert under the block (`shared_expert`). */
  sharedExpert: string;
  /** The shared expert's gate under the block (`shared_expert_gate`). */
  sharedExpertGate: string;
}

/** Llama's names, which most families share. */
export const LLAMA_NAMES: Readonly<FamilyNames> = Object.freeze({
  finalNorm: 'norm',
  oProj: 'o_proj',
  qNorm: 'q_norm',
  kNorm: 'k_norm',
});
