/**
 * Choosing the next token: a seedable RNG, the logits processors of Hugging Face `generate` in their order
 * (repetition penalty, temperature, top-k, top-p), greedy argmax or a draw from the softmax, stop tokens, and a
 * queue that turns per-token callbacks into an async iterator.
 *
 * Everything here is a pure function over one row of logits (a `Float32Array` of length V, the vocabulary), read
 * back from the model once per step: processors return a new row and never change their input. Working on the
 * host keeps sampling exact and identical on every backend, and costs O(V) per token (O(V log V) with top-p),
 * small beside a forward pass.
 *
 * @module
 */
import { ConfigError } from '@slmkit/core';

// ---------------------------------------------------------------------------------------------------------------
// Random numbers

/**
 * A seeded stream of pseudo-random numbers. Not cryptographic: it exists so that sampling is reproducible.
 *
 * @example
 * ```ts
 * import { createRng, type Rng } from '@slmkit/models';
 * const rng: Rng = createRng(42);
 * const u = rng.next(); // in [0, 1)
 * ```
 */
export interface Rng {
  /** A float uniform in [0, 1) with 53 random bits. */
  next(): number;
  /** An integer uniform in [0, 2^32). */
  nextUint32(): number;
}

/** SplitMix32: spreads a 32-bit seed over the generator's 128-bit state (Steele, Lea & Flood 2014, 32-bit form). */
function splitMix32(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x9e3779b9) | 0;
    let t = s ^ (s >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
}

const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k));

/**
 * A seeded random number generator: xoshiro128** (Blackman & Vigna, 2018; period 2^128 − 1) with its state filled
 * from the seed by SplitMix32. Equal seeds give equal streams on every platform, because it uses only 32-bit
 * integer maths (`Math.imul`, shifts).
 *
 * **Not cryptographic**: its output is predictable from a few draws. Use it for sampling, never for secrets.
 *
 * @param seed - any safe integer (negative and above 2^32 too: both halves feed the state).
 * @throws {@link @slmkit/core!ConfigError | ConfigError} unless `seed` is a safe integer.
 *
 * @example
 * ```ts
 * import { createRng } from '@slmkit/models';
 * const a = createRng(7), b = createRng(7);
 * console.log(a.next() === b.next()); // true
 * ```
 */
export function createRng(seed: number): Rng {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) {
    throw new ConfigError(`createRng: seed must be a safe integer, found ${String(seed)}`, {
      field: 'seed',
      expected: 'a safe integer',
      found: seed,
    });
  }
  const low = splitMix32(seed >>> 0);
  const high = splitMix32(Math.floor(seed / 0x1_0000_0000) ^ 0x6a09e667);
  const s = [0, 0, 0, 0].map(() => (low() ^ high()) >>> 0);
  if (!s.some((w) => w !== 0)) s[0] = 1; // the one state xoshiro never leaves
  let [s0, s1, s2, s3] = s as [number, number, number, number];
  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    return result;
  };
  return {
    nextUint32,
    // 27 + 26 bits, the standard construction of a double in [0, 1) from two 32-bit draws.
    next: () => ((nextUint32() >>> 5) * 67108864 + (nextUint32() >>> 6)) / 9007199254740992,
  };
}

/** A seed for callers that gave none: different on every call. */
function randomSeed(): number {
  return Math.floor(Math.random() * 0x1_0000_0000) ^ Date.now();
}

// ---------------------------------------------------------------------------------------------------------------
// Options

/**
 * How to pick each token. With no option set, or `temperature: 0`, decoding is **greedy** (argmax; see
 * {@link isGreedy}); otherwise it samples from the processed softmax.
 *
 * @example
 * ```ts
 * import type { SamplingOptions } from '@slmkit/models';
 * const creative: SamplingOptions = { temperature: 0.8, topP: 0.95, repetitionPenalty: 1.1, seed: 1234 };
 * const greedy: SamplingOptions = {};
 * ```
 */
export interface SamplingOptions {
  /**
   * Divides the logits before the softmax: below 1 sharpens, above 1 flattens. 0 means greedy. Default 1 when
   * sampling (a `topK` or `topP` without a temperature samples at 1, as Hugging Face's `do_sample=True` does).
   */
  temperature?: number;
  /** Keep only the k most likely tokens (and any tied with the k-th). A positive integer. */
  topK?: number;
  /** Nucleus sampling: keep the smallest set of most likely tokens whose probability sums to at least p. In (0, 1]. */
  topP?: number;
  /**
   * CTRL's repetition penalty (Keskar et al., 2019) with Hugging Face's semantics: for every token already in the
   * sequence (prompt included), a logit `l` becomes `l < 0 ? l * p : l / p`, so p > 1 discourages repeats whatever
   * the logit's sign. 1 does nothing. Applied in greedy decoding too.
   */
  repetitionPenalty?: number;
  /** Seed of the sampler's RNG (a safe integer). Without one, every sampler draws differently. */
  seed?: number;
}

function fail(field: string, expected: string, found: unknown): never {
  throw new ConfigError(`sampling: ${field} must be ${expected}, found ${String(found)}`, { field, expected, found });
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Checks {@link SamplingOptions} eagerly: temperature a finite number >= 0, topK a positive integer, topP in (0, 1],
 * repetitionPenalty a finite number > 0, seed a safe integer. Absent (or undefined) options are fine; other keys
 * are ignored, so generation options that extend these pass through.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the field, with the expected and the found value.
 *
 * @example
 * ```ts
 * import { validateSamplingOptions } from '@slmkit/models';
 * validateSamplingOptions({ temperature: 0.7, topK: 50 }); // ok
 * try {
 *   validateSamplingOptions({ topP: 1.5 });
 * } catch (e) {
 *   console.log((e as Error).message); // "sampling: topP must be a number in (0, 1], found 1.5"
 * }
 * ```
 */
export function validateSamplingOptions(options: SamplingOptions): void {
  if (options == null || typeof options !== 'object') fail('options', 'an object', options);
  const { temperature, topK, topP, repetitionPenalty, seed } = options;
  if (temperature !== undefined && !(isNumber(temperature) && temperature >= 0)) {
    fail('temperature', 'a finite number >= 0', temperature);
  }
  if (topK !== undefined && !(Number.isInteger(topK) && topK > 0)) fail('topK', 'a positive integer', topK);
  if (topP !== undefined && !(isNumber(topP) && topP > 0 && topP <= 1)) fail('topP', 'a number in (0, 1]', topP);
  if (repetitionPenalty !== undefined && !(isNumber(repetitionPenalty) && repetitionPenalty > 0)) {
    fail('repetitionPenalty', 'a finite number > 0', repetitionPenalty);
  }
  if (seed !== undefined && !Number.isSafeInteger(seed)) fail('seed', 'a safe integer', seed);
}

/**
 * Whether these options mean greedy decoding: `temperature` is 0, or none of `temperature`, `topK` and `topP` is
 * set. (`repetitionPenalty` and `seed` alone do not turn sampling on; the penalty still applies before the argmax.)
 *
 * @example
 * ```ts
 * import { isGreedy } from '@slmkit/models';
 * console.log(isGreedy({}), isGreedy({ temperature: 0, topK: 5 }), isGreedy({ topK: 5 })); // true true false
 * ```
 */
export function isGreedy(options: SamplingOptions): boolean {
  if (options.temperature === 0) return true;
  return options.temperature === undefined && options.topK === undefined && options.topP === undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Logits processors (each returns a new row)

function checkRow(owner: string, logits: Float32Array): void {
  if (!(logits instanceof Float32Array) || logits.length === 0) {
    throw new ConfigError(`${owner}: logits must be a non-empty Float32Array, found ${logits instanceof Float32Array ? 'an empty one' : typeof logits}`, {
      field: 'logits',
      expected: 'a non-empty Float32Array [V]',
      found: logits,
    });
  }
}

/**
 * Penalises tokens already in the sequence, Hugging Face's `RepetitionPenaltyLogitsProcessor`: each distinct id in
 * `previousTokens` has its logit `l` replaced by `l < 0 ? l * penalty : l / penalty` (once, however often it
 * occurred).
 *
 * @param logits - one row `[V]`.
 * @param previousTokens - the ids so far, prompt included.
 * @param penalty - > 0; 1 returns an unchanged copy.
 * @returns a new row `[V]`.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for a bad penalty or an id outside `[0, V)`.
 *
 * @example
 * ```ts
 * import { applyRepetitionPenalty } from '@slmkit/models';
 * const out = applyRepetitionPenalty(new Float32Array([2, -2, 1]), [0, 1, 1], 2);
 * console.log(Array.from(out)); // [1, -4, 1]
 * ```
 */
export function applyRepetitionPenalty(logits: Float32Array, previousTokens: Iterable<number>, penalty: number): Float32Array {
  checkRow('applyRepetitionPenalty', logits);
  if (!(isNumber(penalty) && penalty > 0)) fail('repetitionPenalty', 'a finite number > 0', penalty);
  const out = logits.slice();
  if (penalty === 1) return out;
  const seen = new Set<number>();
  for (const id of previousTokens) {
    if (!Number.isInteger(id) || id < 0 || id >= logits.length) {
      throw new ConfigError(`applyRepetitionPenalty: token id ${String(id)} is outside the vocabulary [0, ${logits.length})`, {
        field: 'previousTokens',
        expected: `integers in [0, ${logits.length})`,
        found: id,
      });
    }
    if (seen.has(id)) continue;
    seen.add(id);
    const l = logits[id]!;
    out[id] = l < 0 ? l * penalty : l / penalty;
  }
  return out;
}

/**
 * Divides every logit by `temperature` (> 0), Hugging Face's `TemperatureLogitsWarper`. Temperature 0 is greedy
 * decoding and has no row form: use {@link argmax}.
 *
 * @returns a new row `[V]`.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} unless temperature is a finite number > 0.
 *
 * @example
 * ```ts
 * import { applyTemperature } from '@slmkit/models';
 * console.log(Array.from(applyTemperature(new Float32Array([1, 2]), 0.5))); // [2, 4]
 * ```
 */
export function applyTemperature(logits: Float32Array, temperature: number): Float32Array {
  checkRow('applyTemperature', logits);
  if (!(isNumber(temperature) && temperature > 0)) fail('temperature', 'a finite number > 0 (0 is greedy: use argmax)', temperature);
  const out = logits.slice();
  if (temperature !== 1) for (let i = 0; i < out.length; i++) out[i] = out[i]! / temperature;
  return out;
}

/**
 * Keeps the `k` largest logits and sets the rest to -Infinity, Hugging Face's `TopKLogitsWarper`: every logit
 * >= the k-th largest survives, so ties with the k-th are all kept. NaN logits are dropped. `k >= V` keeps all.
 *
 * @returns a new row `[V]`.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} unless k is a positive integer.
 *
 * @example
 * ```ts
 * import { applyTopK } from '@slmkit/models';
 * console.log(Array.from(applyTopK(new Float32Array([0.1, 3, 2, -1]), 2))); // [-Infinity, 3, 2, -Infinity]
 * ```
 */
export function applyTopK(logits: Float32Array, k: number): Float32Array {
  checkRow('applyTopK', logits);
  if (!(Number.isInteger(k) && k > 0)) fail('topK', 'a positive integer', k);
  const out = logits.slice();
  if (k >= logits.length) return out;
  // Typed-array sort is numeric and ascending; NaNs are filtered out first so they cannot be the threshold.
  const sorted = logits.filter((v) => !Number.isNaN(v)).sort();
  if (sorted.length <= k) return out.map((v) => (Number.isNaN(v) ? -Infinity : v));
  const threshold = sorted[sorted.length - k]!;
  for (let i = 0; i < out.length; i++) if (!(out[i]! >= threshold)) out[i] = -Infinity;
  return out;
}

/** How far below p a cumulative probability may fall and still count as reaching it (see applyTopP). */
const TOP_P_TOLERANCE = 1e-6;

/**
 * Nucleus (top-p) filtering (Holtzman et al., 2019), Hugging Face's `TopPLogitsWarper`: sorts tokens by
 * probability (ties by id), keeps the smallest prefix whose probability sums to at least `p`, and always keeps the
 * most likely token. The rest become -Infinity. `p = 1` keeps all. A sum within 1e-6 below p counts as reaching
 * it: float32 logits carry relative errors near 1e-7, which would otherwise decide a boundary that is exactly at p
 * (probabilities 0.5, 0.3, 0.2 and p = 0.8).
 *
 * @returns a new row `[V]`.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} unless p is in (0, 1].
 *
 * @example
 * ```ts
 * import { applyTopP } from '@slmkit/models';
 * // probabilities 0.5, 0.3, 0.2: the first two already reach 0.8
 * const logits = new Float32Array([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
 * console.log(Array.from(applyTopP(logits, 0.8)).map(Number.isFinite)); // [true, true, false]
 * ```
 */
export function applyTopP(logits: Float32Array, p: number): Float32Array {
  checkRow('applyTopP', logits);
  if (!(isNumber(p) && p > 0 && p <= 1)) fail('topP', 'a number in (0, 1]', p);
  const out = logits.slice();
  if (p === 1) return out;
  const probs = softmax(logits);
  const order: number[] = [];
  for (let i = 0; i < probs.length; i++) if (probs[i]! > 0) order.push(i);
  order.sort((a, b) => probs[b]! - probs[a]! || a - b);
  const keep = new Uint8Array(logits.length);
  let before = 0; // probability of the tokens ranked above the current one
  for (const i of order) {
    if (before >= p - TOP_P_TOLERANCE && before > 0) break;
    keep[i] = 1;
    before += probs[i]!;
  }
  for (let i = 0; i < out.length; i++) if (keep[i] === 0) out[i] = -Infinity;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Choosing

/**
 * The softmax of one row in float64, with the maximum subtracted first so that large logits do not overflow.
 * -Infinity and NaN get probability 0. A row with no finite logit has no distribution: every entry is 0.
 *
 * @returns probabilities `[V]` summing to 1 (or all 0).
 *
 * @example
 * ```ts
 * import { softmax } from '@slmkit/models';
 * console.log(Array.from(softmax(new Float32Array([0, Math.log(3)])))); // [0.25, 0.75] (to rounding)
 * ```
 */
export function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  const probs = new Float64Array(logits.length);
  if (!Number.isFinite(max)) return probs;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i]!;
    const e = l > -Infinity ? Math.exp(l - max) : 0; // NaN > -Infinity is false: NaN gets 0 too
    probs[i] = e;
    sum += e;
  }
  for (let i = 0; i < probs.length; i++) probs[i] = probs[i]! / sum;
  return probs;
}

/**
 * The index of the largest logit; ties go to the lowest index (as `torch.argmax`). NaN never wins; a row with no
 * logit above -Infinity gives 0.
 *
 * @example
 * ```ts
 * import { argmax } from '@slmkit/models';
 * console.log(argmax(new Float32Array([1, 5, 5, 2]))); // 1
 * ```
 */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i]! > bestValue) {
      bestValue = logits[i]!;
      best = i;
    }
  }
  return best;
}

/**
 * Draws an index with probability proportional to `probs[i]` (which need not sum exactly to 1), by inverting the
 * cumulative sum at one uniform draw. Zero-probability entries are never drawn.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} if no entry has positive probability.
 *
 * @example
 * ```ts
 * import { createRng, sampleFromProbabilities } from '@slmkit/models';
 * const id = sampleFromProbabilities(new Float64Array([0.1, 0.9]), createRng(0)); // 1 nine times in ten
 * ```
 */
export function sampleFromProbabilities(probs: ArrayLike<number>, rng: Rng): number {
  let total = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i]! > 0) {
      total += probs[i]!;
      last = i;
    }
  }
  if (last < 0) {
    throw new ConfigError('sampleFromProbabilities: no token has positive probability (every logit is -Infinity or NaN)', {
      field: 'probs',
      expected: 'at least one positive probability',
      found: 'none',
    });
  }
  const target = rng.next() * total;
  let cumulative = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i]! > 0) {
      cumulative += probs[i]!;
      if (target < cumulative) return i;
    }
  }
  return last; // rounding left target at the very top of the sum
}

/**
 * Runs the logits processors in Hugging Face's order: repetition penalty, then (when sampling) temperature, top-k
 * and top-p. In greedy mode only the penalty applies; the warpers could not change the argmax.
 *
 * @param logits - one row `[V]` (not modified).
 * @param previousTokens - the ids so far, prompt included (for the repetition penalty).
 * @returns a new row `[V]`.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for invalid options.
 *
 * @example
 * ```ts
 * import { processLogits } from '@slmkit/models';
 * const row = processLogits(new Float32Array([1, 2, 3, 4]), { temperature: 0.5, topK: 2 }, []);
 * console.log(Array.from(row)); // [-Infinity, -Infinity, 6, 8]
 * ```
 */
export function processLogits(logits: Float32Array, options: SamplingOptions, previousTokens: Iterable<number> = []): Float32Array {
  validateSamplingOptions(options);
  checkRow('processLogits', logits);
  let row = logits;
  if (options.repetitionPenalty !== undefined && options.repetitionPenalty !== 1) {
    row = applyRepetitionPenalty(row, previousTokens, options.repetitionPenalty);
  }
  if (!isGreedy(options)) {
    row = applyTemperature(row, options.temperature ?? 1);
    if (options.topK !== undefined) row = applyTopK(row, options.topK);
    if (options.topP !== undefined) row = applyTopP(row, options.topP);
  }
  return row === logits ? logits.slice() : row;
}

/**
 * Picks the next token from one row of logits: {@link processLogits}, then the argmax when greedy, else a draw from
 * the softmax with `rng`.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for invalid options, or when sampling and `rng` is missing.
 *
 * @example
 * ```ts
 * import { createRng, sampleToken } from '@slmkit/models';
 * const logits = new Float32Array([0.5, 2.5, 1.0]);
 * console.log(sampleToken(logits, {})); // 1 (greedy)
 * const id = sampleToken(logits, { temperature: 1, topP: 0.9 }, { rng: createRng(3), previousTokens: [1] });
 * ```
 */
export function sampleToken(
  logits: Float32Array,
  options: SamplingOptions,
  context: { rng?: Rng; previousTokens?: Iterable<number> } = {},
): number {
  const row = processLogits(logits, options, context.previousTokens);
  if (isGreedy(options)) return argmax(row);
  if (context.rng == null) fail('rng', 'an Rng when sampling (see createRng)', context.rng);
  return sampleFromProbabilities(softmax(row), context.rng);
}

/**
 * A token picker with its options validated once and its own RNG, for one generation.
 *
 * @example
 * ```ts
 * import { createSampler, type Sampler } from '@slmkit/models';
 * const sampler: Sampler = createSampler({ temperature: 0.7, seed: 1 });
 * const next = sampler.sample(new Float32Array([0, 1, 2]), [2]);
 * ```
 */
export interface Sampler {
  /** The validated options. */
  readonly options: Readonly<SamplingOptions>;
  /** Whether it decodes greedily ({@link isGreedy}). */
  readonly greedy: boolean;
  /** The next token for one row of logits `[V]`, given the ids so far (prompt included). */
  sample(logits: Float32Array, previousTokens?: Iterable<number>): number;
}

/**
 * Validates `options` and returns a {@link Sampler} whose RNG starts from `options.seed` (or a random seed when
 * there is none): two samplers with the same seed pick the same tokens from the same logits.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the invalid option.
 *
 * @example
 * ```ts
 * import { createSampler } from '@slmkit/models';
 * const a = createSampler({ temperature: 1, topK: 40, seed: 9 });
 * const b = createSampler({ temperature: 1, topK: 40, seed: 9 });
 * const logits = new Float32Array(100).map((_, i) => Math.sin(i));
 * console.log(a.sample(logits) === b.sample(logits)); // true
 * ```
 */
export function createSampler(options: SamplingOptions = {}): Sampler {
  validateSamplingOptions(options);
  const frozen = Object.freeze({ ...options });
  const greedy = isGreedy(frozen);
  const rng = createRng(frozen.seed ?? randomSeed());
  return {
    options: frozen,
    greedy,
    sample: (logits, previousTokens = []) => sampleToken(logits, frozen, { rng, previousTokens }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Stop tokens

/**
 * The stop tokens of a generation, as one set: any mix of single ids, lists and nulls (a config's `eosTokenId`,
 * the tokenizer's eos, the caller's own stops).
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for an entry that is not a token id (an integer >= 0).
 *
 * @example
 * ```ts
 * import { stopTokenSet } from '@slmkit/models';
 * const stops = stopTokenSet([128001, 128009], null, 128008);
 * console.log([...stops]); // [128001, 128009, 128008]
 * ```
 */
export function stopTokenSet(...sources: Array<number | readonly number[] | null | undefined>): Set<number> {
  const set = new Set<number>();
  for (const source of sources) {
    if (source == null) continue;
    for (const id of typeof source === 'number' ? [source] : source) {
      if (!Number.isInteger(id) || id < 0) fail('stopTokens', 'token ids (integers >= 0)', id);
      set.add(id);
    }
  }
  return set;
}

/**
 * Whether `token` ends the generation: it is `stopTokens` (a single id), or one of them (a list or a set). Null or
 * undefined means no stop token.
 *
 * @example
 * ```ts
 * import { isStop } from '@slmkit/models';
 * console.log(isStop(2, [2, 32000]), isStop(5, 2), isStop(5, null)); // true false false
 * ```
 */
export function isStop(token: number, stopTokens: number | readonly number[] | ReadonlySet<number> | null | undefined): boolean {
  if (stopTokens == null) return false;
  if (typeof stopTokens === 'number') return token === stopTokens;
  if (Array.isArray(stopTokens)) return stopTokens.includes(token);
  return (stopTokens as ReadonlySet<number>).has(token);
}

// ---------------------------------------------------------------------------------------------------------------
// Streaming

/**
 * A single-consumer channel: a producer pushes values (one per generated token), a consumer reads them with
 * `for await`. Values pushed before anyone reads are buffered. The producer ends the stream with
 * {@link AsyncQueue.close} or {@link AsyncQueue.fail}; a consumer that stops early (`break`, `return`) sets
 * {@link AsyncQueue.cancelled}, after which `push` returns false so the producer can stop generating.
 *
 * @example
 * ```ts
 * import { AsyncQueue } from '@slmkit/models';
 * const queue = new AsyncQueue<number>();
 * queue.push(1);
 * queue.push(2);
 * queue.close();
 * for await (const id of queue) console.log(id); // 1, then 2
 * ```
 */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly buffer: T[] = [];
  private readonly waiting: Array<{ resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void }> = [];
  private ended = false;
  private error: { value: unknown } | null = null;
  private stopped = false;

  /** True once the producer closed or failed the queue, or the consumer stopped. */
  get closed(): boolean {
    return this.ended || this.stopped;
  }

  /** True once the consumer stopped reading (`break` out of `for await`, or `return()`). */
  get cancelled(): boolean {
    return this.stopped;
  }

  /** Hands `value` to a waiting reader or buffers it; returns false (dropping it) once the queue is closed. */
  push(value: T): boolean {
    if (this.closed) return false;
    const reader = this.waiting.shift();
    if (reader != null) reader.resolve({ value, done: false });
    else this.buffer.push(value);
    return true;
  }

  /** Ends the stream; readers get the buffered values, then `done`. */
  close(): void {
    if (this.closed) return;
    this.ended = true;
    for (const reader of this.waiting.splice(0)) reader.resolve({ value: undefined, done: true });
  }

  /** Ends the stream with an error, thrown to the reader after the buffered values. */
  fail(error: unknown): void {
    if (this.closed) return;
    this.ended = true;
    this.error = { value: error };
    for (const reader of this.waiting.splice(0)) reader.reject(error);
  }

  /** The next value, waiting for the producer when the buffer is empty. */
  next(): Promise<IteratorResult<T>> {
    if (this.buffer.length > 0) return Promise.resolve({ value: this.buffer.shift()!, done: false });
    if (this.error != null) {
      const { value } = this.error;
      this.error = null; // thrown once; later reads see the end
      return Promise.reject(value);
    }
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Stops reading: drops the buffer and marks the queue cancelled. Called by `break` in `for await`. */
  return(): Promise<IteratorResult<T>> {
    this.stopped = true;
    this.buffer.length = 0;
    this.error = null;
    for (const reader of this.waiting.splice(0)) reader.resolve({ value: undefined, done: true });
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}

/**
 * Turns a callback-driven producer into an async iterator, started lazily on the first read. `run` receives
 * `emit`, which returns false once the consumer has stopped (so a generation loop can end early); when `run`'s
 * promise settles the stream ends, with its rejection thrown to the reader (a rejection after the consumer has left
 * has nobody to go to and is dropped). This is how `generate`'s `onToken` callback becomes `stream()`.
 *
 * @example
 * ```ts
 * import { streamFromCallbacks } from '@slmkit/models';
 * const stream = streamFromCallbacks<number>(async (emit) => {
 *   for (let id = 0; id < 5; id++) if (!emit(id)) return; // the consumer left
 * });
 * for await (const id of stream) if (id === 2) break; // 0, 1, 2
 * ```
 */
export function streamFromCallbacks<T>(run: (emit: (value: T) => boolean) => Promise<unknown>): AsyncIterableIterator<T> {
  const queue = new AsyncQueue<T>();
  let started = false;
  const start = (): void => {
    if (started) return;
    started = true;
    let promise: Promise<unknown>;
    try {
      promise = Promise.resolve(run((value) => queue.push(value)));
    } catch (e) {
      promise = Promise.reject(e);
    }
    promise.then(
      () => queue.close(),
      (e: unknown) => queue.fail(e),
    );
  };
  const iterator: AsyncIterableIterator<T> = {
    next: () => {
      start();
      return queue.next();
    },
    return: () => queue.return(),
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}
