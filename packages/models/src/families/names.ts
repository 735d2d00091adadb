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
}

/** Llama's names, which most families share. */
export const LLAMA_NAMES: Readonly<FamilyNames> = Object.freeze({
  finalNorm: 'norm',
  oProj: 'o_proj',
  qNorm: 'q_norm',
  kNorm: 'k_norm',
});
