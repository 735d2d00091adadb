/**
 * `HybridCache`: the decoding state of a hybrid stack, per layer a KV cache, an SSM state, or both.
 *
 * @module
 */
import { AttentionCache } from '@slmkit/attention';
import { ConfigError } from '@slmkit/core';
import { SsmState } from '@slmkit/ssm';

/**
 * One layer's part of a {@link HybridCache}: the keys and values of its attention (absent for a Mamba layer and
 * for a layer that reads another layer's, see `LayerSpec.kvFrom`), the conv + recurrent state of its SSM (absent
 * for an attention layer), and, for a Zamba layer that applies a shared block, that block's KV cache for this layer.
 *
 * @example
 * ```ts
 * import { KVCache } from '@slmkit/attention';
 * import { SsmState } from '@slmkit/ssm';
 * import type { HybridLayerState } from '@slmkit/hybrid';
 * const hymbaLayer: HybridLayerState = { attention: new KVCache(), ssm: new SsmState() };
 * hymbaLayer.attention?.dispose();
 * hymbaLayer.ssm?.dispose();
 * ```
 */
export interface HybridLayerState {
  /** This layer's own keys and values. */
  attention?: AttentionCache;
  /** This layer's SSM state. */
  ssm?: SsmState;
  /** The keys and values of the shared block this layer applies (Zamba). */
  shared?: AttentionCache;
}

/**
 * The decoding state of a whole hybrid model: one {@link HybridLayerState} per layer, and how many positions
 * (meta tokens included) have gone through. Made by the model's `createCache()`, passed to each forward (which
 * updates it), owned by the caller and freed with {@link HybridCache.dispose}. Attention layers' parts grow with the
 * sequence (sliding-window ones stop at their window); SSM parts have a fixed size.
 *
 * @example
 * ```ts
 * import { KVCache } from '@slmkit/attention';
 * import { SsmState } from '@slmkit/ssm';
 * import { HybridCache } from '@slmkit/hybrid';
 * const cache = new HybridCache([{ ssm: new SsmState() }, { attention: new KVCache() }]);
 * console.log(cache.layers.length, cache.length); // 2 0
 * cache.dispose();
 * ```
 */
export class HybridCache {
  /** One state per layer, layer `i` at index `i`. */
  readonly layers: readonly Readonly<HybridLayerState>[];
  private seen = 0;
  private disposed = false;

  /**
   * @param layers - one state per layer; the cache takes them over.
   * @throws `ConfigError` when the list is empty or an entry holds something else.
   */
  constructor(layers: readonly HybridLayerState[]) {
    const ok =
      Array.isArray(layers) &&
      layers.length > 0 &&
      layers.every(
        (l) =>
          l != null &&
          (l.attention == null || l.attention instanceof AttentionCache) &&
          (l.ssm == null || l.ssm instanceof SsmState) &&
          (l.shared == null || l.shared instanceof AttentionCache),
      );
    if (!ok) {
      throw new ConfigError('HybridCache: layers must be a non-empty list of { attention?, ssm?, shared? } states', {
        field: 'layers',
        expected: 'HybridLayerState[]',
        found: Array.isArray(layers) ? layers.length : typeof layers,
      });
    }
    this.layers = Object.freeze(layers.map((l) => Object.freeze({ ...l })));
  }

  /** Positions seen so far (meta tokens included): the position of the next token. */
  get length(): number {
    return this.seen;
  }

  /** Records that a forward pass appended `count` positions to every layer's state. Internal to the models. */
  advance(count: number): void {
    this.seen += count;
  }

  /** Bytes held now, over every layer. */
  get byteSize(): number {
    let bytes = 0;
    for (const l of this.layers) bytes += (l.attention?.byteSize ?? 0) + (l.ssm?.byteSize ?? 0) + (l.shared?.byteSize ?? 0);
    return bytes;
  }

  /** Whether {@link HybridCache.dispose} was called. */
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** An independent copy (beam search, speculative decoding); dispose it separately. */
  clone(): HybridCache {
    const copy = new HybridCache(
      this.layers.map((l) => {
        const out: HybridLayerState = {};
        if (l.attention != null) out.attention = l.attention.clone();
        if (l.shared != null) out.shared = l.shared.clone();
        if (l.ssm != null) {
          out.ssm = new SsmState();
          if (l.ssm.conv != null && l.ssm.ssm != null) out.ssm.set(l.ssm.conv.clone(), l.ssm.ssm.clone(), l.ssm.length);
        }
        return out;
      }),
    );
    copy.seen = this.seen;
    return copy;
  }

  /**
   * Whether {@link HybridCache.truncate | truncate(length)} is possible now, or after `appended` more positions:
   * every attention part must be able to (a sliding window that evicted a needed position cannot), and an SSM part
   * only allows the current length with nothing appended, since a recurrent state cannot be un-applied. A stack
   * with a Mamba layer therefore rolls back by going on from a {@link HybridCache.clone} taken before.
   *
   * @example
   * ```ts
   * import { KVCache } from '@slmkit/attention';
   * import { SsmState } from '@slmkit/ssm';
   * import { HybridCache } from '@slmkit/hybrid';
   * const attentionOnly = new HybridCache([{ attention: new KVCache() }]);
   * const withMamba = new HybridCache([{ ssm: new SsmState() }, { attention: new KVCache() }]);
   * console.log(attentionOnly.canTruncate(0, 4), withMamba.canTruncate(0, 4)); // true false
   * attentionOnly.dispose();
   * withMamba.dispose();
   * ```
   */
  canTruncate(length: number, appended = 0): boolean {
    if (this.disposed) return false;
    return this.layers.every(
      (l) =>
        (l.ssm == null || (appended === 0 && length === this.seen)) &&
        (l.attention?.canTruncate(length, appended) ?? true) &&
        (l.shared?.canTruncate(length, appended) ?? true),
    );
  }

  /**
   * Rolls every layer back to the state after the first `length` positions (meta tokens included); what
   * speculative decoding does with the positions of rejected draft tokens.
   *
   * @throws `ConfigError` naming `length` when {@link HybridCache.canTruncate} says no; nothing is changed then.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { KVCache } from '@slmkit/attention';
   * import { HybridCache } from '@slmkit/hybrid';
   * const attention = new KVCache();
   * tf.tidy(() => { attention.update(tf.ones([1, 1, 3, 2]) as tf.Tensor4D, tf.ones([1, 1, 3, 2]) as tf.Tensor4D); });
   * const cache = new HybridCache([{ attention }]);
   * cache.advance(3);
   * cache.truncate(1);
   * console.log(cache.length, attention.length); // 1 1
   * cache.dispose();
   * ```
   */
  truncate(length: number): void {
    if (!this.canTruncate(length)) {
      const why = this.layers.some((l) => l.ssm != null) ? 'an SSM state cannot be rolled back (keep a clone() from before)' : 'a sliding window no longer holds the positions that state needs';
      throw new ConfigError(`HybridCache.truncate: cannot roll back from ${this.seen} to ${String(length)} positions: ${why}`, {
        field: 'length',
        expected: `a length this cache can roll back to (at most ${this.seen})`,
        found: length,
      });
    }
    for (const l of this.layers) {
      l.attention?.truncate(length);
      l.shared?.truncate(length);
    }
    this.seen = length;
  }

  /** Frees every layer's tensors. Safe to call twice. */
  dispose(): void {
    for (const l of this.layers) {
      l.attention?.dispose();
      l.ssm?.dispose();
      l.shared?.dispose();
    }
    this.disposed = true;
  }
}
