// Test support: the backends under test, seeded tensors, and small builders of MoE blocks.
import * as tf from '@tensorflow/tfjs-core';
import { backendsUnderTest, randn } from '@slmkit/fixtures';
import { GatedMLP, Linear, initBackend, type BackendName } from '@slmkit/core';
import { SparseMoE, TopKRouter, type SparseMoEOptions, type TopKRouterOptions } from '../src/index.js';

/** Every backend that starts here (cpu and wasm always; webgpu where Dawn finds an adapter). */
export const BACKENDS: BackendName[] = (await backendsUnderTest(initBackend)) as BackendName[];

/** A float32 tensor of seeded normal values. */
export function normal(shape: number[], seed: number, scale = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(randn(n, seed, scale), shape, 'float32');
}

/** max |a − b| (NaN counts as Infinity; different lengths too). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
  }
  return worst;
}

export interface BlockSpec {
  hidden: number;
  inner: number;
  experts: number;
  router: TopKRouterOptions;
  shared?: boolean;
  seed?: number;
}

/** A SparseMoE of seeded SwiGLU experts (and, when asked, a gated shared expert). */
export function makeMoE(spec: BlockSpec, options: Omit<SparseMoEOptions, 'sharedExpert' | 'sharedExpertGate'> = {}): SparseMoE {
  const seed = spec.seed ?? 0;
  const router = new TopKRouter(spec.hidden, spec.experts, { ...spec.router, seed: seed + 1 });
  const experts = Array.from({ length: spec.experts }, (_, e) => GatedMLP.create(spec.hidden, spec.inner, { seed: seed + 100 * (e + 1) }));
  const shared = spec.shared === true
    ? {
        sharedExpert: GatedMLP.create(spec.hidden, spec.inner + 4, { seed: seed + 7 }),
        sharedExpertGate: new Linear(spec.hidden, 1, { bias: false, seed: seed + 9 }),
      }
    : {};
  return new SparseMoE(router, experts, { ...options, ...shared });
}
