// AttentionCache.truncate / canTruncate: rolling a cache back to fewer positions (what speculative decoding does
// with rejected draft tokens) gives exactly the cache that saw only those positions, and refuses what a sliding
// window has already evicted.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, initBackend } from '@slmkit/core';
import { KVCache, SlidingWindowCache, type AttentionCache } from '../src/index.js';

beforeAll(async () => {
  await initBackend('cpu');
});

/** Keys/values whose every entry is its absolute position, so what a cache holds can be read off. */
function feed(cache: AttentionCache, count: number): void {
  const start = cache.length;
  tf.tidy(() => {
    const pos = tf.reshape(tf.range(start, start + count, 1, 'float32'), [1, 1, count, 1]); // [1, 1, T, 1]
    const keys = tf.tile(pos, [2, 2, 1, 3]) as tf.Tensor4D; // [2, 2, T, 3]
    const values = tf.tile(pos, [2, 2, 1, 5]) as tf.Tensor4D; // [2, 2, T, 5]
    cache.update(keys, values);
  });
}

async function held(cache: AttentionCache): Promise<{ length: number; positions: number[]; keys: number[]; values: number[] }> {
  const { keys, values } = cache.read();
  const out = { length: cache.length, positions: cache.keyPositions, keys: Array.from(await keys.data()), values: Array.from(await values.data()) };
  tf.dispose([keys, values]);
  return out;
}

describe('AttentionCache.truncate', () => {
  it('a KVCache rolled back equals a cache that saw only the kept positions, and keeps decoding', async () => {
    const before = tf.memory().numTensors;
    const cache = new KVCache();
    const reference = new KVCache();
    feed(cache, 9);
    feed(reference, 4);
    expect(cache.canTruncate(4)).toBe(true);
    cache.truncate(4);
    expect(await held(cache)).toEqual(await held(reference));
    feed(cache, 2);
    feed(reference, 2);
    expect(await held(cache)).toEqual(await held(reference));
    cache.truncate(cache.length); // a no-op
    expect(cache.length).toBe(6);
    cache.truncate(0);
    expect(cache.length).toBe(0);
    expect(cache.heldLength).toBe(0);
    cache.dispose();
    reference.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a SlidingWindowCache rolls back while the window still holds what it needs, and refuses after eviction', async () => {
    const before = tf.memory().numTensors;
    const cache = new SlidingWindowCache(4, { prefixLength: 1 });
    feed(cache, 3);
    // 3 seen, 5 held at most: appending 2 evicts nothing, appending 3 evicts position 1 (needed to return to 3).
    expect(cache.canTruncate(3, 2)).toBe(true);
    expect(cache.canTruncate(3, 3)).toBe(false);
    expect(cache.canTruncate(6, 3)).toBe(true);
    expect(cache.canTruncate(4, 2)).toBe(true);
    feed(cache, 2);
    cache.truncate(3);
    const reference = new SlidingWindowCache(4, { prefixLength: 1 });
    feed(reference, 3);
    expect(await held(cache)).toEqual(await held(reference));
    feed(cache, 6);
    feed(reference, 6);
    expect(await held(cache)).toEqual(await held(reference));
    expect(cache.keyPositions).toEqual([0, 5, 6, 7, 8]);
    // Position 4 is gone: 8 (which needs 4..7) cannot come back, 9 (needs 5..8) can.
    expect(cache.canTruncate(8)).toBe(false);
    expect(() => cache.truncate(8)).toThrow(ConfigError);
    expect(cache.length).toBe(9);
    cache.truncate(9);
    expect(cache.length).toBe(9);
    cache.dispose();
    reference.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects a bad length with a ConfigError naming length', () => {
    const cache = new KVCache();
    feed(cache, 3);
    for (const bad of [-1, 4, 1.5, Number.NaN]) {
      expect(cache.canTruncate(bad)).toBe(false);
      expect(() => cache.truncate(bad)).toThrow(/truncate: length must be an integer in \[0, 3\]/);
    }
    cache.dispose();
    expect(cache.canTruncate(0)).toBe(false);
    expect(() => cache.truncate(0)).toThrow(ConfigError);
  });
});
