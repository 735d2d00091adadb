/**
 * `HybridLM`: a language model over a hybrid stack ({@link @slmkit/hybrid!HybridSpec | HybridSpec}), with the same
 * `forward` / `forwardLast` / `generate` API as {@link CausalLM}.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Linear, Module } from '@slmkit/core';
import { HybridModel, type HybridCache, type HybridForwardOptions, type HybridSpec } from '@slmkit/hybrid';
import { generate, stream, type GenerateInput, type GenerateOptions, type GenerateOutput, type GenerateStep, type PromptTokenizer } from './generate.js';

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
export class HybridLM extends Module {
  /** The configuration (frozen). */
  readonly config: Readonly<HybridLMConfig> & { readonly eosTokenId: number | number[] | null; readonly padTokenId: number | null };
  /** The body: `model.*`. */
  readonly model: HybridModel;
  /** `lm_head`; undefined when tied to the embeddings. */
  readonly lmHead: Linear | undefined;
  /** Turns text into ids and back, so {@link HybridLM.generate} accepts strings. */
  tokenizer: PromptTokenizer | undefined;

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
    this.tokenizer = undefined;
  }

  private head(hidden: tf.Tensor3D): tf.Tensor3D {
    if (this.lmHead != null) return this.lmHead.forward(hidden) as tf.Tensor3D; // [B, T, V]
    return this.model.embedTokens.attend(hidden) as tf.Tensor3D; // [B, T, V]
  }

  /**
   * The logits of every position.
   *
   * @param ids - int32 `[B, T]`.
   * @param options - a cache to continue from and update, a padding mask, kernels.
   * @returns float32 `[B, T, vocabSize]`; the caller owns it.
   * @throws `ShapeError` for bad ids or mask; `ConfigError` for a cache of another model.
   */
  forward(ids: tf.Tensor2D, options: HybridForwardOptions = {}): tf.Tensor3D {
    return tf.tidy(() => this.head(this.model.forward(ids, options)));
  }

  /**
   * The logits of the last position of each row: `[B, vocabSize]`.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { HybridLM } from '@slmkit/models';
   * const model = new HybridLM({
   *   family: 'custom', vocabSize: 32, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: false,
   *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2 },
   *   layers: [{ mixer: 'mamba', feedForward: 'none' }],
   * });
   * const cache = model.createCache();
   * const ids = tf.tensor2d([[1, 2, 3]], undefined, 'int32');
   * const last = model.forwardLast(ids, { cache }); // [1, 32]
   * tf.dispose([ids, last]);
   * cache.dispose();
   * model.dispose();
   * ```
   */
  forwardLast(ids: tf.Tensor2D, options: HybridForwardOptions = {}): tf.Tensor2D {
    return tf.tidy(() => {
      const hidden = this.model.forward(ids, options); // [B, T, D]
      const [B, T, D] = hidden.shape;
      const last = tf.slice(hidden, [0, T - 1, 0], [B, 1, D]) as tf.Tensor3D; // [B, 1, D]
      return tf.reshape(this.head(last), [B, this.config.vocabSize]) as tf.Tensor2D; // [B, V]
    });
  }

  /** A new, empty {@link @slmkit/hybrid!HybridCache | HybridCache}; the caller owns it. */
  createCache(): HybridCache {
    return this.model.createCache();
  }

  /**
   * Generates up to `maxNewTokens` tokens after each row, as {@link CausalLM.generate} does: a prefill, then one
   * token at a time through the hybrid cache.
   *
   * @example
   * ```ts
   * import { HybridLM } from '@slmkit/models';
   * const model = new HybridLM({
   *   family: 'custom', vocabSize: 32, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
   *   attention: { numHeads: 2, numKVHeads: 2, headDim: 8, rotary: null },
   *   mlp: { intermediateSize: 32 },
   *   layers: [{ mixer: 'attention', feedForward: 'dense' }],
   * });
   * const out = await model.generate([[1, 2, 3]], { maxNewTokens: 3, stopTokens: [] });
   * console.log(out.sequences[0].length); // 6
   * model.dispose();
   * ```
   */
  generate(input: GenerateInput, options: GenerateOptions): Promise<GenerateOutput> {
    return generate(this, input, options);
  }

  /**
   * {@link HybridLM.generate} as an async iterator of steps.
   *
   * @example
   * ```ts
   * import { HybridLM } from '@slmkit/models';
   * const model = new HybridLM({
   *   family: 'custom', vocabSize: 32, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
   *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2 },
   *   layers: [{ mixer: 'mamba', feedForward: 'none' }],
   * });
   * for await (const step of model.stream([[1, 2]], { maxNewTokens: 2 })) console.log(step.tokens);
   * model.dispose();
   * ```
   */
  stream(input: GenerateInput, options: Omit<GenerateOptions, 'onToken'>): AsyncIterableIterator<GenerateStep> {
    return stream(this, input, options);
  }
}
