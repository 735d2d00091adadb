// Test support: seeded inputs, backend selection and comparison helpers.
import * as tf from '@tensorflow/tfjs-core';
import { backendsUnderTest } from '@slmkit/fixtures';
import { initBackend, type BackendName } from '@slmkit/core';

/** The backends to test on here (webgpu through SwiftShader when available). */
export const BACKENDS: BackendName[] = (await backendsUnderTest(initBackend)) as BackendName[];

/** mulberry32: a tiny seedable PRNG, uniform in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A float32 tensor of seeded values uniform in [lo, hi). */
export function uniform(shape: number[], seed: number, lo = -1, hi = 1): tf.Tensor {
  const r = prng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => lo + (hi - lo) * r()), shape, 'float32');
}

/** max |a − b| (NaN counts as Infinity) and max |b|. */
export function diff(a: ArrayLike<number>, b: ArrayLike<number>): { abs: number; scale: number } {
  let abs = a.length === b.length ? 0 : Infinity;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    abs = Math.max(abs, Number.isNaN(d) ? Infinity : d);
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { abs, scale };
}
