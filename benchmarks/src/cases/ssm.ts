/**
 * The Mamba-1 selective scan at mamba-130m's inner width (d_inner 1536, N 16), batch 1, with the gate, the skip
 * and the softplus on, as the mixer calls it: the naive tfjs-ops scan (one small op chain per time step) against
 * the fused kernel (one pass over typed arrays). The naive scan only runs at T = 128: it takes seconds there and
 * grows worse than linearly. Target: the fused scan at T = 128 under 15 ms on wasm, linear in T.
 */
import * as tf from '@tensorflow/tfjs-core';
import { selectiveScan } from '@slmkit/ssm';
import { benchCase, type BenchCase } from '../registry.js';
import { F32, phaseOf } from '../shapes.js';

const D = 1536;
const N = 16;

function scanCase(implementation: 'naive' | 'fused', T: number): BenchCase {
  return benchCase({
    block: 'ssm',
    series: `ssm/selective-scan/${implementation}`,
    axis: { name: 'T', value: T },
    phase: phaseOf(T),
    shape: { B: 1, T, d: D, N },
    // u, delta, z read and y written ([D, T] each), B and C read ([N, T] each).
    bytes: (4 * D * T + 2 * N * T) * F32,
    quick: T === 128,
    setup: () => {
      const u = tf.randomNormal([1, D, T]); // [B, D, T]
      const delta = tf.randomNormal([1, D, T], -2, 0.5); // [B, D, T]
      const z = tf.randomNormal([1, D, T]); // [B, D, T]
      const A = tf.tidy(() => tf.neg(tf.exp(tf.randomNormal([D, N])))); // [D, N]
      const B = tf.randomNormal([1, N, T]); // [B, N, T]
      const C = tf.randomNormal([1, N, T]); // [B, N, T]
      const skip = tf.ones([D]);
      const bias = tf.zeros([D]);
      return {
        run: () => selectiveScan(u, delta, A, B, C, { D: skip, z, deltaBias: bias, deltaSoftplus: true, implementation }), // [B, D, T]
        teardown: () => tf.dispose([u, delta, z, A, B, C, skip, bias]),
      };
    },
  });
}

export const cases: BenchCase[] = [scanCase('naive', 128), ...[128, 512, 2048].map((T) => scanCase('fused', T))];
