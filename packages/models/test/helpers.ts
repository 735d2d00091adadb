// Test support for @slmkit/models: the backends under test, a switch that also applies the SwiftShader speed
// setting, and small numeric helpers.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { backendsUnderTest, type FixtureCase } from '@slmkit/fixtures';
import { initBackend, type BackendName } from '@slmkit/core';
import type { GenerateOutput } from '../src/index.js';

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

/** What the reference checks below need of a model: a forward over ids and greedy generation. */
interface ReferenceModel {
  forward(ids: tf.Tensor2D): tf.Tensor;
  generate(ids: number[][], options: { maxNewTokens: number; stopTokens: number[]; returnLogits: true }): Promise<GenerateOutput>;
}

/**
 * One full forward over the fixture's prompt against its reference logits: shape, dtype, no tensor left behind,
 * within the backend's tolerance. Returns the worst difference.
 */
export async function expectReferenceLogits(model: ReferenceModel, fixture: FixtureCase, backend: string): Promise<number> {
  const [B, L, V] = fixture.logitsShape as [number, number, number];
  const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
  const before = tf.memory().numTensors;
  const logits = model.forward(ids); // [B, L, V]
  expect(logits.shape).toEqual([B, L, V]);
  expect(logits.dtype).toBe('float32');
  const got = await take(logits);
  expect(tf.memory().numTensors).toBe(before);
  ids.dispose();
  const worst = maxAbsDiff(got, fixture.logits);
  expect(worst).toBeLessThanOrEqual(tolerance(backend));
  return worst;
}

/**
 * Greedy decoding of the fixture's steps through the model's cache against the reference: the tokens, the
 * sequences and every step's logits (`gen_logits.bin` is `[B, steps, V]`, `stepLogits[s]` is `[B, V]`), no tensor
 * left behind. Returns the worst step-logit difference.
 */
export async function expectReferenceGeneration(model: ReferenceModel, fixture: FixtureCase, backend: string): Promise<number> {
  const [B, , V] = fixture.logitsShape as [number, number, number];
  const steps = fixture.expected.generation.max_new_tokens as number;
  const before = tf.memory().numTensors;
  const out = await model.generate(fixture.inputIds, { maxNewTokens: steps, stopTokens: [], returnLogits: true });
  expect(tf.memory().numTensors).toBe(before);
  expect(out.tokens).toEqual(fixture.expected.generation.new_token_ids);
  expect(out.sequences).toEqual(fixture.expected.generation.sequences);
  expect(out.stepLogits).toHaveLength(steps);
  let worst = 0;
  for (let s = 0; s < steps; s++) {
    for (let b = 0; b < B; b++) {
      const got = out.stepLogits![s].subarray(b * V, (b + 1) * V);
      const want = fixture.genLogits!.subarray((b * steps + s) * V, (b * steps + s + 1) * V);
      worst = Math.max(worst, maxAbsDiff(got, want));
    }
  }
  expect(worst).toBeLessThanOrEqual(tolerance(backend));
  return worst;
}

/** What {@link expectPrefillThenSteps} needs of a model: a forward that may continue a cache it creates. */
interface CachedModel<C extends { length: number; dispose(): void }> {
  forward(ids: tf.Tensor2D, options?: { cache?: C }): tf.Tensor;
  createCache(): C;
}

/**
 * Prefill of the fixture's first `L − steps` tokens, then `steps` single-token calls through the model's cache,
 * stitched together, equals one full forward of all `L` within the backend's tolerance. Returns the cache (its
 * state after the last step) for further checks; the caller disposes it.
 */
export async function expectPrefillThenSteps<C extends { length: number; dispose(): void }>(
  model: CachedModel<C>,
  fixture: FixtureCase,
  backend: string,
  steps = 3,
): Promise<C> {
  const [B, L, V] = fixture.logitsShape as [number, number, number];
  const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
  const full = await take(model.forward(ids)); // [B, L, V]
  ids.dispose();
  const Lp = L - steps;
  const cache = model.createCache();
  // Ids from arrays (an id tensor made by slicing would live on the GPU under webgpu; the embedding reads ids on the CPU).
  const call = async (rows: number[][]): Promise<Float32Array> => {
    const t = tf.tensor2d(rows, undefined, 'int32');
    const out = await take(model.forward(t, { cache }));
    t.dispose();
    return out;
  };
  const parts = [await call(fixture.inputIds.map((r) => r.slice(0, Lp)))];
  for (let t = Lp; t < L; t++) parts.push(await call(fixture.inputIds.map((r) => [r[t]])));
  expect(cache.length).toBe(L);
  const stitched = new Float32Array(B * L * V);
  for (let b = 0; b < B; b++) {
    stitched.set(parts[0].subarray(b * Lp * V, (b + 1) * Lp * V), b * L * V);
    for (let k = 0; k < steps; k++) stitched.set(parts[k + 1].subarray(b * V, (b + 1) * V), (b * L + Lp + k) * V);
  }
  expect(maxAbsDiff(stitched, full)).toBeLessThanOrEqual(tolerance(backend));
  return cache;
}
