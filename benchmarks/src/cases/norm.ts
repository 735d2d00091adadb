/**
 * `RMSNorm` and `LayerNorm` over `[B, T, d]` with d 576. Both are memory-bound, so the figure is GB/s: the
 * least traffic a fused kernel would need, x read once and y written once (the weight is negligible).
 * `norm/rms-ops` is RMSNorm written as tfjs ops (square, mean, add, rsqrt, two products): what `RMSNorm` ran before
 * its cpu / wasm kernel, in the same run.
 */
import * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, RMSNorm, type Module } from '@slmkit/core';
import { benchCase, type BenchCase } from '../registry.js';
import { BATCH, F32, SMOLLM, phaseOf } from '../shapes.js';

const d = SMOLLM.hidden;
const NORMS: { series: string; make: () => Module & { forward(x: tf.Tensor): tf.Tensor } }[] = [
  { series: 'norm/rms', make: () => new RMSNorm(d, { eps: SMOLLM.rmsEps }) },
  { series: 'norm/layer', make: () => new LayerNorm(d, { eps: 1e-5 }) },
  { series: 'norm/rms-ops', make: () => rmsNormOps(new RMSNorm(d, { eps: SMOLLM.rmsEps })) },
];

/** `norm`'s computation as tfjs ops, the norm's own weight and ε. */
function rmsNormOps(norm: RMSNorm): Module & { forward(x: tf.Tensor): tf.Tensor } {
  return Object.assign(norm, {
    forward: (x: tf.Tensor): tf.Tensor =>
      tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), norm.eps))), norm.weight!)), // [B, T, d]
  });
}

export const cases: BenchCase[] = NORMS.flatMap(({ series, make }) =>
  [1, 128, 512, 2048].map((T) =>
    benchCase({
      block: 'norm',
      series,
      axis: { name: 'T', value: T },
      phase: phaseOf(T),
      shape: { B: BATCH, T, d },
      bytes: 2 * BATCH * T * d * F32,
      quick: T === 1 || T === 512,
      setup: () => {
        const norm = make();
        const x = tf.randomNormal([BATCH, T, d]); // [B, T, d]
        return {
          run: () => norm.forward(x), // [B, T, d]
          teardown: () => {
            x.dispose();
            norm.dispose();
          },
        };
      },
    }),
  ),
);
