/**
 * `Mamba2LM`: the Mamba-2 language models (`mamba2`) with Hugging Face parameter names, explicit recurrent state and
 * the same `forward` / `forwardLast` / `generate` API as {@link CausalLM} and {@link MambaLM}.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Embedding, Linear, Module, RMSNorm } from '@slmkit/core';
import { Mamba2Mixer, type SsdScanOptions, type SsmState } from '@slmkit/ssm';
import { validateMamba2Config, type Mamba2Config } from './families/mamba2.js';
import { LanguageModel } from './language-model.js';
import { recurrentHidden } from './recurrent.js';
import { ModuleList } from './layers/module-list.js';
import { MambaCache } from './mamba-lm.js';

/**
 * Per-call options of {@link Mamba2LM.forward}.
 *
 * @example
 * ```ts
 * import type { Mamba2ForwardOptions } from '@slmkit/models';
 * const options: Mamba2ForwardOptions = { implementation: 'chunked' }; // the SSD algorithm in tfjs ops
 * ```
 */
export interface Mamba2ForwardOptions {
  /** The recurrent state to continue from and update (from {@link Mamba2LM.createCache}). */
  cache?: MambaCache<tf.Tensor4D>;
  /** `[B, S]`, 1 for real tokens and 0 for padding; only its last T columns are used. */
  attentionMask?: tf.Tensor2D;
  /** Accepted for API compatibility with {@link CausalLM}; a state-space model has no positions. */
  positions?: number[][];
  /** The scan's implementation (default `auto`: fused where the backend has a kernel). */
  implementation?: SsdScanOptions['implementation'];
}

/**
 * One Mamba-2 layer (`backbone.layers.<i>`): `h + mixer(norm(h))`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Mamba2Block, mamba2ConfigFromHF } from '@slmkit/models';
 * const config = mamba2ConfigFromHF({ model_type: 'mamba2', hidden_size: 16, num_heads: 4, head_dim: 8, n_groups: 1, state_size: 4, vocab_size: 8, num_hidden_layers: 1 });
 * const block = new Mamba2Block(config);
 * const h = tf.randomNormal([1, 3, 16]) as tf.Tensor3D;
 * const out = block.forward(h); // [1, 3, 16]
 * tf.dispose([h, out]);
 * block.dispose();
 * ```
 */
export class Mamba2Block extends Module {
  /** `norm`. */
  readonly norm: RMSNorm;
  /** `mixer`. */
  readonly mixer: Mamba2Mixer;

  /** @param config - a validated {@link Mamba2Config}. */
  constructor(config: Mamba2Config) {
    super();
    this.norm = this.registerModule('norm', new RMSNorm(config.hiddenSize, { eps: config.layerNormEpsilon }));
    this.mixer = this.registerModule(
      'mixer',
      new Mamba2Mixer({
        hiddenSize: config.hiddenSize,
        numHeads: config.numHeads,
        headDim: config.headDim,
        nGroups: config.nGroups,
        stateSize: config.stateSize,
        convKernel: config.convKernel,
        chunkSize: config.chunkSize,
        layerNormEpsilon: config.layerNormEpsilon,
        dtLimit: config.timeStepMin == null ? undefined : [config.timeStepMin, Infinity],
        useBias: config.useBias,
        useConvBias: config.useConvBias,
      }),
    );
  }

  /** `[B, T, D]` to `[B, T, D]`; with a state, continues from it and updates it. */
  forward(h: tf.Tensor3D, options: { state?: SsmState<tf.Tensor4D>; attentionMask?: tf.Tensor; implementation?: SsdScanOptions['implementation'] } = {}): tf.Tensor3D {
    return tf.tidy(() => tf.add(h, this.mixer.forward(this.norm.forward(h), options)) as tf.Tensor3D);
  }
}

/**
 * The body of a {@link Mamba2LM} (`backbone`): embeddings, layers, final norm.
 *
 * @example
 * ```ts
 * import { Mamba2LM, mamba2ConfigFromHF } from '@slmkit/models';
 * const model = new Mamba2LM(mamba2ConfigFromHF({ model_type: 'mamba2', vocab_size: 32, hidden_size: 16, num_heads: 4, head_dim: 8, n_groups: 1, state_size: 4, num_hidden_layers: 1 }));
 * console.log(model.namedParameters()[0][0]); // "backbone.embeddings.weight"
 * model.dispose();
 * ```
 */
export class Mamba2Backbone extends Module {
  /** `embeddings`. */
  readonly embeddings: Embedding;
  /** `layers.<i>`. */
  readonly layers: ModuleList<Mamba2Block>;
  /** `norm_f`. */
  readonly normF: RMSNorm;

  /** @param config - a validated {@link Mamba2Config}. */
  constructor(config: Mamba2Config) {
    super();
    this.embeddings = this.registerModule('embeddings', new Embedding(config.vocabSize, config.hiddenSize));
    this.layers = this.registerModule('layers', new ModuleList(Array.from({ length: config.numLayers }, () => new Mamba2Block(config))));
    this.normF = this.registerModule('norm_f', new RMSNorm(config.hiddenSize, { eps: config.layerNormEpsilon }));
  }
}

/**
 * A Mamba-2 language model (Dao & Gu 2024, arXiv 2405.21060): the `mamba2` family, with Hugging Face's names
 * (`backbone.embeddings`, `backbone.layers.<i>.norm`, `backbone.layers.<i>.mixer.*`, `backbone.norm_f`, `lm_head`
 * unless tied), so {@link fromPretrained} loads `Mamba2ForCausalLM` checkpoints as stored. The API is
 * {@link MambaLM}'s: `forward`, `forwardLast`, `createCache`, `generate`, `stream`; the cache is a constant-size
 * {@link MambaCache} whose recurrent states are `[B, H, P, N]`.
 *
 * ```text
 * h_0 = embeddings(ids)
 * h_l = h_{l−1} + mixer_l(RMSNorm_l(h_{l−1}))     (see Mamba2Mixer)
 * logits = lm_head(norm_f(h_L))
 * ```
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Mamba2LM, mamba2ConfigFromHF } from '@slmkit/models';
 * const model = new Mamba2LM(mamba2ConfigFromHF({
 *   model_type: 'mamba2', vocab_size: 64, hidden_size: 16, num_heads: 4, head_dim: 8, n_groups: 2, state_size: 8,
 *   num_hidden_layers: 2, chunk_size: 4,
 * }));
 * const ids = tf.tensor2d([[5, 6, 7]], undefined, 'int32');
 * const logits = model.forward(ids); // [1, 3, 64]
 * const out = await model.generate(ids, { maxNewTokens: 4, stopTokens: [] });
 * console.log(logits.shape, out.tokens[0].length); // [1, 3, 64] 4
 * tf.dispose([ids, logits]);
 * model.dispose();
 * ```
 */
export class Mamba2LM extends LanguageModel<Mamba2ForwardOptions, MambaCache<tf.Tensor4D>> {
  /** The configuration (frozen). */
  readonly config: Readonly<Mamba2Config>;
  /** `backbone.embeddings`. */
  readonly embeddings: Embedding;
  /** `backbone.layers.<i>`. */
  readonly layers: ModuleList<Mamba2Block>;
  /** `backbone.norm_f`. */
  readonly normF: RMSNorm;
  /** `lm_head`; undefined when tied to the embeddings. */
  readonly lmHead: Linear | undefined;

  /**
   * @param config - checked eagerly ({@link validateMamba2Config}).
   * @throws `ConfigError` naming the first invalid field.
   */
  constructor(config: Mamba2Config) {
    super();
    validateMamba2Config(config);
    this.config = Object.freeze(structuredClone(config));
    const backbone = new Mamba2Backbone(this.config);
    this.registerModule('backbone', backbone);
    this.embeddings = backbone.embeddings;
    this.layers = backbone.layers;
    this.normF = backbone.normF;
    this.lmHead = config.tieWordEmbeddings ? undefined : this.registerModule('lm_head', new Linear(config.hiddenSize, config.vocabSize, { bias: false }));
  }

  /** The final hidden states `[B, T, D]` after `norm_f`. */
  protected hidden(ids: tf.Tensor2D, options: Mamba2ForwardOptions): tf.Tensor3D {
    return recurrentHidden('Mamba2LM', this, ids, options);
  }

  /** `lm_head(h)` or the tied `h · Eᵀ`: `[B, T, D]` to `[B, T, V]`. */
  protected head(hidden: tf.Tensor3D): tf.Tensor3D {
    if (this.lmHead != null) return this.lmHead.forward(hidden) as tf.Tensor3D; // [B, T, V]
    return this.embeddings.attend(hidden) as tf.Tensor3D; // [B, T, V]
  }

  /** A new, empty {@link MambaCache} (one `[B, H, P, N]` state per layer); the caller owns it. */
  createCache(): MambaCache<tf.Tensor4D> {
    return new MambaCache<tf.Tensor4D>(this.config.numLayers);
  }

}
