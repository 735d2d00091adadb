/**
 * `GatedMLP` (SwiGLU) at SmolLM-135M's widths, d 576 and MLP 1536: a forward, and a training step
 * (`tf.variableGrads` of a mean-square loss, then one SGD update). GFLOP/s counts the three matmuls, 2·T·d·ff each
 * forward; the backward doubles that (a gradient for the input and one for the weight), so a step is 3× a forward.
 */
import * as tf from '@tensorflow/tfjs-core';
import { GatedMLP, Linear, activation } from '@slmkit/core';
import { benchCase, type BenchCase } from '../registry.js';
import { BATCH, SMOLLM, phaseOf, sgdStep } from '../shapes.js';

const d = SMOLLM.hidden;
const ff = SMOLLM.intermediate;
const forwardFlops = (T: number): number => 3 * 2 * BATCH * T * d * ff;

// The forward on one thread at each T, and on two wasm threads at T 128 (the `-2threads` series runs in a child
// process of the same run); at T 1 and 128 also with the gate's activation and product as tfjs ops after two plain
// products (`-unfused`: the before of the gated-product kernel, which GatedMLP cannot fuse when its activation is
// given as a function), on one thread and two; at T 128 also with every matmul on XNNPACK (`-xnnpack`,
// SLMKIT_WASM_XNNPACK=1: the before of slmkit's GEMM), on one thread and two.
const FORWARD: { T: number; threads?: number; xnnpack?: boolean; unfused?: boolean }[] = [
  { T: 1 },
  { T: 128 },
  { T: 512 },
  { T: 128, threads: 2 },
  { T: 1, unfused: true },
  { T: 128, unfused: true },
  { T: 128, threads: 2, unfused: true },
  { T: 128, xnnpack: true },
  { T: 128, threads: 2, xnnpack: true },
];

/** SwiGLU at SmolLM's widths; `unfused`: with the activation given as a function, which keeps the tfjs ops. */
function swiglu(unfused = false): GatedMLP {
  if (!unfused) return GatedMLP.create(d, ff, { activation: 'silu', seed: 0 });
  const linear = (inF: number, outF: number, seed: number) => new Linear(inF, outF, { bias: false, seed });
  return new GatedMLP({ gateProj: linear(d, ff, 0), upProj: linear(d, ff, 2), downProj: linear(ff, d, 4), activation: activation('silu') });
}

const forward = FORWARD.map(({ T, threads, xnnpack, unfused }) =>
  benchCase({
    block: 'mlp',
    series: `mlp/swiglu/forward${unfused ? '-unfused' : ''}${threads != null ? `-${threads}threads` : ''}${xnnpack ? '-xnnpack' : ''}`,
    axis: { name: 'T', value: T },
    phase: phaseOf(T),
    shape: { B: BATCH, T, d, ff },
    flops: forwardFlops(T),
    quick: T !== 512,
    ...(threads != null ? { threads } : {}),
    ...(xnnpack ? { env: { SLMKIT_WASM_XNNPACK: '1' } } : {}),
    setup: () => {
      const mlp = swiglu(unfused);
      const x = tf.randomNormal([BATCH, T, d]); // [B, T, d]
      return {
        run: () => mlp.forward(x), // [B, T, d]
        teardown: () => {
          x.dispose();
          mlp.dispose();
        },
      };
    },
  }),
);

// The training step at T 128 and 512, at T 128 also on two wasm threads, and with tfjs's own kernel for the
// gradient's transposed matmuls (`-tfjs-matmul`, SLMKIT_WASM_TFJS_MATMUL=1: the before of slmkit's rewrite).
const TRAIN: { T: number; threads?: number; tfjsMatMul?: boolean }[] = [{ T: 128 }, { T: 512 }, { T: 128, threads: 2 }, { T: 128, tfjsMatMul: true }];
const train = TRAIN.map(({ T, threads, tfjsMatMul }) =>
  benchCase({
    block: 'mlp',
    series: `mlp/swiglu/train${threads != null ? `-${threads}threads` : ''}${tfjsMatMul ? '-tfjs-matmul' : ''}`,
    axis: { name: 'T', value: T },
    phase: 'train',
    shape: { B: BATCH, T, d, ff },
    flops: 3 * forwardFlops(T),
    quick: T === 128,
    ...(threads != null ? { threads } : {}),
    ...(tfjsMatMul ? { env: { SLMKIT_WASM_TFJS_MATMUL: '1' } } : {}),
    setup: () => {
      const mlp = GatedMLP.create(d, ff, { activation: 'silu', seed: 0 });
      const x = tf.randomNormal([BATCH, T, d]); // [B, T, d]
      const target = tf.randomNormal([BATCH, T, d]); // [B, T, d]
      const loss = (): tf.Scalar => tf.mean(tf.squaredDifference(mlp.forward(x), target)) as tf.Scalar;
      return sgdStep(loss, mlp.trainableParameters(), () => {
        tf.dispose([x, target]);
        mlp.dispose();
      });
    },
  }),
);

export const cases: BenchCase[] = [...forward, ...train];
