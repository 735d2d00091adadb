// Test support for the layer tests: a seeded PRNG, float64 reference maths written with plain loops over
// number[] (never tfjs ops, so a shared tfjs bug cannot hide), and a runner that repeats a computation on every
// backend under test.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { backendsUnderTest, prng, randn } from '@slmkit/fixtures';

export { prng, randn };
export { expectClose } from '@slmkit/fixtures/assert';
import { initBackend } from '../../src/backend.js';
import type { Module } from '../../src/module.js';

/** `n` integers uniform in [0, max). */
export function randInts(n: number, seed: number, max: number): number[] {
  const u = prng(seed);
  return Array.from({ length: n }, () => Math.floor(u() * max));
}

// ---------------------------------------------------------------------------------------------------------------
// float64 references. Matrices are row-major flat arrays.

/** `x [rows, inF] · Wᵀ + b`, W `[outF, inF]`. */
export function linearRef(x: number[], w: number[], b: number[] | null, rows: number, inF: number, outF: number): number[] {
  const y: number[] = new Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b == null ? 0 : b[o];
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = s;
    }
  }
  return y;
}

/** RMSNorm over rows of width `dim`; `w` null means no scale; `unitOffset` scales by `1 + w`. */
export function rmsNormRef(x: number[], w: number[] | null, dim: number, eps: number, unitOffset = false): number[] {
  const y: number[] = new Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let ms = 0;
    for (let i = 0; i < dim; i++) ms += x[r * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ms / dim + eps);
    for (let i = 0; i < dim; i++) {
      const scale = w == null ? 1 : unitOffset ? 1 + w[i] : w[i];
      y[r * dim + i] = x[r * dim + i] * inv * scale;
    }
  }
  return y;
}

/** LayerNorm over rows of width `dim`, biased variance (like torch). */
export function layerNormRef(x: number[], w: number[] | null, b: number[] | null, dim: number, eps: number): number[] {
  const y: number[] = new Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[r * dim + i];
    mean /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += (x[r * dim + i] - mean) ** 2;
    v /= dim;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < dim; i++) {
      y[r * dim + i] = (x[r * dim + i] - mean) * inv * (w == null ? 1 : w[i]) + (b == null ? 0 : b[i]);
    }
  }
  return y;
}

/**
 * erf in float64, accurate to ~1e-15: the series erf(x) = 2/√π · e^(−x²) · Σₙ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)), whose
 * terms are all positive (no cancellation); for |x| ≥ 6, |1 − erf(x)| < 3e-17, so ±1.
 */
export function erf64(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 1000; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
}

export const act64 = {
  silu: (x: number) => x / (1 + Math.exp(-x)),
  gelu: (x: number) => 0.5 * x * (1 + erf64(x / Math.SQRT2)),
  gelu_tanh: (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
  relu: (x: number) => Math.max(x, 0),
  relu2: (x: number) => Math.max(x, 0) ** 2,
} as const;

// ---------------------------------------------------------------------------------------------------------------
// Comparison.

/** Largest |a − b|, or Infinity when lengths differ or a value is not finite where the other is. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return Infinity;
    if (d > m) m = d;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------------
// Backends.

let backendsPromise: Promise<string[]> | undefined;

/** The backends under test here (cached), leaving cpu current. */
export async function backends(): Promise<string[]> {
  backendsPromise ??= backendsUnderTest(initBackend).then(async (names) => {
    await initBackend('cpu');
    return names;
  });
  return backendsPromise;
}

/**
 * Runs `compute` on every backend under test (building everything afresh on each), checks it leaks no tensors
 * there, and returns the outputs by backend; cpu is current again afterwards.
 */
export async function onEveryBackend(compute: () => Promise<number[]>): Promise<Record<string, number[]>> {
  const names = await backends();
  expect(names).toContain('cpu');
  expect(names).toContain('wasm');
  const out: Record<string, number[]> = {};
  try {
    for (const name of names) {
      await initBackend(name as 'cpu');
      const before = tf.memory().numTensors;
      out[name] = await compute();
      expect(tf.memory().numTensors, `tensors leaked on ${name}`).toBe(before);
    }
  } finally {
    await initBackend('cpu');
  }
  return out;
}

/** Asserts every backend's output equals cpu's within `tol`. */
export function expectBackendsAgree(out: Record<string, number[]>, tol = 1e-5): void {
  const cpu = out.cpu;
  for (const [name, values] of Object.entries(out)) {
    expect(maxAbsDiff(values, cpu), `${name} vs cpu`).toBeLessThanOrEqual(tol);
  }
}

/** Reads a tensor and disposes it. */
export async function take(t: tf.Tensor): Promise<number[]> {
  const v = Array.from(await t.data());
  t.dispose();
  return v;
}

/**
 * Calls `run` (which must dispose what it returns) `times` times and asserts that the number of live tensors is
 * the same after as before.
 */
export function expectNoLeak(run: () => void, times = 5): void {
  const before = tf.memory().numTensors;
  for (let i = 0; i < times; i++) run();
  expect(tf.memory().numTensors).toBe(before);
}

/** The values of parameter `name` of `m` in the checkpoint's layout (a `Linear` weight `[out, in]`), read from its state dict. */
export function checkpointValues(m: Module, name: string): number[] {
  const state = m.stateDict();
  const values = Array.from(state[name].dataSync());
  tf.dispose(Object.values(state));
  return values;
}
