/**
 * `HybridModel`: the body of a hybrid language model built from a {@link HybridSpec}: embeddings, the layers, the
 * final norm, and the caches they decode through.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { KVCache, SlidingWindowCache, type AttentionImplementation } from '@slmkit/attention';
import { ConfigError, Embedding, Module, RMSNorm, RotaryEmbedding, ShapeError } from '@slmkit/core';
import { SsmState, type SelectiveScanOptions } from '@slmkit/ssm';
import { HybridCache, type HybridLayerState } from './cache.js';
import { HybridLayer, type LayerContext } from './layer.js';
import { ZambaHybridLayer, ZambaSharedBlock } from './zamba.js';
import { HYMBA_LAYER_NAMES, HymbaBlock, HymbaFeedForward } from './hymba.js';
import { validateHybridSpec, type HybridSpec } from './spec.js';

/**
 * Per-call options of {@link HybridModel.forward} (and of the language model around it).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { HybridForwardOptions } from '@slmkit/hybrid';
 * const options: HybridForwardOptions = { attentionMask: tf.tensor2d([[0, 1, 1]]), scanImplementation: 'naive' };
 * ```
 */
export interface HybridForwardOptions {
  /** The caches to continue from and update (from `createCache()`); without one the call is stateless. */
  cache?: HybridCache;
  /**
   * `[B, S]`, 1 for a real token and 0 for padding, over the positions so far (S ≥ T; the last T are the new ones).
   * Meta tokens (`spec.metaTokens`) are not counted: they are never padding.
   */
  attentionMask?: tf.Tensor2D;
  /** Accepted for API compatibility with `CausalLM`; positions are the slot positions. */
  positions?: number[][];
  /** The attention kernel (`auto` by default). */
  implementation?: AttentionImplementation;
  /** The selective scan's implementation (`auto` by default). */
  scanImplementation?: SelectiveScanOptions['implementation'];
}

/**
 * A layer of a {@link HybridModel} as the model runs it: a `HybridLayer`, or a family's own layer (Zamba's hybrid
 * layer) with the same call.
 *
 * @example
 * ```ts
 * import type { StackLayer } from '@slmkit/hybrid';
 * const describe = (layer: StackLayer) => layer.namedParameters().length;
 * ```
 */
export type StackLayer = Module & { forward(x: tf.Tensor3D, ctx: LayerContext): tf.Tensor3D };

/**
 * The body of a hybrid model (registered as `model` by the language model): `embed_tokens`, `layers.<i>` and
 * `final_layernorm`, with the Hugging Face names of Jamba, Zamba and Hymba. One rotary embedding, when the spec has
 * one, serves every attention layer.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { HybridModel, type HybridSpec } from '@slmkit/hybrid';
 * const spec: HybridSpec = {
 *   vocabSize: 64, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
 *   attention: { numHeads: 2, numKVHeads: 1, headDim: 8, rotary: null },
 *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2 },
 *   mlp: { intermediateSize: 32 },
 *   layers: [{ mixer: 'mamba', feedForward: 'dense' }, { mixer: 'attention', feedForward: 'dense' }],
 * };
 * const body = new HybridModel(spec);
 * const cache = body.createCache();
 * const ids = tf.tensor2d([[1, 2, 3]], undefined, 'int32');
 * const hidden = body.forward(ids, { cache }); // [1, 3, 16]
 * console.log(hidden.shape, cache.length); // [1, 3, 16] 3
 * tf.dispose([ids, hidden]);
 * cache.dispose();
 * body.dispose();
 * ```
 */
export class HybridModel extends Module {
  /** The spec it was built from (frozen). */
  readonly spec: Readonly<HybridSpec>;
  /** `embed_tokens`. */
  readonly embedTokens: Embedding;
  /** `layers.<i>`. */
  readonly layers: readonly StackLayer[];
  /** `final_layernorm`. */
  readonly finalNorm: RMSNorm;
  /** The rotary embedding of the attention layers; undefined without one. */
  readonly rotary: RotaryEmbedding | undefined;
  /** `memory_tokens`, `[M, D]`: Hymba's meta tokens; undefined when the spec has none. */
  readonly memoryTokens: tf.Variable | undefined;
  private readonly kvProducers: ReadonlySet<number>;

  /**
   * @param spec - the stack; validated here ({@link validateHybridSpec}).
   * @throws `ConfigError` naming the first invalid field.
   */
  constructor(spec: HybridSpec) {
    super();
    validateHybridSpec(spec);
    this.spec = Object.freeze(structuredClone(spec));
    const rotaryConfig = spec.attention?.rotary;
    this.rotary = rotaryConfig == null ? undefined : new RotaryEmbedding(rotaryConfig);
    this.embedTokens = this.registerModule('embed_tokens', new Embedding(spec.vocabSize, spec.hiddenSize));
    // Zamba: each shared block is built once, on first use, and registered under every layer that uses it.
    const sharedBlocks = new Map<number, ZambaSharedBlock>();
    const sharedBlock = (b: number): ZambaSharedBlock => {
      if (!sharedBlocks.has(b)) sharedBlocks.set(b, new ZambaSharedBlock(spec.hiddenSize, spec.sharedBlocks![b], spec.mlp!, spec.normEps));
      return sharedBlocks.get(b)!;
    };
    const M = spec.metaTokens ?? 0;
    // Registered only with meta tokens, so other families' parameter names are unchanged.
    this.memoryTokens = M > 0 ? this.registerParameter('memory_tokens', tf.randomNormal([M, spec.hiddenSize], 0, 0.02)) : undefined;
    const layers = new LayerList(
      spec.layers.map((layer, i) =>
        layer.mixer === 'hymba'
          ? new HybridLayer(this.spec, i, {
              rotary: this.rotary,
              mixer: new HymbaBlock(this.spec, i, { rotary: this.rotary }),
              feedForward: layer.feedForward === 'dense' ? new HymbaFeedForward(spec.hiddenSize, spec.mlp!.intermediateSize, spec.mlp!.activation) : undefined,
              names: HYMBA_LAYER_NAMES,
            })
          : layer.sharedBlock != null
            ? new ZambaHybridLayer(this.spec, i, sharedBlock(layer.sharedBlock))
            : new HybridLayer(this.spec, i, { rotary: this.rotary }),
      ),
    );
    this.registerModule('layers', layers);
    this.layers = layers.items;
    this.finalNorm = this.registerModule('final_layernorm', new RMSNorm(spec.hiddenSize, { eps: spec.normEps }));
    this.kvProducers = new Set(spec.layers.flatMap((l) => (l.kvFrom == null ? [] : [l.kvFrom])));
  }

  /**
   * New, empty caches for this stack: per layer a `KVCache` (or a `SlidingWindowCache` that keeps the meta tokens
   * and the window) for its own attention, an `SsmState` for its SSM. The caller owns it.
   *
   * @example
   * ```ts
   * import { HybridModel } from '@slmkit/hybrid';
   * const body = new HybridModel({
   *   vocabSize: 32, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
   *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2 },
   *   layers: [{ mixer: 'mamba', feedForward: 'none' }],
   * });
   * const cache = body.createCache();
   * console.log(cache.layers[0].ssm != null); // true
   * cache.dispose();
   * body.dispose();
   * ```
   */
  createCache(): HybridCache {
    const spec = this.spec;
    const M = spec.metaTokens ?? 0;
    const window = spec.attention?.slidingWindow ?? null;
    return new HybridCache(
      spec.layers.map((layer): HybridLayerState => {
        const state: HybridLayerState = {};
        if (layer.mixer === 'mamba' || layer.mixer === 'hymba') state.ssm = new SsmState();
        const windowed = layer.mixer === 'sliding-attention' || layer.window === true;
        if (layer.mixer !== 'mamba' && layer.kvFrom == null) {
          // A windowed hymba layer sees q − k ≤ W: W + 1 positions.
          const kept = layer.mixer === 'hymba' ? window! + 1 : window!;
          state.attention = windowed ? new SlidingWindowCache(kept, { prefixLength: M }) : new KVCache();
        }
        if (layer.sharedBlock != null) state.shared = new KVCache();
        return state;
      }),
    );
  }

  /**
   * @param ids - int32 `[B, T]`, every id in `[0, vocabSize)`.
   * @param options - a cache, a padding mask, kernels; see {@link HybridForwardOptions}.
   * @returns the final hidden states `[B, T, D]` after the final norm; the caller owns them. With a cache, the cache
   *   now holds these positions too.
   * @throws `ShapeError` for ids of the wrong rank or dtype or a mask of the wrong shape; `ConfigError` for a cache
   *   of another model or a disposed one.
   */
  forward(ids: tf.Tensor2D, options: HybridForwardOptions = {}): tf.Tensor3D {
    if (!(ids instanceof tf.Tensor) || ids.rank !== 2 || ids.dtype !== 'int32' || ids.size === 0) {
      const found = ids instanceof tf.Tensor ? `${ids.dtype} [${ids.shape.join(', ')}]` : typeof ids;
      throw new ShapeError(`HybridModel: ids must be an int32 tensor [B, T] with B, T >= 1, found ${found}`, { field: 'ids', expected: 'int32 [B, T]', found });
    }
    const [B, T] = ids.shape;
    const { cache, attentionMask } = options;
    if (cache != null && (!(cache instanceof HybridCache) || cache.layers.length !== this.layers.length || cache.isDisposed)) {
      const found = cache instanceof HybridCache ? `${cache.layers.length} layers${cache.isDisposed ? ', disposed' : ''}` : typeof cache;
      throw new ConfigError(`HybridModel: cache must be a live HybridCache of ${this.layers.length} layers (from createCache()), found ${found}`, {
        field: 'cache',
        expected: `a HybridCache of ${this.layers.length} layers`,
        found,
      });
    }
    const offset = cache?.length ?? 0;
    // Meta tokens (Hymba): prepended when nothing is cached; the caller's mask covers real tokens only.
    const M = this.memoryTokens == null ? 0 : this.memoryTokens.shape[0];
    const prepend = M > 0 && offset === 0 ? M : 0;
    const real = offset > 0 ? offset - M : 0; // real tokens cached before this call
    if (attentionMask != null && (attentionMask.rank !== 2 || attentionMask.shape[0] !== B || attentionMask.shape[1] !== real + T)) {
      throw new ShapeError(`HybridModel: attentionMask must be [${B}, ${real + T}] (cached positions and new${M > 0 ? ', meta tokens not counted' : ''}), found [${attentionMask.shape.join(', ')}]`, {
        field: 'attentionMask',
        expected: [B, real + T],
        found: attentionMask.shape.slice(),
      });
    }
    const kv: LayerContext['kv'] = [];
    try {
      const hidden = tf.tidy(() => {
        const rotaryTables = this.rotary?.cosSin({ offset, length: prepend + T });
        let h = this.embedTokens.forward(ids) as tf.Tensor3D; // [B, T, D]
        if (prepend > 0) {
          const meta = tf.broadcastTo(tf.expandDims(this.memoryTokens!, 0), [B, M, this.spec.hiddenSize]); // [B, M, D]
          h = tf.concat([meta, h], 1) as tf.Tensor3D; // [B, M + T, D]
        }
        const embeddings = h;
        // Meta tokens are never padding: the layers see the mask over every position, meta tokens included.
        const mask = attentionMask == null || M === 0 ? attentionMask : (tf.concat([tf.ones([B, M]), tf.cast(attentionMask, 'float32')], 1) as tf.Tensor2D); // [B, S_total]
        this.layers.forEach((layer, i) => {
          h = layer.forward(h, {
            offset,
            state: cache?.layers[i],
            rotaryTables,
            attentionMask: mask,
            kv,
            kvProducers: this.kvProducers,
            embeddings,
            attentionImplementation: options.implementation,
            scanImplementation: options.scanImplementation,
          }); // [B, T, D]
        });
        const out = this.finalNorm.forward(h) as tf.Tensor3D; // [B, prepend + T, D]
        // The meta tokens' outputs are dropped: only the real tokens have logits.
        return prepend > 0 ? (tf.slice(out, [0, prepend, 0], [B, T, this.spec.hiddenSize]) as tf.Tensor3D) : out; // [B, T, D]
      });
      cache?.advance(prepend + T);
      return hidden;
    } finally {
      for (const shared of kv) if (shared != null) tf.dispose([shared.keys, shared.values]);
    }
  }
}

/** `layers.<i>` as a registered list. */
class LayerList extends Module {
  readonly items: readonly StackLayer[];

  constructor(items: StackLayer[]) {
    super();
    this.items = items;
    items.forEach((item, i) => this.registerModule(String(i), item));
  }
}
