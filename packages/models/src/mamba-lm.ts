/**
 * `MambaLM`: the Mamba-1 language models (`mamba`, `falcon_mamba`) with Hugging Face parameter names, explicit
 * recurrent state and the same `forward` / `forwardLast` / `generate` API as {@link CausalLM}.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Embedding, Linear, Module, RMSNorm } from '@slmkit/core';
import { MambaMixer, SsmState, type SelectiveScanOptions } from '@slmkit/ssm';
import { validateMambaConfig, type MambaConfig } from './families/mamba.js';
import { LanguageModel } from './language-model.js';
import { recurrentHidden } from './recurrent.js';
import { ModuleList } from './layers/module-list.js';

/**
 * The decoding state of a whole {@link MambaLM}: one {@link @slmkit/ssm!SsmState | SsmState} (conv + recurrent
 * state) per layer. Its size does not grow with the sequence. Made by {@link MambaLM.createCache}, passed to each
 * forward, owned and disposed by the caller.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { MambaLM, mambaConfigFromHF } from '@slmkit/models';
 * const model = new MambaLM(mambaConfigFromHF({ model_type: 'mamba', vocab_size: 64, hidden_size: 16, num_hidden_layers: 2, state_size: 4 }));
 * const cache = model.createCache();
 * const ids = tf.tensor2d([[1, 2, 3]], undefined, 'int32');
 * const logits = model.forward(ids, { cache });
 * console.log(cache.length, cache.layers[0].ssm?.shape); // 3 [1, 32, 4]
 * tf.dispose([ids, logits]);
 * cache.dispose();
 * model.dispose();
 * ```
 */
export class MambaCache<S extends tf.Tensor = tf.Tensor3D> {
  /** One state per layer (`S`: the recurrent state's type, `[B, D, N]` for Mamba-1, `[B, H, P, N]` for Mamba-2). */
  readonly layers: readonly SsmState<S>[];

  /** @param numLayers - how many layers (a positive integer). */
  constructor(numLayers: number) {
    this.layers = Object.freeze(Array.from({ length: numLayers }, () => new SsmState<S>()));
  }

  /** Positions seen so far. */
  get length(): number {
    return this.layers[0].length;
  }

  /** Bytes held now, over every layer (constant once the first call has run). */
  get byteSize(): number {
    return this.layers.reduce((s, l) => s + l.byteSize, 0);
  }

  /** Whether {@link MambaCache.dispose} was called. */
  get isDisposed(): boolean {
    return this.layers[0].isDisposed;
  }

  /** An independent copy; dispose it separately. */
  clone(): MambaCache<S> {
    const copy = new MambaCache<S>(this.layers.length);
    this.layers.forEach((l, i) => {
      if (l.conv != null && l.ssm != null) copy.layers[i].set(l.conv.clone(), l.ssm.clone(), l.length);
    });
    return copy;
  }

  /**
   * Whether {@link MambaCache.truncate | truncate(length)} is possible: only to the current length with nothing
   * appended, because a recurrent state cannot be un-applied. To roll back, keep a {@link MambaCache.clone} from
   * before and go on from it (what speculative decoding does).
   *
   * @example
   * ```ts
   * import { MambaCache } from '@slmkit/models';
   * const cache = new MambaCache(2);
   * console.log(cache.canTruncate(0), cache.canTruncate(0, 1)); // true false
   * cache.dispose();
   * ```
   */
  canTruncate(length: number, appended = 0): boolean {
    return !this.isDisposed && appended === 0 && length === this.length;
  }

  /**
   * A no-op when `length` is the current length; anything else throws, since a recurrent state cannot be rolled
   * back (see {@link MambaCache.canTruncate}).
   *
   * @throws `ConfigError` naming `length` for any other length.
   *
   * @example
   * ```ts
   * import { MambaCache } from '@slmkit/models';
   * const cache = new MambaCache(2);
   * cache.truncate(0); // nothing to drop
   * cache.dispose();
   * ```
   */
  truncate(length: number): void {
    if (!this.canTruncate(length)) {
      throw new ConfigError(`MambaCache.truncate: a recurrent state cannot be rolled back from ${this.length} to ${String(length)} positions (keep a clone() from before instead)`, {
        field: 'length',
        expected: `${this.length} (the current length)`,
        found: length,
      });
    }
  }

  /** Frees every layer's tensors. Safe to call twice. */
  dispose(): void {
    for (const l of this.layers) l.dispose();
  }
}

/**
 * Per-call options of {@link MambaLM.forward}.
 *
 * @example
 * ```ts
 * import type { MambaForwardOptions } from '@slmkit/models';
 * const options: MambaForwardOptions = { implementation: 'naive' }; // the tfjs-ops scan
 * ```
 */
export interface MambaForwardOptions {
  /** The recurrent state to continue from and update (from {@link MambaLM.createCache}). */
  cache?: MambaCache;
  /**
   * `[B, S]`, 1 for real tokens and 0 for padding; S may cover earlier positions too (as `generate` passes it),
   * then only its last T columns are used. Padded positions are zeroed around the convolution, as `transformers` does.
   */
  attentionMask?: tf.Tensor2D;
  /** Accepted for API compatibility with {@link CausalLM}; a state-space model has no positions. */
  positions?: number[][];
  /** The selective scan's implementation (default `auto`). */
  implementation?: SelectiveScanOptions['implementation'];
}

/**
 * One Mamba layer (`backbone.layers.<i>`): `h + mixer(norm(h))`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { MambaBlock, mambaConfigFromHF } from '@slmkit/models';
 * const block = new MambaBlock(mambaConfigFromHF({ model_type: 'mamba', hidden_size: 16, state_size: 4, vocab_size: 8, num_hidden_layers: 1 }));
 * const h = tf.randomNormal([1, 3, 16]) as tf.Tensor3D;
 * const out = block.forward(h); // [1, 3, 16]
 * tf.dispose([h, out]);
 * block.dispose();
 * ```
 */
export class MambaBlock extends Module {
  /** `norm`. */
  readonly norm: RMSNorm;
  /** `mixer`. */
  readonly mixer: MambaMixer;

  /** @param config - a validated {@link MambaConfig}. */
  constructor(config: MambaConfig) {
    super();
    this.norm = this.registerModule('norm', new RMSNorm(config.hiddenSize, { eps: config.layerNormEpsilon }));
    this.mixer = this.registerModule(
      'mixer',
      new MambaMixer({
        hiddenSize: config.hiddenSize,
        intermediateSize: config.intermediateSize,
        stateSize: config.stateSize,
        convKernel: config.convKernel,
        timeStepRank: config.timeStepRank,
        useBias: config.useBias,
        useConvBias: config.useConvBias,
        dtBCNorm: config.mixerRmsEps == null ? undefined : { eps: config.mixerRmsEps, weight: false },
      }),
    );
  }

  /** `[B, T, D]` to `[B, T, D]`; with a state, continues from it and updates it. */
  forward(h: tf.Tensor3D, options: { state?: SsmState; attentionMask?: tf.Tensor; implementation?: SelectiveScanOptions['implementation'] } = {}): tf.Tensor3D {
    return tf.tidy(() => tf.add(h, this.mixer.forward(this.norm.forward(h), options)) as tf.Tensor3D);
  }
}

/**
 * A Mamba-1 language model (Gu & Dao 2023, arXiv 2312.00752): `mamba` (state-spaces/mamba-*-hf) and
 * `falcon_mamba`, with Hugging Face's names (`backbone.embeddings`, `backbone.layers.<i>.norm`,
 * `backbone.layers.<i>.mixer.*`, `backbone.norm_f`, `lm_head` unless tied), so {@link fromPretrained} loads their
 * checkpoints as stored. It has the API of {@link CausalLM}: `forward`, `forwardLast`, `createCache`, `generate`,
 * `stream`; its cache is a constant-size {@link MambaCache} instead of growing KV caches.
 *
 * ```text
 * h_0 = embeddings(ids)
 * h_l = h_{l−1} + mixer_l(RMSNorm_l(h_{l−1}))     (see MambaMixer)
 * logits = lm_head(norm_f(h_L))
 * ```
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { MambaLM, mamba130m } from '@slmkit/models';
 * const model = new MambaLM({ ...mamba130m(), vocabSize: 256, numLayers: 2 });
 * const ids = tf.tensor2d([[5, 6, 7]], undefined, 'int32');
 * const logits = model.forward(ids); // [1, 3, 256]
 * const out = await model.generate(ids, { maxNewTokens: 4, stopTokens: [] });
 * console.log(logits.shape, out.tokens[0].length); // [1, 3, 256] 4
 * tf.dispose([ids, logits]);
 * model.dispose();
 * ```
 */
export class MambaLM extends LanguageModel<MambaForwardOptions, MambaCache> {
  /** The configuration (frozen). */
  readonly config: Readonly<MambaConfig>;
  /** `backbone.embeddings`. */
  readonly embeddings: Embedding;
  /** `backbone.layers.<i>`. */
  readonly layers: ModuleList<MambaBlock>;
  /** `backbone.norm_f`. */
  readonly normF: RMSNorm;
  /** `lm_head`; undefined when tied to the embeddings. */
  readonly lmHead: Linear | undefined;

  /**
   * @param config - checked eagerly ({@link validateMambaConfig}).
   * @throws `ConfigError` naming the first invalid field.
   */
  constructor(config: MambaConfig) {
    super();
    validateMambaConfig(config);
    this.config = Object.freeze(structuredClone(config));
    const backbone = new MambaBackbone(this.config);
    this.registerModule('backbone', backbone);
    this.embeddings = backbone.embeddings;
    this.layers = backbone.layers;
    this.normF = backbone.normF;
    this.lmHead = config.tieWordEmbeddings ? undefined : this.registerModule('lm_head', new Linear(config.hiddenSize, config.vocabSize, { bias: false }));
  }

  /** The final hidden states `[B, T, D]` after `norm_f`. */
  protected hidden(ids: tf.Tensor2D, options: MambaForwardOptions): tf.Tensor3D {
    return recurrentHidden('MambaLM', this, ids, options);
  }

  /** `lm_head(h)` or the tied `h · Eᵀ`: `[B, T, D]` to `[B, T, V]`. */
  protected head(hidden: tf.Tensor3D): tf.Tensor3D {
    if (this.lmHead != null) return this.lmHead.forward(hidden) as tf.Tensor3D; // [B, T, V]
    return this.embeddings.attend(hidden) as tf.Tensor3D; // [B, T, V]
  }

  /** A new, empty {@link MambaCache}; the caller owns it. */
  createCache(): MambaCache {
    return new MambaCache(this.config.numLayers);
  }

}

/**
 * The body of a {@link MambaLM} (`backbone`): embeddings, layers, final norm.
 *
 * @example
 * ```ts
 * import { MambaLM, mambaConfigFromHF } from '@slmkit/models';
 * const model = new MambaLM(mambaConfigFromHF({ model_type: 'mamba', vocab_size: 32, hidden_size: 16, num_hidden_layers: 1, state_size: 4 }));
 * console.log(model.namedParameters()[0][0]); // "backbone.embeddings.weight"
 * model.dispose();
 * ```
 */
export class MambaBackbone extends Module {
  /** `embeddings`. */
  readonly embeddings: Embedding;
  /** `layers.<i>`. */
  readonly layers: ModuleList<MambaBlock>;
  /** `norm_f`. */
  readonly normF: RMSNorm;

  /** @param config - a validated {@link MambaConfig}. */
  constructor(config: MambaConfig) {
    super();
    this.embeddings = this.registerModule('embeddings', new Embedding(config.vocabSize, config.hiddenSize));
    this.layers = this.registerModule('layers', new ModuleList(Array.from({ length: config.numLayers }, () => new MambaBlock(config))));
    this.normF = this.registerModule('norm_f', new RMSNorm(config.hiddenSize, { eps: config.layerNormEpsilon }));
  }
}
