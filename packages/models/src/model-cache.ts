/**
 * `ModelCache`: the decoding state of a whole {@link CausalLM}, one attention cache per layer.
 *
 * @module
 */
import { AttentionCache, KVCache, SlidingWindowCache } from '@slmkit/attention';
import { ConfigError } from '@slmkit/core';

/**
 * The key/value caches of every layer of a model: a `SlidingWindowCache` (a rolling buffer of the window's last
 * positions) for a sliding-window layer, a growing `KVCache` otherwise. Made by `CausalLM.createCache()`, passed to
 * each `forward` (which appends the new positions), owned by the caller, and freed with {@link ModelCache.dispose}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { CausalLM, configFromHF } from '@slmkit/models';
 * const model = new CausalLM(configFromHF({
 *   model_type: 'mistral', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
 *   num_attention_heads: 4, num_key_value_heads: 2, sliding_window: 4,
 * }));
 * const cache = model.createCache();
 * const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6]], undefined, 'int32');
 * const logits = model.forward(ids, { cache });
 * console.log(cache.length, cache.layers[0].heldLength); // 6 4
 * tf.dispose([ids, logits]);
 * cache.dispose();
 * model.dispose();
 * ```
 */
export class ModelCache {
  /** One cache per layer, layer `i` at index `i`. */
  readonly layers: readonly AttentionCache[];

  /**
   * @param layers - one attention cache per layer; the model cache takes them over ({@link ModelCache.dispose}
   *   frees them).
   * @throws `ConfigError` when the list is empty or the caches disagree on how many positions they have seen.
   */
  constructor(layers: readonly AttentionCache[]) {
    if (!Array.isArray(layers) || layers.length === 0 || !layers.every((c) => c instanceof AttentionCache)) {
      throw new ConfigError('ModelCache: layers must be a non-empty list of AttentionCache', {
        field: 'layers',
        expected: 'AttentionCache[]',
        found: Array.isArray(layers) ? layers.length : typeof layers,
      });
    }
    const lengths = new Set(layers.map((c) => c.length));
    if (lengths.size > 1) {
      throw new ConfigError(`ModelCache: every layer's cache must have seen the same positions, found lengths ${[...lengths].join(', ')}`, {
        field: 'layers',
        expected: 'equal lengths',
        found: [...lengths],
      });
    }
    this.layers = Object.freeze(layers.slice());
  }

  /**
   * Builds the caches for a list of per-layer sliding windows (null: full attention).
   *
   * @example
   * ```ts
   * import { ModelCache } from '@slmkit/models';
   * const cache = ModelCache.forWindows([null, 4096, null]);
   * console.log(cache.layers.map((c) => c.constructor.name)); // ["KVCache", "SlidingWindowCache", "KVCache"]
   * cache.dispose();
   * ```
   */
  static forWindows(windows: readonly (number | null)[]): ModelCache {
    return new ModelCache(windows.map((w) => (w == null ? new KVCache() : new SlidingWindowCache(w))));
  }

  /** Positions seen so far: the position of the next token. */
  get length(): number {
    return this.layers[0].length;
  }

  /** Bytes of key/value storage held now, over every layer. */
  get byteSize(): number {
    return this.layers.reduce((s, c) => s + c.byteSize, 0);
  }

  /** Whether {@link ModelCache.dispose} was called. */
  get isDisposed(): boolean {
    return this.layers[0].isDisposed;
  }

  /** An independent copy (for beam search or speculative decoding); dispose it separately. */
  clone(): ModelCache {
    return new ModelCache(this.layers.map((c) => c.clone()));
  }

  /**
   * Whether {@link ModelCache.truncate | truncate(length)} is possible now, or after `appended` more positions:
   * true when every layer's cache can (see `AttentionCache.canTruncate`; a sliding-window layer cannot once it has
   * evicted a position that state needs).
   *
   * @example
   * ```ts
   * import { ModelCache } from '@slmkit/models';
   * const cache = ModelCache.forWindows([null, 4]);
   * console.log(cache.canTruncate(1, 3), cache.canTruncate(1, 5)); // true false
   * cache.dispose();
   * ```
   */
  canTruncate(length: number, appended = 0): boolean {
    return this.layers.every((c) => c.canTruncate(length, appended));
  }

  /**
   * Rolls every layer back to the state after the first `length` positions (speculative decoding drops the
   * positions of rejected draft tokens this way).
   *
   * @throws `ConfigError` when a layer cannot (see {@link ModelCache.canTruncate}); no layer is changed then.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { CausalLM, configFromHF } from '@slmkit/models';
   * const model = new CausalLM(configFromHF({
   *   model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
   *   num_attention_heads: 4,
   * }));
   * const cache = model.createCache();
   * const ids = tf.tensor2d([[1, 2, 3, 4, 5]], undefined, 'int32');
   * tf.dispose(model.forward(ids, { cache }));
   * cache.truncate(3); // as if only [1, 2, 3] had been fed
   * console.log(cache.length); // 3
   * tf.dispose(ids);
   * cache.dispose();
   * model.dispose();
   * ```
   */
  truncate(length: number): void {
    const stuck = this.layers.findIndex((c) => !c.canTruncate(length));
    if (stuck >= 0) this.layers[stuck].truncate(length); // throws the layer's error, naming the reason
    for (const c of this.layers) c.truncate(length);
  }

  /** Frees every layer's tensors. Safe to call twice. */
  dispose(): void {
    for (const c of this.layers) c.dispose();
  }
}
