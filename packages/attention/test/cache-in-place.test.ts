// KV caches appended in place (AttentionCache.appendInPlace, what the fused path of the block uses on cpu and wasm):
// every observable of the cache equals a cache fed the same positions through update(), across buffer growth,
// clones, roll-backs and a mix of both kinds of append; tensors handed out never change afterwards; where it cannot
// work in place (a sliding window, a recording tape) it declines and changes nothing.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '@slmkit/core';
import { AttentionCache, KVCache, SlidingWindowCache } from '../src/index.js';
import { build, type Case } from './build.js';
import { disposeAll, expectClose, randn, take } from './helpers.js';

afterAll(async () => {
  await initBackend('cpu');
});

const [B, KV, Dh, Dv] = [2, 3, 4, 5];

/** New keys and values for `T` positions, distinct per `seed`. */
function rows(T: number, seed: number): [tf.Tensor4D, tf.Tensor4D] {
  return [tf.tensor4d(randn(B * KV * T * Dh, seed), [B, KV, T, Dh]), tf.tensor4d(randn(B * KV * T * Dv, seed + 1), [B, KV, T, Dv])];
}

/** Appends through `appendInPlace` (which must accept) or `update`. */
function append(cache: AttentionCache, T: number, seed: number, inPlace: boolean): void {
  const [k, v] = rows(T, seed);
  if (inPlace) {
    const kv = cache.appendInPlace(k, v);
    expect(kv, 'appendInPlace accepted').not.toBeNull();
    expect([...kv!.keyPositions].sort((a, b) => a - b)).toEqual(cache.keyPositions); // slot order, the positions held
    expect(kv!.keys.shape[2]).toBeGreaterThanOrEqual(cache.heldLength);
  } else {
    const kv = cache.update(k, v);
    disposeAll(kv.keys, kv.values);
  }
  disposeAll(k, v);
}

/** What `cache` holds, read back: keys, values (via read() and via snapshot()) and positions. */
async function contents(cache: AttentionCache) {
  const r = cache.read();
  const snap = await cache.snapshot();
  const out = { keys: await take(r.keys), values: await take(r.values), shape: r.keys.shape, positions: r.keyPositions, length: cache.length };
  expect(Array.from(snap.keys!.data)).toEqual(out.keys);
  expect(Array.from(snap.values!.data)).toEqual(out.values);
  expect(snap.keys!.shape).toEqual(out.shape);
  disposeAll(r.keys, r.values);
  return out;
}

async function expectSame(got: AttentionCache, want: AttentionCache, what: string): Promise<void> {
  const [g, w] = [await contents(got), await contents(want)];
  expect(g.shape, what).toEqual(w.shape);
  expect(g.positions, what).toEqual(w.positions);
  expect(g.length, what).toBe(w.length);
  expectClose(g.keys, w.keys, 0, `${what}: keys`);
  expectClose(g.values, w.values, 0, `${what}: values`);
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`AttentionCache.appendInPlace on ${backend}`, () => {
    it('equals update() through growth, clones, roll-backs and mixed appends; hands out copies; leaks nothing', async () => {
      await initBackend(backend);
      const before = tf.memory().numTensors;
      const fast = new KVCache();
      const ref = new KVCache();
      // A prefill, then single positions across two growths of the buffers (capacity 64, then 128).
      append(fast, 7, 1, true);
      append(ref, 7, 1, false);
      const early = fast.read(); // must never change, whatever is written later
      const earlyKeys = Array.from(await early.keys.data());
      for (let t = 0; t < 70; t++) {
        append(fast, 1, 10 + t, true);
        append(ref, 1, 10 + t, false);
      }
      await expectSame(fast, ref, 'after growth');
      expect(fast.byteSize).toBeGreaterThanOrEqual(ref.byteSize); // the buffers' spare room counts

      // A clone is independent of its source in both directions.
      const copy = fast.clone();
      const refCopy = ref.clone();
      append(fast, 2, 200, true);
      append(ref, 2, 200, false);
      append(copy, 3, 300, true);
      append(refCopy, 3, 300, false);
      await expectSame(fast, ref, 'source after the clone appends');
      await expectSame(copy, refCopy, 'clone');

      // Roll back (cheap on buffers: later appends overwrite), append other rows, then mix in update().
      fast.truncate(40);
      ref.truncate(40);
      append(fast, 5, 400, true);
      append(ref, 5, 400, false);
      await expectSame(fast, ref, 'after truncate and append');
      append(fast, 2, 500, false); // update() on a buffered cache
      append(ref, 2, 500, false);
      append(fast, 1, 600, true); // and in place again
      append(ref, 1, 600, false);
      await expectSame(fast, ref, 'after mixed appends');
      fast.truncate(0);
      ref.truncate(0);
      expect(() => fast.read()).toThrow(/empty/);
      append(fast, 2, 700, true);
      append(ref, 2, 700, false);
      await expectSame(fast, ref, 'after truncate(0)');

      // The early read, and snapshots restored, are untouched copies.
      expect(Array.from(await early.keys.data())).toEqual(earlyKeys);
      const restored = AttentionCache.restore(await fast.snapshot());
      await expectSame(restored, ref, 'restored');
      disposeAll(early.keys, early.values);
      for (const c of [fast, ref, copy, refCopy, restored]) c.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });

    it('a sliding window rolls over its slots in place (Mistral\'s buffer): equal to update() through wrap-arounds', async () => {
      await initBackend(backend);
      const before = tf.memory().numTensors;
      const fast = new SlidingWindowCache(5, { prefixLength: 2 });
      const ref = new SlidingWindowCache(5, { prefixLength: 2 });
      append(fast, 3, 1, true); // nothing overwritten yet: several at once is fine
      append(ref, 3, 1, false);
      fast.truncate(2); // no wrap yet: a roll-back is possible
      ref.truncate(2);
      for (let t = 0; t < 13; t++) {
        append(fast, 1, 30 + t, true); // past capacity 7, each new position overwrites the one leaving the window
        append(ref, 1, 30 + t, false);
        await expectSame(fast, ref, `after position ${fast.length - 1}`);
      }
      const [k1, v1] = rows(1, 90);
      const kv = fast.appendInPlace(k1, v1);
      disposeAll(k1, v1);
      append(ref, 1, 90, false);
      // Slot order: the prefix, then position p in slot 2 + (p − 2) mod 5 (held: 11 … 15).
      expect(kv!.keyPositions).toEqual([0, 1, 12, 13, 14, 15, 11]);
      expect([...kv!.keyPositions].sort((a, b) => a - b)).toEqual(fast.keyPositions);
      const copy = fast.clone();
      await expectSame(copy, ref, 'clone');
      // Two positions at once would overwrite a key the first of them still sees: declined, then update() works.
      const [k2, v2] = rows(2, 95);
      expect(fast.appendInPlace(k2, v2)).toBeNull();
      disposeAll(k2, v2);
      append(fast, 2, 95, false);
      append(ref, 2, 95, false);
      await expectSame(fast, ref, 'after update() on a rolled buffer');
      // A window longer than the first buffers: they grow (64, then the whole 2 + 100 slots) before rolling.
      const long = new SlidingWindowCache(100, { prefixLength: 2 });
      const longRef = new SlidingWindowCache(100, { prefixLength: 2 });
      for (let t = 0; t < 150; t++) {
        append(long, 1, 1000 + t, true);
        append(longRef, 1, 1000 + t, false);
        if ([1, 63, 64, 65, 101, 102, 103, 149].includes(t)) await expectSame(long, longRef, `long window, position ${t}`);
      }
      expect(long.byteSize).toBe(B * KV * 102 * (Dh + Dv) * 4); // keys and values grown to the 102 slots, no further
      for (const c of [fast, ref, copy, long, longRef]) c.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });

    it('declines (null, nothing changed) while a gradient tape records', async () => {
      await initBackend(backend);
      const [k, v] = rows(2, 1);
      const cache = new KVCache();
      let declined: unknown;
      tf.grad((x: tf.Tensor) => {
        declined = cache.appendInPlace(k, v);
        return tf.sum(x);
      })(tf.scalar(1)).dispose();
      expect(declined).toBeNull();
      expect(cache.length).toBe(0);
      expect(() => cache.appendInPlace(k, tf.zeros([B, KV, 3, Dv]) as tf.Tensor4D)).toThrow(/values \[2, 3, 3, 5\] must match keys/);
      disposeAll(k, v);
      cache.dispose();
    });

    it('the block decodes through it with the fused kernel (equal to the naive block) and not when it must return K/V', async () => {
      await initBackend(backend);
      const c: Case = { B: 1, T: 9, D: 12, H: 4, KV: 2, Dh: 4, rotary: { base: 100 } };
      const { attn, x } = build(c);
      const { tensor } = x(c.B, c.T, 3);
      const full = await take(attn.forward(tensor, { implementation: 'naive' }));
      const cache = new KVCache();
      const spy = vi.spyOn(cache, 'appendInPlace');
      const before = tf.memory().numTensors;
      for (let t = 0; t < c.T; t++) {
        const xt = tf.slice(tensor, [0, t, 0], [1, 1, c.D]) as tf.Tensor3D;
        const got = await take(attn.forward(xt, { cache, implementation: 'fused' }));
        expectClose(got, full.slice(t * c.D, (t + 1) * c.D), 1e-5, `token ${t}`);
        xt.dispose();
        if (t === 0) expect(tf.memory().numTensors).toBe(before + 2); // the cache's two buffers
      }
      expect(tf.memory().numTensors).toBe(before + 2);
      expect(spy.mock.results.every((r) => r.value != null)).toBe(true);
      expect(spy).toHaveBeenCalledTimes(c.T);
      // forwardWithKV hands keys and values back: they come from update(), never the buffers.
      spy.mockClear();
      const xt = tf.slice(tensor, [0, 0, 0], [1, 1, c.D]) as tf.Tensor3D;
      const r = attn.forwardWithKV(xt, { cache, implementation: 'fused' });
      expect(spy).not.toHaveBeenCalled();
      expect(r.kv.keys.shape[2]).toBe(c.T + 1);
      disposeAll(r.output, r.kv.keys, r.kv.values, xt, tensor);
      cache.dispose();
      attn.dispose();
    });
  });
}
