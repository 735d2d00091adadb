/**
 * Reading the mixture-of-experts fields the MoE families share (`num_experts_per_tok`, `router_aux_loss_coef`,
 * `router_jitter_noise`, `norm_topk_prob`) with their config class's defaults.
 *
 * @module
 */
import type { MoEConfig } from '../config.js';
import type { HFFields } from './hf-fields.js';

/** Defaults of one MoE config class, and what it calls its expert count. */
export interface MoEDefaults {
  /** `num_local_experts` (Mixtral) or `num_experts` (Qwen2-MoE, OLMoE). */
  numExpertsField: string;
  numExperts: number;
  topK: number;
  /** A fixed renormalisation (Mixtral always renormalises), or the default of `norm_topk_prob`. */
  normalizeTopK: { fixed: boolean } | { default: boolean };
  routerAuxLossCoef: number;
}

/** A number `>= 0` (or `[0, 1)` with `below1`), the class default when absent. */
function nonNegative(f: HFFields, field: string, fallback: number, below1 = false): number {
  const v = f.json[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (below1 && v >= 1)) {
    return f.fail(field, below1 ? 'a number in [0, 1)' : 'a finite number >= 0', f.json[field]);
  }
  return v;
}

/** The routing part of a {@link MoEConfig}; the caller adds the widths and the sparse layers. */
export function routingFromHF(f: HFFields, d: MoEDefaults): Pick<MoEConfig, 'numExperts' | 'topK' | 'normalizeTopK' | 'routerAuxLossCoef' | 'routerJitterNoise'> {
  const numExperts = f.int(d.numExpertsField, d.numExperts);
  const topK = f.int('num_experts_per_tok', d.topK);
  if (topK > numExperts) f.fail('num_experts_per_tok', `at most ${d.numExpertsField} (${numExperts})`, topK);
  return {
    numExperts,
    topK,
    normalizeTopK: 'fixed' in d.normalizeTopK ? d.normalizeTopK.fixed : f.flag('norm_topk_prob', d.normalizeTopK.default),
    routerAuxLossCoef: nonNegative(f, 'router_aux_loss_coef', d.routerAuxLossCoef),
    routerJitterNoise: nonNegative(f, 'router_jitter_noise', 0, true),
  };
}
