// Test support for @slmkit/models: the backends under test, a switch that also applies the SwiftShader speed
// setting, and small numeric helpers.
import * as tf from '@tensorflow/tfjs-core';
import { backendsUnderTest } from '@slmkit/fixtures';
import { initBackend, type BackendName } from '@slmkit/core';

/** Every backend that starts here (cpu and wasm always; webgpu where Dawn finds an adapter, e.g. SwiftShader). */
export const BACKENDS: BackendName[] = (await backendsUnderTest(initBackend)) as BackendName[];

/** Absolute tolerance of the fixture logits per backend (fixtures README). */
export function tolerance(backend: string): number {
  return backend === 'webgpu' ? 5e-4 : 1e-4;
}

/**
 * Switches to `backend`. On webgpu, matmuls use tfjs's small-output-size program: its default for outputs of at
 * most 128 values (every decode step of these tiny fixtures) is a reduction program that SwiftShader runs about
 * ten times slower, which made the 56 decode steps of the fixture suite take minutes. The maths is the same matmul.
 */
export async function useBackend(backend: string): Promise<void> {
  await initBackend(backend as BackendName);
  if (backend === 'webgpu') tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', 2);
}

/** max |a[i] − b[i]| (NaN counts as Infinity). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
  }
  return worst;
}

/** Reads a tensor and disposes it. */
export async function take(t: tf.Tensor): Promise<Float32Array> {
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

/** Step `s` of `[B, steps, V]` step logits, as `[B · V]`. */
export function stepSlice(all: Float32Array, B: number, steps: number, V: number, s: number): Float32Array {
  const out = new Float32Array(B * V);
  for (let b = 0; b < B; b++) out.set(all.subarray((b * steps + s) * V, (b * steps + s + 1) * V), b * V);
  return out;
}
