// Test support for @slmkit/adapters: the backends under test, the fixture tolerance, small numeric helpers.
import * as tf from '@tensorflow/tfjs-core';
import { backendsUnderTest } from '@slmkit/fixtures';
import { initBackend, type BackendName } from '@slmkit/core';

/** Every backend that starts here (cpu and wasm always; webgpu where Dawn finds an adapter, e.g. SwiftShader). */
export const BACKENDS: BackendName[] = (await backendsUnderTest(initBackend)) as BackendName[];

/** Absolute tolerance of the fixture logits per backend (fixtures README). */
export function tolerance(backend: string): number {
  return backend === 'webgpu' ? 5e-4 : 1e-4;
}

/** Switches to `backend` (on webgpu with the small-output matmul program, as the models tests do). */
export async function useBackend(backend: string): Promise<void> {
  await initBackend(backend as BackendName);
  if (backend === 'webgpu') tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', 2);
}

/** max |a[i] − b[i]| (NaN counts as Infinity; different lengths too). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
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
