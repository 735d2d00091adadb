import { describe, expect, it } from 'vitest';
import { ConfigError } from '@slmkit/core';
import {
  AsyncQueue,
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  createRng,
  createSampler,
  isGreedy,
  isStop,
  processLogits,
  sampleFromProbabilities,
  sampleToken,
  softmax,
  stopTokenSet,
  streamFromCallbacks,
  validateSamplingOptions,
  type SamplingOptions,
} from '../src/generation/sampling.js';

const row = (...values: number[]) => new Float32Array(values);
const kept = (logits: Float32Array) => Array.from(logits.keys()).filter((i) => Number.isFinite(logits[i]!));
const logitsOf = (...probs: number[]) => new Float32Array(probs.map(Math.log));

/** Pearson's chi-square statistic of observed counts against probabilities. */
function chiSquare(counts: number[], probs: ArrayLike<number>, n: number): number {
  let stat = 0;
  counts.forEach((c, i) => {
    const expected = probs[i]! * n;
    if (expected > 0) stat += (c - expected) ** 2 / expected;
    else expect(c).toBe(0);
  });
  return stat;
}

function draw(logits: Float32Array, options: SamplingOptions, n: number): number[] {
  const sampler = createSampler(options);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampler.sample(logits)]!++;
  return counts;
}

describe('createRng', () => {
  it('is deterministic for a seed and differs between seeds', () => {
    const a = createRng(42), b = createRng(42), c = createRng(43);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(Array.from({ length: 1000 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 1000 }, () => c.next())).not.toEqual(xs);
    // The upper half of a large seed matters too.
    expect(createRng(2 ** 40 + 5).next()).not.toBe(createRng(5).next());
    expect(createRng(-1).next()).not.toBe(createRng(0xffffffff).next());
  });

  it('keeps its stream stable (pinned values, so a change of algorithm is noticed)', () => {
    const rng = createRng(2024);
    const ints = Array.from({ length: 4 }, () => rng.nextUint32());
    // Computed by an independent Python transcription of SplitMix32 seeding + xoshiro128** (unbounded integers
    // masked to 32 bits), so these also check that the JS int32 arithmetic wraps as intended.
    expect(ints).toEqual([3030751391, 1287850756, 2840886507, 2527079048]);
  });

  it('draws uniform floats in [0, 1)', () => {
    const rng = createRng(1);
    const bins = new Array<number>(10).fill(0);
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const u = rng.next();
      expect(u >= 0 && u < 1).toBe(true);
      bins[Math.floor(u * 10)]!++;
    }
    // 9 degrees of freedom: P(chi2 > 27.88) = 0.001.
    expect(chiSquare(bins, new Array(10).fill(0.1), n)).toBeLessThan(27.88);
  });

  it('rejects seeds that are not safe integers', () => {
    for (const seed of [1.5, Number.NaN, Infinity, 2 ** 60]) expect(() => createRng(seed)).toThrow(ConfigError);
  });
});

describe('logits processors', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen tokens, once each', () => {
    const logits = row(2, -2, 1, 0.5);
    expect(Array.from(applyRepetitionPenalty(logits, [0, 1, 1, 1], 2))).toEqual([1, -4, 1, 0.5]);
    // A penalty below 1 rewards repeats, again whatever the sign.
    expect(Array.from(applyRepetitionPenalty(logits, [0, 1], 0.5))).toEqual([4, -1, 1, 0.5]);
    expect(Array.from(logits)).toEqual([2, -2, 1, 0.5]); // input untouched
    expect(() => applyRepetitionPenalty(logits, [4], 1.2)).toThrow(/outside the vocabulary \[0, 4\)/);
    expect(() => applyRepetitionPenalty(logits, [0], 0)).toThrow(ConfigError);
  });

  it('temperature divides every logit', () => {
    expect(Array.from(applyTemperature(row(1, 2, -3), 0.5))).toEqual([2, 4, -6]);
    expect(Array.from(applyTemperature(row(1, 2, -3), 2))).toEqual([0.5, 1, -1.5]);
    expect(() => applyTemperature(row(1), 0)).toThrow(/greedy/);
  });

  it('top-k keeps the k largest and everything tied with the k-th', () => {
    expect(kept(applyTopK(row(0.1, 3, 2, -1), 2))).toEqual([1, 2]);
    expect(kept(applyTopK(row(1, 3, 3, 2), 1))).toEqual([1, 2]); // a tie at the threshold survives
    expect(kept(applyTopK(row(1, 3, 3, 2), 3))).toEqual([1, 2, 3]);
    expect(kept(applyTopK(row(1, 2), 5))).toEqual([0, 1]);
    expect(kept(applyTopK(row(Number.NaN, 1, 2, 0), 2))).toEqual([1, 2]);
    expect(() => applyTopK(row(1), 0)).toThrow(ConfigError);
  });

  it('top-p keeps exactly the smallest most-likely set reaching p', () => {
    // probabilities by id: 0.05, 0.4, 0.25, 0.2, 0.1 -> ranked 1, 2, 3, 4, 0
    const logits = logitsOf(0.05, 0.4, 0.25, 0.2, 0.1);
    expect(kept(applyTopP(logits, 0.3))).toEqual([1]); // 0.4 >= 0.3
    expect(kept(applyTopP(logits, 0.6))).toEqual([1, 2]); // 0.65
    expect(kept(applyTopP(logits, 0.7))).toEqual([1, 2, 3]); // 0.85
    expect(kept(applyTopP(logits, 0.9))).toEqual([1, 2, 3, 4]); // 0.95
    expect(kept(applyTopP(logits, 0.96))).toEqual([0, 1, 2, 3, 4]);
    expect(kept(applyTopP(logits, 1))).toEqual([0, 1, 2, 3, 4]);
    expect(kept(applyTopP(logits, 1e-12))).toEqual([1]); // always at least one
    // A boundary exactly at p stops there, also through float32 rounding of the logits.
    expect(kept(applyTopP(logits, 0.65))).toEqual([1, 2]);
    expect(kept(applyTopP(logits, 0.85))).toEqual([1, 2, 3]);
    expect(kept(applyTopP(logitsOf(0.5, 0.3, 0.2), 0.8))).toEqual([0, 1]);
    // Four equal tokens: two reach 0.5 exactly; ties go to the lower id.
    expect(kept(applyTopP(row(0, 0, 0, 0), 0.5))).toEqual([0, 1]);
    expect(() => applyTopP(logits, 0)).toThrow(ConfigError);
    expect(() => applyTopP(logits, 1.01)).toThrow(ConfigError);
  });

  it('runs in Hugging Face order: penalty, temperature, top-k, then top-p on what is left', () => {
    // The penalty sees raw logits: 2 / 2 = 1, then the temperature doubles everything.
    expect(Array.from(processLogits(row(2, 1), { repetitionPenalty: 2, temperature: 0.5 }, [0]))).toEqual([2, 2]);
    // top-k first renormalises 0.4, 0.3 to 4/7, 3/7: top-p 0.5 then keeps one token. top-p alone would keep two.
    const logits = logitsOf(0.4, 0.3, 0.2, 0.1);
    expect(kept(processLogits(logits, { topK: 2, topP: 0.5 }))).toEqual([0]);
    expect(kept(processLogits(logits, { topP: 0.5 }))).toEqual([0, 1]);
    // Greedy: only the penalty applies, and the input is never returned itself.
    const greedy = processLogits(logits, {});
    expect(greedy).not.toBe(logits);
    expect(Array.from(greedy)).toEqual(Array.from(logits));
  });
});

describe('choosing a token', () => {
  it('defines greedy as temperature 0 or no sampling option', () => {
    expect(isGreedy({})).toBe(true);
    expect(isGreedy({ repetitionPenalty: 1.3, seed: 1 })).toBe(true);
    expect(isGreedy({ temperature: 0, topK: 5, topP: 0.9 })).toBe(true);
    expect(isGreedy({ temperature: 1 })).toBe(false);
    expect(isGreedy({ topK: 5 })).toBe(false);
    expect(isGreedy({ topP: 0.9 })).toBe(false);
  });

  it('greedy equals the argmax, after the repetition penalty', () => {
    const rng = createRng(5);
    for (let trial = 0; trial < 50; trial++) {
      const logits = new Float32Array(97).map(() => rng.next() * 10 - 5);
      expect(sampleToken(logits, {})).toBe(argmax(logits));
      expect(sampleToken(logits, { temperature: 0, topK: 3 })).toBe(argmax(logits));
      expect(createSampler({ seed: trial }).sample(logits)).toBe(argmax(logits));
    }
    expect(argmax(row(1, 5, 5, 2))).toBe(1);
    expect(argmax(row(Number.NaN, -1))).toBe(1);
    // 3 / 2 = 1.5 < 2: the penalty hands the win to token 1.
    expect(sampleToken(row(3, 2), { repetitionPenalty: 2 }, { previousTokens: [0] })).toBe(1);
  });

  it('computes a stable softmax', () => {
    // exp(1000) overflows float64: only the max-shifted form gets 1 / (1 + e) and e / (1 + e).
    const p = softmax(row(1000, 1001, -Infinity, Number.NaN));
    expect(p[0]).toBeCloseTo(1 / (1 + Math.E), 12);
    expect(p[1]).toBeCloseTo(Math.E / (1 + Math.E), 12);
    expect(p[2]).toBe(0);
    expect(p[3]).toBe(0);
    expect(Array.from(softmax(row(-Infinity, -Infinity)))).toEqual([0, 0]);
  });

  it('draws with frequencies that match the softmax (chi-square, fixed seed)', () => {
    const n = 100_000;
    const logits = row(0.3, -1.2, 2.0, 0.9, 0.0);
    // 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
    expect(chiSquare(draw(logits, { temperature: 1, seed: 11 }, n), softmax(logits), n)).toBeLessThan(18.47);
    // Temperature 0.5 squares the probabilities (then renormalises).
    const sharp = softmax(applyTemperature(logits, 0.5));
    expect(chiSquare(draw(logits, { temperature: 0.5, seed: 12 }, n), sharp, n)).toBeLessThan(18.47);
    // top-k 3 then top-p: only tokens of the nucleus are ever drawn, in their renormalised proportions.
    const filtered = processLogits(logits, { temperature: 1, topK: 3, topP: 0.8 });
    const counts = draw(logits, { temperature: 1, topK: 3, topP: 0.8, seed: 13 }, n);
    expect(counts.map((c, i) => c > 0)).toEqual(Array.from(filtered).map(Number.isFinite));
    const dof = kept(filtered).length - 1;
    expect(dof).toBe(1);
    expect(chiSquare(counts, softmax(filtered), n)).toBeLessThan(10.83); // 1 dof, P = 0.001
  });

  it('never draws a zero-probability token, and refuses a distribution with none', () => {
    const rng = createRng(3);
    for (let i = 0; i < 1000; i++) expect(sampleFromProbabilities([0, 0.2, 0, 0.8, 0], rng)).not.toBe(0);
    expect(() => sampleFromProbabilities([0, 0], rng)).toThrow(/positive probability/);
    expect(() => sampleToken(row(1, 2), { temperature: 1 })).toThrow(/rng/);
  });

  it('is deterministic for a seed', () => {
    const source = createRng(99);
    const rows = Array.from({ length: 50 }, () => new Float32Array(64).map(() => source.next() * 4));
    const run = (seed: number) => {
      const sampler = createSampler({ temperature: 0.9, topK: 20, topP: 0.95, repetitionPenalty: 1.1, seed });
      const ids: number[] = [];
      for (const r of rows) ids.push(sampler.sample(r, ids));
      return ids;
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
  });
});

describe('validateSamplingOptions', () => {
  const bad: Array<[keyof SamplingOptions, unknown]> = [
    ['temperature', -0.1],
    ['temperature', Number.NaN],
    ['temperature', Infinity],
    ['topK', 0],
    ['topK', 2.5],
    ['topP', 0],
    ['topP', 1.5],
    ['topP', Number.NaN],
    ['repetitionPenalty', 0],
    ['repetitionPenalty', -1],
    ['seed', 0.5],
  ];
  it.each(bad)('rejects %s = %s with a ConfigError naming the field', (field, value) => {
    const options = { [field]: value } as SamplingOptions;
    let error: unknown;
    try {
      validateSamplingOptions(options);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).details.field).toBe(field);
    expect((error as ConfigError).message).toContain(field);
    expect(() => createSampler(options)).toThrow(ConfigError);
    expect(() => sampleToken(row(1, 2), options, { rng: createRng(0) })).toThrow(ConfigError);
  });

  it('accepts valid options and ignores other keys', () => {
    expect(() => validateSamplingOptions({ temperature: 0, topK: 1, topP: 1, repetitionPenalty: 1, seed: -3 })).not.toThrow();
    expect(() => validateSamplingOptions({ maxNewTokens: 5 } as SamplingOptions)).not.toThrow();
  });
});

describe('stop tokens', () => {
  it('recognises a single id, a list, a set, or nothing', () => {
    expect(isStop(2, 2)).toBe(true);
    expect(isStop(3, 2)).toBe(false);
    expect(isStop(32000, [2, 32000])).toBe(true);
    expect(isStop(7, new Set([7]))).toBe(true);
    expect(isStop(0, null)).toBe(false);
    expect(isStop(0, undefined)).toBe(false);
  });

  it('merges stop tokens from several sources', () => {
    expect([...stopTokenSet(2, null, [2, 5], undefined, [7])]).toEqual([2, 5, 7]);
    expect(() => stopTokenSet([1, -1])).toThrow(ConfigError);
  });
});

describe('AsyncQueue and streamFromCallbacks', () => {
  it('buffers values until read, then ends', async () => {
    const q = new AsyncQueue<number>();
    expect(q.push(1)).toBe(true);
    const pending = q.next(); // buffered: resolves at once
    q.push(2);
    q.close();
    expect(q.push(3)).toBe(false);
    const seen = [(await pending).value];
    for await (const v of q) seen.push(v);
    expect(seen).toEqual([1, 2]);
  });

  it('wakes a waiting reader, and throws a failure after the buffered values', async () => {
    const q = new AsyncQueue<string>();
    const waiting = q.next();
    q.push('a');
    expect(await waiting).toEqual({ value: 'a', done: false });
    q.push('b');
    q.fail(new Error('boom'));
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const v of q) seen.push(v);
      })(),
    ).rejects.toThrow('boom');
    expect(seen).toEqual(['b']);
  });

  it('marks itself cancelled when the consumer breaks, so the producer can stop', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.push(2);
    for await (const v of q) if (v === 1) break;
    expect(q.cancelled).toBe(true);
    expect(q.push(3)).toBe(false);
  });

  it('turns callbacks into an iterator, started lazily and stopped early', async () => {
    let started = false;
    let emittedAfterStop = 0;
    const stream = streamFromCallbacks<number>(async (emit) => {
      started = true;
      for (let i = 0; i < 100; i++) {
        await Promise.resolve();
        if (!emit(i)) {
          emittedAfterStop++;
          return;
        }
      }
    });
    expect(started).toBe(false);
    const seen: number[] = [];
    for await (const v of stream) {
      seen.push(v);
      if (v === 3) break;
    }
    await new Promise((r) => setTimeout(r, 10));
    expect(started).toBe(true);
    expect(seen).toEqual([0, 1, 2, 3]);
    expect(emittedAfterStop).toBe(1); // the producer saw false once and returned
  });

  it('ends with the producer, passing its error on', async () => {
    const ok = streamFromCallbacks<string>(async (emit) => {
      emit('x');
      emit('y');
    });
    const values: string[] = [];
    for await (const v of ok) values.push(v);
    expect(values).toEqual(['x', 'y']);

    const failing = streamFromCallbacks<string>(async (emit) => {
      emit('x');
      throw new Error('model failed');
    });
    const got: string[] = [];
    await expect(
      (async () => {
        for await (const v of failing) got.push(v);
      })(),
    ).rejects.toThrow('model failed');
    expect(got).toEqual(['x']);
  });
});
