/**
 * Parameter counting from a config's shapes alone: no weights, no tensors, no lookup table. The count equals
 * `sum(p.numel() for p in model.parameters())` of the Hugging Face model built from the same config.
 *
 * @module
 */
import { ConfigError, checkPositiveInt } from '@slmkit/core';
import type { CausalLMConfig, NormConfig } from './config.js';

/**
 * The parameters of a {@link CausalLMConfig}, broken down by part. The per-layer numbers hold for each of the
 * `numLayers` layers, except in a mixture-of-experts model with dense layers between sparse ones (Qwen2-MoE's
 * `mlp_only_layers`): there they describe a sparse layer and `layers` is the exact sum.
 *
 * @example
 * ```ts
 * import { countParameters, smollm135m, type ParameterCount } from '@slmkit/models';
 * const c: ParameterCount = countParameters(smollm135m());
 * console.log(c.total === c.embedding + c.perLayer * 30 + c.finalNorm + c.lmHead); // true
 * ```
 */
export interface ParameterCount {
  /** Everything, counting a tied embedding/LM-head matrix once (as `model.parameters()` does). */
  total: number;
  /** The token embedding, `vocabSize * hiddenSize`. */
  embedding: number;
  /** One decoder layer: attention + MLP + its norms. */
  perLayer: number;
  /** One layer's attention: q, k, v, o projections with their biases, and q/k norms. */
  attentionPerLayer: number;
  /**
   * One layer's MLP: gate, up and down (gated) or fc1 and fc2 (plain), with their biases; in a mixture-of-experts
   * model, a sparse layer's router, routed experts and shared expert.
   */
  mlpPerLayer: number;
  /** One layer's norms: two, or one with a parallel residual. */
  normsPerLayer: number;
  /** All decoder layers, `perLayer * numLayers`. */
  layers: number;
  /** The norm after the last layer. */
  finalNorm: number;
  /** The LM head: its weight unless tied to the embedding, plus its bias if it has one. */
  lmHead: number;
  /** `total - embedding - lmHead`: the usual "non-embedding" size used in scaling laws. */
  nonEmbedding: number;
  /**
   * The parameters one token uses: `total` less the routed experts it is not sent to (`E − k` of `E` in every
   * sparse layer). Equal to `total` for a dense model.
   */
  active: number;
  /** The routed experts of every sparse layer together (0 for a dense model). */
  routedExperts: number;
}

/** Parameters of one norm over `width` features. LayerNorm has a bias unless told otherwise. */
function normParameters(norm: NormConfig, width: number): number {
  return norm.type === 'layer' && norm.bias !== false ? 2 * width : width;
}

/**
 * Counts the parameters of a model from its config's shapes: embeddings, per-layer attention (fused or not, the
 * same numbers), q/k norms, a gated or plain MLP with or without biases, or a sparse mixture of experts (router,
 * routed experts, shared expert and its gate) with the parameters active per token, the norms with or without
 * bias, the final norm, and the LM head unless tied (plus its bias). Never looked up from a table, so it also sizes a custom config
 * before anything is allocated.
 *
 * Fused `qkv_proj` / `gate_up_proj` change names, not counts: `[H + 2·KV]·headDim × D` is the sum of the separate
 * q, k and v matrices.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} if a size is not a positive integer.
 *
 * @example
 * ```ts
 * import { countParameters, qwen2_0_5b } from '@slmkit/models';
 * const { total, embedding } = countParameters(qwen2_0_5b());
 * console.log(total, embedding); // 494032768 136134656
 * ```
 */
export function countParameters(config: CausalLMConfig): ParameterCount {
  const owner = 'countParameters';
  for (const field of ['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKVHeads', 'headDim', 'intermediateSize'] as const) {
    checkPositiveInt(owner, field, config[field]);
  }
  if (config.mlp !== 'gated' && config.mlp !== 'plain') {
    throw new ConfigError(`${owner}: mlp must be "gated" or "plain", found ${String(config.mlp)}`, {
      field: 'mlp',
      expected: '"gated" | "plain"',
      found: config.mlp,
    });
  }
  const { vocabSize: V, hiddenSize: D, numHeads: H, numKVHeads: KV, headDim: hd, intermediateSize: I } = config;
  const qWidth = H * hd; // q_proj (and o_proj's input) width
  const kvWidth = KV * hd; // k_proj and v_proj widths
  const bias = config.attentionBias;

  let attention = D * qWidth + 2 * D * kvWidth + qWidth * D;
  attention += (bias.q ? qWidth : 0) + (bias.k ? kvWidth : 0) + (bias.v ? kvWidth : 0) + (bias.o ? D : 0);
  if (config.qkNorm != null) {
    // Per head (StableLM: H and KV LayerNorms of headDim each) or over the whole projection (OLMoE): either way one
    // weight (and bias) per q feature and per k feature.
    const perFeature = normParameters(config.qkNorm.norm, 1);
    attention += perFeature * (qWidth + kvWidth);
  }

  const denseMlp =
    config.mlp === 'gated'
      ? 3 * D * I + (config.mlpBias ? 2 * I + D : 0) // gate, up: D -> I; down: I -> D
      : 2 * D * I + (config.mlpBias ? I + D : 0); // fc1: D -> I; fc2: I -> D

  // A sparse layer: the router (D -> E), E SwiGLU experts of width Ie, and a shared expert with its D -> 1 gate.
  const moe = config.moe ?? null;
  let sparseLayers = 0;
  let expertsPerLayer = 0;
  let sparseMlp = denseMlp;
  if (moe != null) {
    for (const field of ['numExperts', 'topK', 'expertIntermediateSize'] as const) checkPositiveInt(owner, `moe.${field}`, moe[field]);
    expertsPerLayer = moe.numExperts * 3 * D * moe.expertIntermediateSize;
    const shared = moe.sharedExpertIntermediateSize == null ? 0 : 3 * D * moe.sharedExpertIntermediateSize + D;
    sparseMlp = D * moe.numExperts + expertsPerLayer + shared;
    sparseLayers = moe.sparseLayers?.length ?? config.numLayers;
  }
  const mlp = moe != null ? sparseMlp : denseMlp;

  const norms = (config.parallelResidual ? 1 : 2) * normParameters(config.norm, D);
  const perLayer = attention + mlp + norms;
  const layers = (attention + norms) * config.numLayers + sparseMlp * sparseLayers + denseMlp * (config.numLayers - sparseLayers);
  const routedExperts = expertsPerLayer * sparseLayers;
  const unused = moe == null ? 0 : (routedExperts / moe.numExperts) * (moe.numExperts - moe.topK);
  const embedding = V * D;
  const finalNorm = normParameters(config.norm, D);
  const lmHead = (config.tieWordEmbeddings ? 0 : V * D) + (config.lmHeadBias ? V : 0);
  const total = embedding + layers + finalNorm + lmHead;
  return {
    total,
    embedding,
    perLayer,
    attentionPerLayer: attention,
    mlpPerLayer: mlp,
    normsPerLayer: norms,
    layers,
    finalNorm,
    lmHead,
    nonEmbedding: total - embedding - lmHead,
    active: total - unused,
    routedExperts,
  };
}
