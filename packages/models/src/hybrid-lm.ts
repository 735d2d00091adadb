/**
 * `HybridLM`: a language model over a hybrid stack ({@link @slmkit/hybrid!HybridSpec | HybridSpec}), with the same
 * `forward` / `forwardLast` / `generate` API as {@link CausalLM}.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Linear, Module } from '@slmkit/core';
import { HybridModel, type HybridCache, type HybridForwardOptions, type HybridSpec } from '@slmkit/hybrid';
import { LanguageModel } from './language-model.js';

/**
 * The configuration of a {@link HybridLM}: the stack's spec, plus the family it came from (`custom` for one
 * written by hand).
 *
 * @example
 * ```ts
 * import type { HybridLMConfig } from '@slmkit/models';
 * const config: HybridLMConfig = {
 *   family: 'custom', vocabSize: 64, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
 *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2 },
 *   layers: [{ mixer: 'mamba', feedForward: 'none' }],
 * };
 * ```
 */
export interface HybridLMConfig extends HybridSpec {
  /** `jamba`, `zamba`, `hymba`, or `custom`. */
  family: 'jamba' | 'zamba' | 'hymba' | 'custom';
}

/**
 * A hybrid language model: {@link @slmkit/hybrid!HybridModel | HybridModel} (`model.*`: embeddings, the layers of
 * the spec, the final norm) and an LM head (`lm_head`, or the embedding matrix when tied). Jamba, Zamba and Hymba
 * checkpoints load into it by their Hugging Face names ({@link fromPretrained}); a stack written by hand (say Mamba
 * with attention every 4th layer and a mixture of experts every 2nd) builds from its spec alone. Its cache holds a
 * KV cache for each attention layer and an SSM state for each Mamba layer.
 *
 * ```text
 * h_0 = embed(ids)
 * h_l = layer_l(h_{l−1})          each layer as its LayerSpec says (mixer, feed-forward, shared block, shared KV)
 * logits = lm_head(final_norm(h_L))
 * ```
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { HybridLM } from '@slmkit/models';
 * const model = new HybridLM({
 *   family: 'custom', vocabSize: 64, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
 *   attention: { numHeads: 2, numKVHeads: 1, headDim: 8, rotary: null },
 *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2 },
 *   mlp: { intermediateSize: 32 },
 *   moe: { numExperts: 4, topK: 2, normalize: false },
 *   layers: Array.from({ length: 4 }, (_, i) => ({
 *     mixer: i % 4 === 3 ? 'attention' : 'mamba',
 *     feedForward: i % 2 === 1 ? 'moe' : 'dense',
 *   })),
 * });
 * const ids = tf.tensor2d([[1, 2, 3]], undefined, 'int32');
 * const logits = model.forward(ids); // [1, 3, 64]
 * const out = await model.generate(ids, { maxNewTokens: 4, stopTokens: [] });
 * console.log(logits.shape, out.tokens[0].length); // [1, 3, 64] 4
 * tf.dispose([ids, logits]);
 * model.dispose();
 * ```
 */
export class HybridLM extends LanguageModel<HybridForwardOptions, HybridCache> {
  /** The configuration (frozen). */
  readonly config: Readonly<HybridLMConfig> & { readonly eosTokenId: number | number[] | null; readonly padTokenId: number | null };
  /** The body: `model.*`. */
  readonly model: HybridModel;
  /** `lm_head`; undefined when tied to the embeddings. */
  readonly lmHead: Linear | undefined;

  /**
   * @param config - the spec and family; validated eagerly.
   * @throws `ConfigError` naming the first invalid field (with the layer index for a layer's).
   */
  constructor(config: HybridLMConfig) {
    super();
    const { family, ...spec } = config;
    this.model = this.registerModule('model', new HybridModel(spec));
    this.config = Object.freeze({ ...structuredClone(config), eosTokenId: config.eosTokenId ?? null, padTokenId: config.padTokenId ?? null, family });
    this.lmHead = config.tieWordEmbeddings ? undefined : this.registerModule('lm_head', new Linear(config.hiddenSize, config.vocabSize, { bias: false }));
  }

  /** The final hidden states `[B, T, D]` of the body (`model.*`). */
  protected hidden(ids: tf.Tensor2D, options: HybridForwardOptions): tf.Tensor3D {
    return this.model.forward(ids, options);
  }

  /** `lm_head(h)` or the tied `h · Eᵀ`: `[B, T, D]` to `[B, T, V]`. */
  protected head(hidden: tf.Tensor3D): tf.Tensor3D {
    if (this.lmHead != null) return this.lmHead.forward(hidden) as tf.Tensor3D; // [B, T, V]
    return this.model.embedTokens.attend(hidden) as tf.Tensor3D; // [B, T, V]
  }

  /** A new, empty {@link @slmkit/hybrid!HybridCache | HybridCache}; the caller owns it. */
  createCache(): HybridCache {
    return this.model.createCache();
  }

}
