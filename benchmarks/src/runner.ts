/**
 * The runner: sets a case up, warms it up, times its repeats, tears it down and checks nothing leaked.
 *
 * A timed run is `performance.now()` around `run()` plus `await t.data()` on every tensor it returns, so an
 * asynchronous backend (webgpu) is timed until its results are really there, not until its commands are queued.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Axis, BenchCase, Phase } from './registry.js';

/** Warm-up time a case gets at least (within its budget), whatever `warmup` says. */
export const WARMUP_MS = 250;
/** The most warm-up runs {@link WARMUP_MS} adds. */
export const MAX_WARMUP_RUNS = 1000;

export interface RunOptions {
  /**
   * Untimed runs before the timed ones (default 2); unless 0, they go on, up to {@link MAX_WARMUP_RUNS}, until they
   * add up to {@link WARMUP_MS}, so that a case of a millisecond or less is timed once V8 has optimised the code it runs (a
   * decode step measured after two runs was up to twice as slow as after three hundred).
   */
  warmup?: number;
  /** Timed runs (default 10). */
  repeats?: number;
  /**
   * Milliseconds of timed runs after which a case stops repeating, once it has at least 3 (or `repeats`, if fewer)
   * samples (default 10 000), so that a slow case does not hold the run for minutes.
   */
  budgetMs?: number;
  /** The backend name recorded with each result (default `tf.getBackend()`). */
  backend?: string;
  /** `wasm`: the thread count recorded with each result. */
  threads?: number;
  /** Called before each case starts. */
  onStart?(c: BenchCase, index: number, total: number): void;
  /** Called as each case finishes. */
  onResult?(r: CaseResult, index: number, total: number): void;
}

export interface CaseResult {
  id: string;
  block: string;
  series: string;
  axis: Axis;
  phase: Phase;
  shape: Record<string, number>;
  backend: string;
  /** `wasm`: the threads XNNPACK ran on. */
  threads?: number;
  flops?: number;
  bytes?: number;
  /** Timed runs, in milliseconds, in the order they ran. */
  samplesMs: number[];
  n: number;
  medianMs?: number;
  p10Ms?: number;
  p90Ms?: number;
  minMs?: number;
  maxMs?: number;
  /** `flops / median`, in 10⁹ per second. */
  gflops?: number;
  /** `bytes / median`, in 10⁹ bytes per second. */
  gbps?: number;
  /** Milliseconds spent in `setup` (untimed, for information). */
  setupMs: number;
  /** `tf.memory().numTensors` after teardown minus before setup: anything but 0 is a leak. */
  leakedTensors: number;
  /** The message, when the case threw. */
  error?: string;
}

/** The q-quantile of sorted values, interpolating linearly between neighbours. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

async function timedRun(run: () => tf.Tensor | tf.Tensor[] | Promise<tf.Tensor | tf.Tensor[]>): Promise<number> {
  const t0 = performance.now();
  const out = await run();
  const tensors = Array.isArray(out) ? out : [out];
  try {
    for (const t of tensors) await t.data();
    return performance.now() - t0;
  } finally {
    tf.dispose(tensors);
  }
}

/** Runs one case: setup, warm-up, timed repeats, teardown, leak check. Never throws; errors land in the result. */
export async function runCase(c: BenchCase, options: RunOptions = {}): Promise<CaseResult> {
  const warmup = options.warmup ?? 2;
  const repeats = options.repeats ?? 10;
  const budgetMs = options.budgetMs ?? 10_000;
  const minRepeats = Math.min(3, repeats);
  const samples: number[] = [];
  let error: string | undefined;
  let setupMs = 0;
  const before = tf.memory().numTensors;
  try {
    const t0 = performance.now();
    const instance = await c.setup();
    setupMs = performance.now() - t0;
    try {
      let warmMs = 0;
      for (let i = 0; (i < warmup || (warmup > 0 && warmMs < WARMUP_MS && i < MAX_WARMUP_RUNS)) && warmMs < budgetMs; i++) {
        await instance.beforeEach?.();
        warmMs += await timedRun(() => instance.run());
      }
      let spent = 0;
      while (samples.length < repeats && !(spent >= budgetMs && samples.length >= minRepeats)) {
        await instance.beforeEach?.();
        const ms = await timedRun(() => instance.run());
        samples.push(ms);
        spent += ms;
      }
    } finally {
      await instance.teardown();
    }
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  await tf.ready();
  const leakedTensors = tf.memory().numTensors - before;

  const result: CaseResult = {
    id: c.id,
    block: c.block,
    series: c.series,
    axis: c.axis,
    phase: c.phase,
    shape: c.shape,
    backend: options.backend ?? tf.getBackend(),
    samplesMs: samples.map(round4),
    n: samples.length,
    setupMs: round4(setupMs),
    leakedTensors,
  };
  if (options.threads != null) result.threads = options.threads;
  if (c.flops != null) result.flops = c.flops;
  if (c.bytes != null) result.bytes = c.bytes;
  if (error != null) result.error = error;
  return withStatistics(result);
}

/**
 * `r` with its statistics (median, p10, p90, min, max, GFLOP/s, GB/s) computed from its `samplesMs`, and `n` set;
 * no statistics without samples.
 */
export function withStatistics(r: CaseResult): CaseResult {
  const result: CaseResult = { ...r, n: r.samplesMs.length };
  for (const key of ['medianMs', 'p10Ms', 'p90Ms', 'minMs', 'maxMs', 'gflops', 'gbps'] as const) delete result[key];
  if (r.samplesMs.length > 0) {
    const sorted = [...r.samplesMs].sort((a, b) => a - b);
    const median = quantile(sorted, 0.5);
    result.medianMs = round4(median);
    result.p10Ms = round4(quantile(sorted, 0.1));
    result.p90Ms = round4(quantile(sorted, 0.9));
    result.minMs = round4(sorted[0]!);
    result.maxMs = round4(sorted[sorted.length - 1]!);
    if (r.flops != null && median > 0) result.gflops = round4(r.flops / (median * 1e6));
    if (r.bytes != null && median > 0) result.gbps = round4(r.bytes / (median * 1e6));
  }
  return result;
}

/**
 * One result per case from the results of several rounds of the same cases (matched by id): samples in the order
 * the rounds ran, setup times added, the worst leak, the first error; statistics over all the samples.
 */
export function mergeRounds(rounds: readonly (readonly CaseResult[])[]): CaseResult[] {
  const byId = new Map<string, CaseResult>();
  for (const round of rounds) {
    for (const r of round) {
      const seen = byId.get(r.id);
      if (seen == null) {
        byId.set(r.id, { ...r, samplesMs: [...r.samplesMs] });
        continue;
      }
      seen.samplesMs.push(...r.samplesMs);
      seen.setupMs = round4(seen.setupMs + r.setupMs);
      if (Math.abs(r.leakedTensors) > Math.abs(seen.leakedTensors)) seen.leakedTensors = r.leakedTensors;
      if (seen.error == null && r.error != null) seen.error = r.error;
    }
  }
  return [...byId.values()].map(withStatistics);
}

/** Runs cases one after another, reporting each as it finishes. */
export async function runCases(cases: readonly BenchCase[], options: RunOptions = {}): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const [i, c] of cases.entries()) {
    options.onStart?.(c, i, cases.length);
    const r = await runCase(c, options);
    results.push(r);
    options.onResult?.(r, i, cases.length);
  }
  return results;
}

function round4(x: number): number {
  return Number(x.toPrecision(4));
}
