/**
 * KV caches: explicit objects the caller owns, passes to {@link Attention} calls, inspects and disposes. A growing
 * {@link KVCache}, and a rolling {@link SlidingWindowCache} that never holds more than its window (plus an
 * always-visible prefix).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, tensorStorage } from '@slmkit/core';

/**
 * Keys and values to attend over, with the absolute position of each: what a cache returns, and what a KV-producing
 * layer hands to the layers that share its K/V (see {@link Attention.forwardWithKV}).
 *
 * Whoever receives a `SharedKV` from slmkit owns its tensors (under `tf.tidy` they are disposed with the scope).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { SharedKV } from '@slmkit/attention';
 * const kv: SharedKV = {
 *   keys: tf.zeros([1, 2, 3, 8]) as tf.Tensor4D, // [B, KV, S, Dh]
 *   values: tf.zeros([1, 2, 3, 8]) as tf.Tensor4D, // [B, KV, S, Dv]
 *   keyPositions: [0, 1, 2],
 * };
 * tf.dispose([kv.keys, kv.values]);
 * ```
 */
export interface SharedKV {
  /** Keys `[B, KV, S, Dh]`, positions already rotated. */
  keys: tf.Tensor4D;
  /** Values `[B, KV, S, Dv]`. */
  values: tf.Tensor4D;
  /** The absolute position of each of the `S` keys, ascending. */
  keyPositions: number[];
}

/**
 * The dimensions a cache fixed at its first update.
 *
 * @example
 * ```ts
 * import type { CacheDims } from '@slmkit/attention';
 * const dims: CacheDims = { batch: 1, kvHeads: 2, headDim: 64, valueHeadDim: 64 };
 * ```
 */
export interface CacheDims {
  /** `B`. */
  batch: number;
  /** `KV`, the key/value heads. */
  kvHeads: number;
  /** `Dh`. */
  headDim: number;
  /** `Dv`. */
  valueHeadDim: number;
}

/**
 * Base class of the attention caches. A cache is explicit state the caller owns: it is passed to every call of one
 * attention layer (`{ cache }`), which appends the new keys and values with {@link AttentionCache.update} and
 * attends over what that returns. Stored tensors are `tf.keep`-ed, the replaced ones disposed at once, and
 * {@link AttentionCache.dispose} frees everything (the live tensor count returns to where it was).
 *
 * Every tensor a cache returns ({@link AttentionCache.update}, {@link AttentionCache.read}) is a handle of the
 * caller's own (on the same storage: no copy is made), so disposing it, or a `tf.tidy` around the call, never
 * touches what the cache holds.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { KVCache, type AttentionCache } from '@slmkit/attention';
 * function describe(cache: AttentionCache): string {
 *   return `${cache.length} positions seen, ${cache.heldLength} held`;
 * }
 * const cache = new KVCache();
 * tf.tidy(() => { cache.update(tf.ones([1, 2, 3, 4]) as tf.Tensor4D, tf.ones([1, 2, 3, 4]) as tf.Tensor4D); });
 * console.log(describe(cache)); // "3 positions seen, 3 held"
 * cache.dispose();
 * ```
 */
export abstract class AttentionCache {
  /** Stored keys `[B, KV, held, Dh]`, kept. */
  protected keys: tf.Tensor4D | null = null;
  /** Stored values `[B, KV, held, Dv]`, kept. */
  protected values: tf.Tensor4D | null = null;
  /** The absolute position of each stored key. */
  protected positions: number[] = [];
  /** Absolute positions seen so far. */
  protected seen = 0;
  /**
   * True while `keys` and `values` are the buffers of {@link AttentionCache.appendInPlace}: `[B, KV, capacity, D]`,
   * the held positions in their slots (`slotOf`). They never leave the cache: every other method reads copies of the
   * held positions, or turns the buffers back into exact tensors first ({@link AttentionCache.exact}).
   */
  private buffered = false;
  /** While buffered: the buffer slot of each held position. */
  private slotOf: (position: number) => number = (p) => p;
  private wasDisposed = false;

  /** Absolute positions seen so far; the next token's position. */
  get length(): number {
    return this.seen;
  }

  /** Positions held now (the `S` of {@link AttentionCache.read}). */
  get heldLength(): number {
    return this.positions.length;
  }

  /** The absolute positions held now, ascending (a copy). */
  get keyPositions(): number[] {
    return this.positions.slice();
  }

  /** `B`, `KV`, `Dh` and `Dv`, fixed by the first update; `undefined` while empty. */
  get dims(): CacheDims | undefined {
    if (this.keys == null || this.values == null) return undefined;
    const [batch, kvHeads, , headDim] = this.keys.shape;
    return { batch, kvHeads, headDim, valueHeadDim: this.values.shape[3] };
  }

  /** Whether {@link AttentionCache.dispose} was called. */
  get isDisposed(): boolean {
    return this.wasDisposed;
  }

  /** Bytes of tensor storage held now (after in-place appends, the buffers' whole capacity). */
  get byteSize(): number {
    return ((this.keys?.size ?? 0) + (this.values?.size ?? 0)) * 4;
  }

  /**
   * Throws a {@link @slmkit/core!ShapeError | ShapeError} unless new keys `[batch, kvHeads, T, headDim]` and values `[.., valueHeadDim]` fit
   * what is stored. {@link Attention} calls this before computing anything.
   */
  checkCompatible(batch: number, kvHeads: number, headDim: number, valueHeadDim: number): void {
    this.checkAlive();
    const d = this.dims;
    if (d == null) return;
    const found = [batch, kvHeads, headDim, valueHeadDim];
    const held = [d.batch, d.kvHeads, d.headDim, d.valueHeadDim];
    if (found.some((x, i) => x !== held[i])) {
      throw new ShapeError(
        `${this.constructor.name}: new keys/values have [B, KV, Dh, Dv] = [${found.join(', ')}] but the cache holds [${held.join(', ')}]`,
        { field: 'cache', expected: held, found },
      );
    }
  }

  /**
   * Appends new keys `[B, KV, T, Dh]` and values `[B, KV, T, Dv]` at positions `length … length + T − 1`, and returns
   * everything the new queries may attend over: what was held plus all `T` new positions. The caller owns the
   * returned tensors; the arguments are not disposed.
   *
   * @throws ShapeError when the shapes are not rank 4, disagree with each other or with what is stored.
   */
  update(keys: tf.Tensor4D, values: tf.Tensor4D): SharedKV {
    this.checkNew(keys, values, 'update');
    this.exact();
    const T = keys.shape[2];
    const newPositions = Array.from({ length: T }, (_, t) => this.seen + t);
    const allPositions = [...this.positions, ...newPositions];
    const keep = this.retained(allPositions);
    const out = tf.tidy(() => {
      const allK = this.keys == null ? keys : tf.concat([this.keys, keys], 2); // [B, KV, held + T, Dh]
      const allV = this.values == null ? values : tf.concat([this.values, values], 2); // [B, KV, held + T, Dv]
      const pick = (x: tf.Tensor4D): tf.Tensor4D => (keep.length === allPositions.length ? share(x) : selectPositions(x, keep));
      // The caller gets the concatenation itself (a handle of its own, made here); only a first update, which has
      // nothing to concatenate, hands back new handles on the caller's own tensors.
      const own = (x: tf.Tensor4D): tf.Tensor4D => (x === keys || x === values ? share(x) : x);
      return { allK: own(allK), allV: own(allV), storeK: pick(allK), storeV: pick(allV) };
    });
    this.keys?.dispose();
    this.values?.dispose();
    this.keys = tf.keep(out.storeK) as tf.Tensor4D;
    this.values = tf.keep(out.storeV) as tf.Tensor4D;
    this.positions = keep.map((i) => allPositions[i]);
    this.seen += T;
    return { keys: out.allK as tf.Tensor4D, values: out.allV as tf.Tensor4D, keyPositions: allPositions };
  }

  /**
   * Like {@link AttentionCache.update}, without copying what is held: the new positions are written in place into
   * buffers the cache owns, `[B, KV, capacity, D]`, and those buffers are returned with the position each filled
   * slot holds (`keyPositions`, one per slot: only the first `keyPositions.length` slots count, and a rolling window's
   * slots are not in position order). A {@link KVCache} grows its buffers by a quarter, copying, when full; a
   * {@link SlidingWindowCache} writes each new position over the one leaving the window. The buffers stay the
   * cache's: the caller must not keep, dispose or differentiate them, and only a kernel that reads a prefix of its
   * key axis in any position order can take them (the fused attention kernel, which {@link Attention} runs this way
   * on `cpu` and `wasm` when it needs no keys and values back).
   *
   * Returns `null`, changing nothing, where it cannot work in place: a backend other than `cpu` and `wasm`, while a
   * gradient tape records (the buffers' later writes would change what the tape saved), or several positions at
   * once that would overwrite keys of a window the first of them still sees. The caller then uses
   * {@link AttentionCache.update}.
   *
   * @throws ShapeError as {@link AttentionCache.update}.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { KVCache } from '@slmkit/attention';
   * await tf.setBackend('cpu');
   * const cache = new KVCache();
   * const k = tf.ones([1, 2, 3, 4]) as tf.Tensor4D; // [B, KV, T, Dh]
   * const kv = cache.appendInPlace(k, k);
   * console.log(kv?.keyPositions, kv!.keys.shape[2] >= 3); // [0, 1, 2] true
   * k.dispose();
   * cache.dispose(); // frees the buffers
   * ```
   */
  appendInPlace(keys: tf.Tensor4D, values: tf.Tensor4D): SharedKV | null {
    this.checkNew(keys, values, 'appendInPlace');
    const T = keys.shape[2];
    const capacity = this.buffered ? this.keys!.shape[2] : 0;
    const layout = this.inPlaceLayout(T, capacity);
    if (layout == null || !inPlaceBackend() || recording()) return null;
    if (!this.buffered || layout.capacity !== capacity) this.rebuffer(layout, keys, values);
    const newPositions = Array.from({ length: T }, (_, t) => this.seen + t);
    const slots = newPositions.map(layout.slotOf);
    writeSlots(this.keys!, keys, slots);
    writeSlots(this.values!, values, slots);
    const all = [...this.positions, ...newPositions];
    this.positions = this.retained(all).map((i) => all[i]);
    this.seen += T;
    // What the kernel reads: the filled slots, a prefix of the buffers, and the position each one holds.
    const slotPositions: number[] = [];
    for (const p of this.positions) slotPositions[layout.slotOf(p)] = p;
    if (slotPositions.length !== this.positions.length) throw new Error(`${this.constructor.name}.appendInPlace: buffer slots out of step (a bug)`);
    return { keys: this.keys!, values: this.values!, keyPositions: slotPositions };
  }

  /**
   * How {@link AttentionCache.appendInPlace} lays positions out for `T` new ones, given the buffers' `capacity` now
   * (0 before any): the capacity they need and the buffer slot of each position; `null` where it cannot append in
   * place. None by default; {@link KVCache} and {@link SlidingWindowCache} say how. (Not abstract: an abstract
   * member here upsets TypeScript's inference over unions of model caches.)
   */
  protected inPlaceLayout(T: number, capacity: number): { capacity: number; slotOf: (position: number) => number } | null {
    void T;
    void capacity;
    return null;
  }

  /** The slots of the held positions, ascending by position. */
  private heldSlots(): number[] {
    return this.positions.map(this.slotOf);
  }

  /** Turns in-place buffers back into exact tensors `[B, KV, held, D]` (copies of the held positions, in order). */
  private exact(): void {
    if (!this.buffered) return;
    const slots = this.heldSlots();
    const cut = (buffer: tf.Tensor4D): tf.Tensor4D | null => {
      const copy = slots.length === 0 ? null : (tf.keep(gatherCopy(buffer, slots)) as tf.Tensor4D);
      buffer.dispose();
      return copy;
    };
    this.keys = cut(this.keys!);
    this.values = cut(this.values!);
    this.buffered = false;
  }

  /** Moves what is held into new buffers laid out by `layout` (the held positions into their slots). */
  private rebuffer(layout: { capacity: number; slotOf: (position: number) => number }, keys: tf.Tensor4D, values: tf.Tensor4D): void {
    const from = this.buffered ? this.heldSlots() : this.positions.map((_, i) => i);
    const to = this.positions.map(layout.slotOf);
    const move = (old: tf.Tensor4D | null, like: tf.Tensor4D): tf.Tensor4D => {
      const [B, KV, , D] = like.shape;
      const buffer = tf.keep(tf.zeros([B, KV, layout.capacity, D])) as tf.Tensor4D; // [B, KV, capacity, D]
      if (old != null) {
        copySlots(storage(old), old.shape[2], from, storage(buffer), layout.capacity, to, B * KV, D);
        old.dispose();
      }
      return buffer;
    };
    this.keys = move(this.keys, keys);
    this.values = move(this.values, values);
    this.slotOf = layout.slotOf;
    this.buffered = true;
  }

  /** Throws unless `keys` and `values` are new positions that fit each other and what is stored. */
  private checkNew(keys: tf.Tensor4D, values: tf.Tensor4D, method: string): void {
    this.checkAlive();
    const name = `${this.constructor.name}.${method}`;
    if (!(keys instanceof tf.Tensor) || !(values instanceof tf.Tensor) || keys.rank !== 4 || values.rank !== 4) {
      throw new ShapeError(`${name}: keys and values must be rank 4 [B, KV, T, D]`, { field: 'keys', expected: 'rank 4' });
    }
    const [B, KV, T, Dh] = keys.shape;
    if (values.shape[0] !== B || values.shape[1] !== KV || values.shape[2] !== T) {
      throw new ShapeError(`${name}: values [${values.shape.join(', ')}] must match keys [${keys.shape.join(', ')}] in B, KV and T`, {
        field: 'values',
        expected: [B, KV, T],
        found: values.shape.slice(0, 3),
      });
    }
    if (T === 0) throw new ShapeError(`${name}: no new positions (T = 0)`, { field: 'keys', expected: 'T >= 1', found: 0 });
    this.checkCompatible(B, KV, Dh, values.shape[3]);
  }

  /**
   * What is stored now, for a layer that shares this cache's K/V. The caller owns the returned tensors.
   *
   * @throws ConfigError when the cache is empty or disposed.
   */
  read(): SharedKV {
    this.checkAlive();
    const held = this.positions.length;
    if (this.keys == null || this.values == null || held === 0) {
      throw new ConfigError(`${this.constructor.name}.read: the cache is empty (run the producing layer first)`, {
        field: 'cache',
        expected: 'a cache with at least one position',
        found: 0,
      });
    }
    if (this.buffered) {
      const slots = this.heldSlots();
      return { keys: gatherCopy(this.keys, slots), values: gatherCopy(this.values, slots), keyPositions: this.positions.slice() };
    }
    return { keys: share(this.keys), values: share(this.values), keyPositions: this.positions.slice() };
  }

  /**
   * Reads the cache's state back to JavaScript (an asynchronous download): plain numbers and `Float32Array`s that
   * can be saved (structured clone, or the arrays' bytes) and given to {@link AttentionCache.restore}.
   */
  async snapshot(): Promise<CacheSnapshot> {
    this.checkAlive();
    const held = this.positions.length;
    const read = async (t: tf.Tensor4D | null) => {
      if (t == null || (this.buffered && held === 0)) return null;
      if (this.buffered) return { shape: [t.shape[0], t.shape[1], held, t.shape[3]], data: gatherArray(t, this.heldSlots()) };
      return { shape: t.shape.slice(), data: (await t.data()) as Float32Array };
    };
    return { ...this.settings(), length: this.seen, keyPositions: this.positions.slice(), keys: await read(this.keys), values: await read(this.values) };
  }

  /**
   * Whether {@link AttentionCache.truncate | truncate(length)} can bring this cache back to the state of one that
   * saw only the first `length` positions: now (`appended` 0), or after `appended` more positions have gone in. A
   * {@link KVCache} always can; a {@link SlidingWindowCache} can while every position that state holds is still held
   * (a position that rolled out of the window is gone), so it can no longer roll back far once it has evicted.
   * Speculative decoding asks this before a step to decide whether it needs a clone to roll back to.
   *
   * @param length - the positions to keep, `0 ≤ length ≤ this.length + appended`.
   * @param appended - positions to be appended first (default 0).
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { KVCache, SlidingWindowCache } from '@slmkit/attention';
   * const full = new KVCache(), window = new SlidingWindowCache(4);
   * tf.tidy(() => {
   *   for (const c of [full, window]) c.update(tf.ones([1, 1, 6, 2]) as tf.Tensor4D, tf.ones([1, 1, 6, 2]) as tf.Tensor4D);
   * });
   * console.log(full.canTruncate(3), window.canTruncate(3), window.canTruncate(6, 2)); // true false false
   * full.dispose();
   * window.dispose();
   * ```
   */
  canTruncate(length: number, appended = 0): boolean {
    if (this.wasDisposed || !Number.isInteger(length) || !Number.isInteger(appended) || appended < 0) return false;
    if (length < 0 || length > this.seen + appended) return false;
    const extra = Array.from({ length: appended }, (_, t) => this.seen + t);
    const after = [...this.positions, ...extra];
    const held = new Set(this.retained(after).map((i) => after[i]));
    const range = Array.from({ length }, (_, p) => p);
    return this.retained(range).every((i) => held.has(range[i]));
  }

  /**
   * Rolls the cache back to the state of one that saw only the first `length` positions: later positions are
   * dropped, `length` becomes `length`. What speculative decoding does with the positions of rejected draft tokens.
   * The dropped keys and values are freed.
   *
   * @throws {@link @slmkit/core!ConfigError | ConfigError} when the cache was disposed, `length` is not an integer in
   *   `[0, this.length]`, or the cache no longer holds a position that state needs (see
   *   {@link AttentionCache.canTruncate}).
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { KVCache } from '@slmkit/attention';
   * const cache = new KVCache();
   * tf.tidy(() => { cache.update(tf.ones([1, 2, 5, 4]) as tf.Tensor4D, tf.ones([1, 2, 5, 4]) as tf.Tensor4D); });
   * cache.truncate(3);
   * console.log(cache.length, cache.keyPositions); // 3 [0, 1, 2]
   * cache.dispose();
   * ```
   */
  truncate(length: number): void {
    this.checkAlive();
    if (!Number.isInteger(length) || length < 0 || length > this.seen) {
      throw new ConfigError(`${this.constructor.name}.truncate: length must be an integer in [0, ${this.seen}], found ${String(length)}`, {
        field: 'length',
        expected: `an integer in [0, ${this.seen}]`,
        found: length,
      });
    }
    if (!this.canTruncate(length)) {
      throw new ConfigError(
        `${this.constructor.name}.truncate: cannot roll back to ${length} positions: positions it needs have left the window (held: ${this.positions[0]}…${this.positions[this.positions.length - 1]})`,
        { field: 'length', expected: 'a length whose positions are still held', found: length },
      );
    }
    if (length === this.seen) return;
    if (this.buffered) {
      // The kept positions stay in their slots; later appends overwrite the others. (A rolling window that has
      // wrapped around can only truncate to its own length, which returned above.)
      this.positions = this.positions.filter((p) => p < length);
      this.seen = length;
      return;
    }
    const kept = this.positions.map((p, i) => [p, i] as const).filter(([p]) => p < length);
    const indices = this.retained(kept.map(([p]) => p)).map((i) => kept[i][1]);
    const old = [this.keys, this.values];
    if (indices.length === 0) {
      this.keys = null;
      this.values = null;
    } else {
      const [keys, values] = tf.tidy(() => [selectPositions(this.keys!, indices), selectPositions(this.values!, indices)]); // [B, KV, kept, D]
      this.keys = tf.keep(keys) as tf.Tensor4D;
      this.values = tf.keep(values) as tf.Tensor4D;
    }
    tf.dispose(old.filter((t): t is tf.Tensor4D => t != null));
    this.positions = indices.map((i) => this.positions[i]);
    this.seen = length;
  }

  /** The kind and constructor settings, for {@link AttentionCache.snapshot}. */
  protected abstract settings(): Pick<CacheSnapshot, 'kind' | 'window' | 'prefixLength'>;

  /** Frees the stored tensors. Safe to call twice; the cache is unusable afterwards. */
  dispose(): void {
    this.keys?.dispose();
    this.values?.dispose();
    this.keys = null;
    this.values = null;
    this.buffered = false;
    this.positions = [];
    this.wasDisposed = true;
  }

  /** Indices into `allPositions` (ascending) to keep after an update. */
  protected abstract retained(allPositions: readonly number[]): number[];

  /**
   * Rebuilds a cache from {@link AttentionCache.snapshot}: a {@link KVCache} or {@link SlidingWindowCache} holding
   * the same positions, keys and values, on the current backend.
   *
   * @throws ConfigError for an unknown kind, or a snapshot whose positions and tensors disagree.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { AttentionCache, KVCache } from '@slmkit/attention';
   * const cache = new KVCache();
   * tf.tidy(() => { cache.update(tf.ones([1, 1, 2, 4]) as tf.Tensor4D, tf.ones([1, 1, 2, 4]) as tf.Tensor4D); });
   * const saved = await cache.snapshot();
   * cache.dispose();
   * const again = AttentionCache.restore(saved);
   * console.log(again.length); // 2
   * again.dispose();
   * ```
   */
  static restore(snapshot: CacheSnapshot): AttentionCache {
    const fail = (msg: string, found: unknown): never => {
      throw new ConfigError(`AttentionCache.restore: ${msg}`, { field: 'snapshot', found });
    };
    if (snapshot == null || typeof snapshot !== 'object') fail('expected a snapshot object', snapshot);
    const { keys, values, keyPositions, length } = snapshot;
    if (!Array.isArray(keyPositions) || !Number.isInteger(length) || length < 0) fail('length and keyPositions are malformed', { length });
    if ((keys == null) !== (values == null) || (keys == null && keyPositions.length > 0)) fail('keys and values must both be present (or both null when empty)', null);
    for (const [name, t] of [['keys', keys], ['values', values]] as const) {
      if (t == null) continue;
      const size = t.shape.reduce((a, b) => a * b, 1);
      if (t.shape.length !== 4 || t.shape[2] !== keyPositions.length || size !== t.data.length) {
        fail(`${name} of shape [${t.shape.join(', ')}] and ${t.data.length} values do not fit ${keyPositions.length} positions`, t.shape);
      }
    }
    const cache: AttentionCache =
      snapshot.kind === 'kv'
        ? new KVCache()
        : snapshot.kind === 'sliding-window'
          ? new SlidingWindowCache(snapshot.window as number, { prefixLength: snapshot.prefixLength })
          : fail(`unknown kind ${JSON.stringify(snapshot.kind)} (expected "kv" or "sliding-window")`, snapshot.kind);
    return cache.load(snapshot);
  }

  /** Loads a snapshot's tensors and positions into this (fresh) cache. */
  protected load(s: CacheSnapshot): this {
    this.keys = s.keys == null ? null : (tf.keep(tf.tensor4d(s.keys.data, s.keys.shape as [number, number, number, number])) as tf.Tensor4D);
    this.values = s.values == null ? null : (tf.keep(tf.tensor4d(s.values.data, s.values.shape as [number, number, number, number])) as tf.Tensor4D);
    this.positions = s.keyPositions.slice();
    this.seen = s.length;
    return this;
  }

  /** Copies the state into `target` (a fresh cache of the same kind); the copy owns its own tensor handles. */
  protected copyInto<C extends AttentionCache>(target: C): C {
    this.checkAlive();
    const held = this.positions.length;
    const copy = (t: tf.Tensor4D | null): tf.Tensor4D | null => {
      if (t == null || (this.buffered && held === 0)) return null;
      return tf.keep(this.buffered ? gatherCopy(t, this.heldSlots()) : share(t)) as tf.Tensor4D; // never the buffers themselves
    };
    target.keys = copy(this.keys);
    target.values = copy(this.values);
    target.positions = this.positions.slice();
    target.seen = this.seen;
    return target;
  }

  /** An independent copy (for beam search or speculative decoding); dispose it separately. */
  abstract clone(): AttentionCache;

  private checkAlive(): void {
    if (this.wasDisposed) {
      throw new ConfigError(`${this.constructor.name}: used after dispose()`, { field: 'cache', expected: 'a live cache', found: 'disposed' });
    }
  }
}

/**
 * A new handle on the same storage: what a cache hands out or keeps beside the caller's copy. A reshape to the same
 * shape, because tfjs's `clone` copies the data on `wasm` (its Identity kernel), while a reshape only counts one
 * more reference there and on the other backends.
 */
function share(x: tf.Tensor4D): tf.Tensor4D {
  return tf.reshape(x, x.shape);
}

/** Picks the positions at `indices` (ascending) along axis 2, as contiguous slices. */
function selectPositions(x: tf.Tensor4D, indices: number[]): tf.Tensor4D {
  const runs: [number, number][] = [];
  for (const i of indices) {
    const last = runs[runs.length - 1];
    if (last != null && last[0] + last[1] === i) last[1]++;
    else runs.push([i, 1]);
  }
  const [B, KV, , D] = x.shape;
  const parts = runs.map(([start, n]) => tf.slice(x, [0, 0, start, 0], [B, KV, n, D])); // [B, KV, n, D] each
  return (parts.length === 1 ? parts[0] : tf.concat(parts, 2)) as tf.Tensor4D; // [B, KV, kept, D]
}

/**
 * The buffer capacity for `need` slots, given `capacity` now: unchanged while it fits, else `need` and a quarter to
 * spare in whole 64s (so appends copy what is held only now and then), at most `most`.
 */
function room(need: number, capacity: number, most: number): number {
  if (need <= capacity) return capacity;
  return Math.min(most, Math.ceil((need + (need >> 2)) / 64) * 64);
}

/** The current backend's own storage of `t`: writing to it changes `t` in place (only the cache's buffers). */
function storage(t: tf.Tensor): Float32Array {
  return tensorStorage(tf.backend(), t);
}

/** Whether the current backend keeps tensors in arrays appendInPlace can write to (cpu's arrays, wasm's heap). */
function inPlaceBackend(): boolean {
  const name = tf.getBackend();
  return name === 'cpu' || name === 'wasm';
}

/** Whether a gradient tape is recording (it would keep the buffers as they are now). */
function recording(): boolean {
  return (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;
}

/**
 * Copies, in each of `rows` blocks, the position rows at slots `fromSlots` of `from` (blocks of `fromLength` rows of
 * `D` floats) to slots `toSlots` of `to` (blocks of `toLength`); runs of consecutive slots go as one copy.
 */
function copySlots(from: Float32Array, fromLength: number, fromSlots: readonly number[], to: Float32Array, toLength: number, toSlots: readonly number[], rows: number, D: number): void {
  for (let i = 0; i < fromSlots.length; ) {
    let n = 1;
    while (i + n < fromSlots.length && fromSlots[i + n] === fromSlots[i] + n && toSlots[i + n] === toSlots[i] + n) n++;
    for (let r = 0; r < rows; r++) {
      const at = (r * fromLength + fromSlots[i]) * D;
      to.set(from.subarray(at, at + n * D), (r * toLength + toSlots[i]) * D);
    }
    i += n;
  }
}

/** Writes `src` `[B, KV, T, D]` into `buffer` `[B, KV, capacity, D]`, position `t` at slot `slots[t]`, in place. */
function writeSlots(buffer: tf.Tensor4D, src: tf.Tensor4D, slots: readonly number[]): void {
  const [B, KV, T, D] = src.shape;
  copySlots(storage(src), T, Array.from({ length: T }, (_, t) => t), storage(buffer), buffer.shape[2], slots, B * KV, D);
}

/** The rows at `slots` of `buffer` `[B, KV, capacity, D]`, in that order, as a new array `[B, KV, slots, D]`. */
function gatherArray(buffer: tf.Tensor4D, slots: readonly number[]): Float32Array {
  const [B, KV, capacity, D] = buffer.shape;
  const out = new Float32Array(B * KV * slots.length * D);
  copySlots(storage(buffer), capacity, slots, out, slots.length, slots.map((_, i) => i), B * KV, D);
  return out;
}

/** The rows at `slots` of `buffer` as a tensor of its own (never a view of the buffer's storage). */
function gatherCopy(buffer: tf.Tensor4D, slots: readonly number[]): tf.Tensor4D {
  const [B, KV, , D] = buffer.shape;
  return tf.tensor4d(gatherArray(buffer, slots), [B, KV, slots.length, D]); // [B, KV, held, D]
}

/**
 * The growing cache of full attention: keeps every position. Each update concatenates the new positions and
 * disposes the previous tensors.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Attention, KVCache } from '@slmkit/attention';
 * import { Linear } from '@slmkit/core';
 * const attn = new Attention(
 *   { hiddenSize: 16, numHeads: 4, numKVHeads: 2, headDim: 4 },
 *   { qProj: new Linear(16, 16), kProj: new Linear(16, 8), vProj: new Linear(16, 8), oProj: new Linear(16, 16) },
 * );
 * const cache = new KVCache();
 * const prompt = tf.randomNormal([1, 5, 16]) as tf.Tensor3D;
 * const y0 = attn.forward(prompt, { cache }); // prefill
 * const next = tf.randomNormal([1, 1, 16]) as tf.Tensor3D;
 * const y1 = attn.forward(next, { cache }); // one step at position 5
 * console.log(cache.length, cache.heldLength); // 6 6
 * tf.dispose([prompt, y0, next, y1]);
 * cache.dispose();
 * attn.dispose();
 * ```
 */
export class KVCache extends AttentionCache {
  protected retained(allPositions: readonly number[]): number[] {
    return allPositions.map((_, i) => i);
  }

  /** Position `p` in slot `p`; the buffers grow by a quarter, in whole 64s, when full. */
  protected override inPlaceLayout(T: number, capacity: number): { capacity: number; slotOf: (position: number) => number } | null {
    if (this.heldLength !== this.length) return null; // not positions 0 … length − 1 (cannot happen through the API)
    return { capacity: room(this.length + T, capacity, Infinity), slotOf: (p) => p };
  }

  protected settings(): Pick<CacheSnapshot, 'kind'> {
    return { kind: 'kv' };
  }

  /** An independent copy sharing no tensor handle with this one. */
  clone(): KVCache {
    return this.copyInto(new KVCache());
  }
}

/**
 * Options of {@link SlidingWindowCache}.
 *
 * @example
 * ```ts
 * import type { SlidingWindowCacheOptions } from '@slmkit/attention';
 * const hymba: SlidingWindowCacheOptions = { prefixLength: 128 };
 * ```
 */
export interface SlidingWindowCacheOptions {
  /** Positions `< prefixLength` are kept for good (Hymba's meta tokens); default 0. */
  prefixLength?: number;
}

/**
 * The cache of a sliding-window layer: a rolling buffer that holds at most the last `window` positions (plus the
 * first `prefixLength` positions, which every later query may see), like Mistral's rolling buffer cache (Jiang et al.
 * 2023). Under the window rule `i − j < window`, a query at position `i ≥ length` never sees a dropped key, so
 * decoding through it equals full attention with the same window.
 *
 * Positions are stored in order (oldest first) rather than at `i mod window`; tfjs has no in-place write, so a
 * ring index would save nothing, and ordered keys keep {@link AttentionCache.read} simple to use.
 *
 * A call with more new positions than the window (a long prefill) still attends over all of them: `update`
 * returns everything, and only what is stored is trimmed.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { SlidingWindowCache } from '@slmkit/attention';
 * const cache = new SlidingWindowCache(4, { prefixLength: 1 });
 * tf.tidy(() => {
 *   cache.update(tf.ones([1, 2, 10, 8]) as tf.Tensor4D, tf.ones([1, 2, 10, 8]) as tf.Tensor4D);
 * });
 * console.log(cache.length, cache.keyPositions); // 10 [0, 6, 7, 8, 9]
 * cache.dispose();
 * ```
 */
export class SlidingWindowCache extends AttentionCache {
  /** Positions kept besides the prefix. */
  readonly window: number;
  /** Positions `< prefixLength` are kept for good. */
  readonly prefixLength: number;

  /**
   * @param window - the layer's sliding window (a positive integer).
   * @throws ConfigError when `window` is not a positive integer or `prefixLength` not a non-negative integer.
   */
  constructor(window: number, options: SlidingWindowCacheOptions = {}) {
    super();
    if (typeof window !== 'number' || !Number.isInteger(window) || window <= 0) {
      throw new ConfigError(`SlidingWindowCache: window must be a positive integer, found ${String(window)}`, {
        field: 'window',
        expected: 'a positive integer',
        found: window,
      });
    }
    const prefixLength = options.prefixLength ?? 0;
    if (typeof prefixLength !== 'number' || !Number.isInteger(prefixLength) || prefixLength < 0) {
      throw new ConfigError(`SlidingWindowCache: prefixLength must be a non-negative integer, found ${String(prefixLength)}`, {
        field: 'prefixLength',
        expected: 'a non-negative integer',
        found: prefixLength,
      });
    }
    this.window = window;
    this.prefixLength = prefixLength;
  }

  /** The most positions this cache ever holds: `window + prefixLength`. */
  get capacity(): number {
    return this.window + this.prefixLength;
  }

  /**
   * Mistral's rolling buffer: `prefixLength + window` slots, the prefix's positions in the first ones for good, each
   * later position `p` in slot `prefixLength + (p − prefixLength) mod window`, over the one that left the window.
   * The buffers grow as a {@link KVCache}'s do up to those slots (a short context does not hold a whole window).
   * Several new positions at once go in place only while nothing is overwritten: past that, a later one would
   * overwrite a key an earlier new query still sees.
   */
  protected override inPlaceLayout(T: number, capacity: number): { capacity: number; slotOf: (position: number) => number } | null {
    const { prefixLength: prefix, window } = this;
    if (T > 1 && this.length + T > this.capacity) return null;
    return { capacity: room(this.length + T, capacity, this.capacity), slotOf: (p) => (p < prefix ? p : prefix + ((p - prefix) % window)) };
  }

  protected retained(allPositions: readonly number[]): number[] {
    const prefix: number[] = [];
    const rest: number[] = [];
    allPositions.forEach((p, i) => (p < this.prefixLength ? prefix : rest).push(i));
    return [...prefix, ...rest.slice(Math.max(0, rest.length - this.window))];
  }

  protected settings(): Pick<CacheSnapshot, 'kind' | 'window' | 'prefixLength'> {
    return { kind: 'sliding-window', window: this.window, prefixLength: this.prefixLength };
  }

  /** An independent copy sharing no tensor handle with this one. */
  clone(): SlidingWindowCache {
    return this.copyInto(new SlidingWindowCache(this.window, { prefixLength: this.prefixLength }));
  }
}

/**
 * The state of an {@link AttentionCache} in plain JavaScript, from {@link AttentionCache.snapshot}.
 *
 * @example
 * ```ts
 * import type { CacheSnapshot } from '@slmkit/attention';
 * function positionsHeld(s: CacheSnapshot): number {
 *   return s.keyPositions.length;
 * }
 * ```
 */
export interface CacheSnapshot {
  /** `kv` for {@link KVCache}, `sliding-window` for {@link SlidingWindowCache}. */
  kind: 'kv' | 'sliding-window';
  /** The window of a sliding-window cache. */
  window?: number;
  /** The kept prefix of a sliding-window cache. */
  prefixLength?: number;
  /** Absolute positions seen. */
  length: number;
  /** The absolute position of each held key. */
  keyPositions: number[];
  /** Keys `[B, KV, held, Dh]`, row-major; null while empty. */
  keys: { shape: number[]; data: Float32Array } | null;
  /** Values `[B, KV, held, Dv]`, row-major; null while empty. */
  values: { shape: number[]; data: Float32Array } | null;
}
