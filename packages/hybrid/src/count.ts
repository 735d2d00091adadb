/**
 * `countHybridParameters`: the parameter count of a {@link HybridSpec}, from the spec alone (no weights allocated).
 *
 * @module
 */
import { validateHybridSpec, type HybridSpec, type LayerSpec } from './spec.js';

/**
 * What {@link countHybridParameters} returns: the total and its parts, each a number of scalar parameters.
 *
 * @example
 * ```ts
 * import type { HybridParameterCount } from '@slmkit/hybrid';
 * function share(c: HybridParameterCount): number {
 *   return c.mixers / c.total;
 * }
 * ```
 */
export interface HybridParameterCount {
  /** Every parameter, as `parameterCount().total` of the built model reports it (a tied head counted once). */
  total: number;
  /** `embed_tokens`. */
  embeddings: number;
  /** `lm_head` (0 when tied to the embeddings). */
  lmHead: number;
  /** Hymba's `memory_tokens` (0 without meta tokens). */
  metaTokens: number;
  /** The mixers of every layer (attention, Mamba, Hymba blocks). */
  mixers: number;
  /** The feed-forwards of every layer (dense MLPs, experts and routers). */
  feedForwards: number;
  /** Every RMSNorm outside the mixers: each layer's input and feed-forward norms, and the final norm. */
  norms: number;
  /** The parameters one token runs through in a forward pass: the total less the experts its router skips. */
  activePerToken: number;
}

/** The parameters of one layer's mixer. */
function mixerParameters(spec: HybridSpec, layer: LayerSpec): number {
  const D = spec.hiddenSize;
  if (layer.mixer === 'attention' || layer.mixer === 'sliding-attention') {
    const a = spec.attention!;
    const Dv = a.valueHeadDim ?? a.headDim;
    const b = a.bias === true ? 1 : 0;
    const q = (D + b) * a.numHeads * a.headDim;
    const kv = layer.kvFrom == null ? (D + b) * a.numKVHeads * (a.headDim + Dv) : 0;
    const o = a.numHeads * Dv * D + b * D;
    return q + kv + o;
  }
  const m = spec.mamba!;
  const I = m.intermediateSize;
  const R = m.timeStepRank;
  const N = m.stateSize;
  const b = m.projBias === true ? 1 : 0;
  // Shared by Mamba and Hymba (and split over heads, the same total, for multi-head Mamba):
  // conv1d (weight + bias), x_proj, dt_proj (weight + bias), A_log, D, dt/B/C norm weights, out_proj.
  const ssm =
    I * m.convKernel +
    (m.convBias === false ? 0 : I) +
    I * (R + 2 * N) +
    R * I +
    I +
    I * N +
    I +
    (m.dtBCNorm?.weight === true ? R + 2 * N : 0) +
    I * D +
    b * D;
  if (layer.mixer === 'mamba') return ssm + (D + b) * 2 * I;
  // hymba: in_proj d → [q | k | v | u | z], and the two pre-average norms.
  const a = spec.attention!;
  const Dv = a.valueHeadDim ?? a.headDim;
  const width = a.numHeads * a.headDim + (layer.kvFrom == null ? a.numKVHeads * (a.headDim + Dv) : 0) + 2 * I;
  return ssm + (D + b) * width + 2 * I;
}

/** The parameters of one layer's feed-forward (without its norm), total and active per token. */
function feedForwardParameters(spec: HybridSpec, layer: LayerSpec): { total: number; active: number } {
  const D = spec.hiddenSize;
  if (layer.feedForward === 'none') return { total: 0, active: 0 };
  if (layer.feedForward === 'dense') {
    const n = 3 * D * spec.mlp!.intermediateSize;
    return { total: n, active: n };
  }
  const e = spec.moe!;
  const expert = 3 * D * (e.intermediateSize ?? spec.mlp!.intermediateSize);
  const router = D * e.numExperts;
  return { total: router + e.numExperts * expert, active: router + e.topK * expert };
}

/**
 * Counts the parameters a {@link HybridSpec} builds (what `HybridLM`'s `parameterCount().total` reports) from the
 * spec alone (or from a language model's config, a spec plus its `family`), without allocating a weight: for presets of billions of parameters (Hymba-1.5B, Jamba) and for
 * planning a custom stack. Every layer's input norm, mixer, feed-forward norm and feed-forward, the embeddings, the
 * LM head unless tied, the final norm and the meta tokens.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for an invalid spec (see `validateHybridSpec`).
 *
 * @example
 * ```ts
 * import { countHybridParameters, type HybridSpec } from '@slmkit/hybrid';
 * const spec: HybridSpec = {
 *   vocabSize: 100, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
 *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2 },
 *   mlp: { intermediateSize: 32 },
 *   layers: [{ mixer: 'mamba', feedForward: 'dense' }],
 * };
 * console.log(countHybridParameters(spec).total); // 5456
 * ```
 */
export function countHybridParameters(spec: HybridSpec): HybridParameterCount {
  // A language model's config (`HybridLMConfig`) is a spec plus its `family`: count it as its spec.
  const { family: _family, ...plain } = spec as HybridSpec & { family?: unknown };
  validateHybridSpec(plain);
  const D = spec.hiddenSize;
  const embeddings = spec.vocabSize * D;
  const lmHead = spec.tieWordEmbeddings ? 0 : spec.vocabSize * D;
  const metaTokens = (spec.metaTokens ?? 0) * D;
  let mixers = 0;
  let feedForwards = 0;
  let skipped = 0;
  let norms = D; // final_layernorm
  for (const layer of spec.layers) {
    mixers += mixerParameters(spec, layer);
    const ff = feedForwardParameters(spec, layer);
    feedForwards += ff.total;
    skipped += ff.total - ff.active;
    norms += D + (layer.feedForward === 'none' ? 0 : D);
  }
  // Zamba's shared blocks, once each however many layers apply them: attention over [hidden ; embeddings] (2D
  // wide in, D out), a dense MLP, their two norms; and each applying layer's own `linear` (D → D).
  for (const block of spec.sharedBlocks ?? []) {
    const attention = 2 * D * block.numHeads * block.headDim + 2 * (2 * D * block.numKVHeads * block.headDim) + block.numHeads * block.headDim * D;
    mixers += attention;
    feedForwards += 3 * D * spec.mlp!.intermediateSize;
    norms += 2 * D + D;
  }
  mixers += spec.layers.filter((l) => l.sharedBlock != null).length * D * D;
  const total = embeddings + lmHead + metaTokens + mixers + feedForwards + norms;
  return { total, embeddings, lmHead, metaTokens, mixers, feedForwards, norms, activePerToken: total - skipped };
}
