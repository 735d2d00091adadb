/**
 * Mamba-2's state-space-duality scan at mamba2-130m's inner width (H 24 heads of P 64, N 128, one group), batch
 * 1, with the gate, the skip, dt_bias, the softplus and the time_step_min clamp on, as Mamba2Mixer calls it: the
 * naive tfjs-ops recurrence (one op chain per step; only at T = 128, it grows worse than linearly), the chunked
 * SSD algorithm in tfjs ops (chunk 256, the checkpoints' chunk_size) and the fused kernel (one pass over typed
 * arrays). For comparison at the same model width (d_inner 1536), the Mamba-1 selective scan with mamba-130m's
 * N 16. Chunked and fused should grow linearly in T.
 */
import * as tf from '@tensorflow/tfjs-core';
import { selectiveScan, ssdScan } from '@slmkit/ssm';
import { benchCase, type BenchCase } from '../registry.js';
import { F32, phaseOf } from '../shapes.js';

const H = 24;
const P = 64;
const N = 128;
const G = 1;

function ssdCase(implementation: 'naive' | 'chunked' | 'fused', T: number): BenchCase {
  return benchCase({
    block: 'ssd',
    series: `ssd/ssd-scan/${implementation}`,
    axis: { name: 'T', value: T },
    phase: phaseOf(T),
    shape: { B: 1, T, H, P, N, G },
    // x, z read and y written ([T, H·P] each), dt read ([T, H]), B and C read ([T, G·N] each).
    bytes: (3 * T * H * P + T * H + 2 * T * G * N) * F32,
    quick: T === 128,
    setup: () => {
      const x = tf.randomNormal([1, T, H, P]); // [B, T, H, P]
      const z = tf.randomNormal([1, T, H, P]); // [B, T, H, P]
      const dt = tf.randomNormal([1, T, H], -2, 0.5); // [B, T, H]
      const A = tf.tidy(() => tf.neg(tf.exp(tf.randomNormal([H])))); // [H]
      const B = tf.randomNormal([1, T, G, N]); // [B, T, G, N]
      const C = tf.randomNormal([1, T, G, N]); // [B, T, G, N]
      const D = tf.ones([H]);
      const dtBias = tf.zeros([H]);
      return {
        run: () =>
          ssdScan(x, dt, A, B, C, { D, z, dtBias, dtSoftplus: true, dtLimit: [1e-3, Infinity], chunkSize: 256, implementation }), // [B, T, H, P]
        teardown: () => tf.dispose([x, z, dt, A, B, C, D, dtBias]),
      };
    },
  });
}

/** The Mamba-1 fused selective scan at the same inner width (1536 channels), N 16 as in mamba-130m. */
function mamba1Case(T: number): BenchCase {
  const D = H * P;
  const N1 = 16;
  return benchCase({
    block: 'ssd',
    series: 'ssd/mamba1-selective-scan/fused',
    axis: { name: 'T', value: T },
    phase: phaseOf(T),
    shape: { B: 1, T, d: D, N: N1 },
    bytes: (4 * D * T + 2 * N1 * T) * F32,
    quick: T === 128,
    setup: () => {
      const u = tf.randomNormal([1, D, T]); // [B, D, T]
      const delta = tf.randomNormal([1, D, T], -2, 0.5); // [B, D, T]
      const z = tf.randomNormal([1, D, T]); // [B, D, T]
      const A = tf.tidy(() => tf.neg(tf.exp(tf.randomNormal([D, N1])))); // [D, N]
      const B = tf.randomNormal([1, N1, T]); // [B, N, T]
      const C = tf.randomNormal([1, N1, T]); // [B, N, T]
      const skip = tf.ones([D]);
      return {
        run: () => selectiveScan(u, delta, A, B, C, { D: skip, z, deltaSoftplus: true, implementation: 'fused' }), // [B, D, T]
        teardown: () => tf.dispose([u, delta, z, A, B, C, skip]),
      };
    },
  });
}

export const cases: BenchCase[] = [
  ssdCase('naive', 128),
  ...[128, 512, 2048].map((T) => ssdCase('chunked', T)),
  ...[128, 512, 2048].map((T) => ssdCase('fused', T)),
  ...[128, 512, 2048].map((T) => mamba1Case(T)),
];
