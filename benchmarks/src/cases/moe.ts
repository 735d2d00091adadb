/**
 * `SparseMoE` at SmolLM-135M's widths (d 576, expert hidden 1536) with 8 SwiGLU experts, batch 1: the sparse
 * dispatch (gather each expert's tokens, run it on those rows only, scatter back) at k = 1, 2 and 4 experts per
 * token, against the dense form that runs all 8 experts on every token (at k = 2, the Mixtral setting). GFLOP/s
 * counts the expert matmuls each form performs (3 · 2·d·ff per token per expert run, plus the router's 2·d·E),
 * so the sparse rows count k expert runs per token and the dense row counts 8. Target: sparse time proportional to
 * k, and sparse top-2 about 8 / 2 = 4× faster than dense. Also a training step (forward with the balance and z
 * losses, backward, SGD) sparse against dense at k = 2.
 */
import * as tf from '@tensorflow/tfjs-core';
import { GatedMLP } from '@slmkit/core';
import { SparseMoE, TopKRouter } from '@slmkit/moe';
import { benchCase, type BenchCase } from '../registry.js';
import { BATCH, SMOLLM, phaseOf, sgdStep } from '../shapes.js';

const d = SMOLLM.hidden;
const ff = SMOLLM.intermediate;
const E = 8;

/** Matmul FLOPs of one forward: the router, plus `runs` expert runs per token. */
const forwardFlops = (T: number, runs: number): number => BATCH * T * (2 * d * E + runs * 3 * 2 * d * ff);

function makeMoE(k: number, dispatch: 'sparse' | 'dense'): SparseMoE {
  return new SparseMoE(
    new TopKRouter(d, E, { topK: k, normalize: true, seed: 1 }),
    Array.from({ length: E }, (_, e) => GatedMLP.create(d, ff, { activation: 'silu', seed: 10 * (e + 1) })),
    { dispatch },
  );
}

const forwardVariants: { k: number; dispatch: 'sparse' | 'dense' }[] = [
  { k: 1, dispatch: 'sparse' },
  { k: 2, dispatch: 'sparse' },
  { k: 4, dispatch: 'sparse' },
  { k: 2, dispatch: 'dense' },
];

const forward = forwardVariants.flatMap(({ k, dispatch }) =>
  [128, 512].map((T) =>
    benchCase({
      block: 'moe',
      series: `moe/${dispatch}-top${k}/forward`,
      axis: { name: 'T', value: T },
      phase: phaseOf(T),
      shape: { B: BATCH, T, d, ff, E, k },
      flops: forwardFlops(T, dispatch === 'dense' ? E : k),
      quick: T === 128,
      setup: () => {
        const moe = makeMoE(k, dispatch);
        const x = tf.randomNormal([BATCH, T, d]); // [B, T, d]
        return {
          run: () => moe.forward(x), // [B, T, d]
          teardown: () => {
            x.dispose();
            moe.dispose();
          },
        };
      },
    }),
  ),
);

const train = (['sparse', 'dense'] as const).map((dispatch) =>
  benchCase({
    block: 'moe',
    series: `moe/${dispatch}-top2/train`,
    axis: { name: 'T', value: 128 },
    phase: 'train',
    shape: { B: BATCH, T: 128, d, ff, E, k: 2 },
    flops: 3 * forwardFlops(128, dispatch === 'dense' ? E : 2),
    quick: true,
    setup: () => {
      const moe = makeMoE(2, dispatch);
      const x = tf.randomNormal([BATCH, 128, d]); // [B, T, d]
      const target = tf.randomNormal([BATCH, 128, d]); // [B, T, d]
      const loss = (): tf.Scalar => {
        const out = moe.forwardWithAux(x, { training: true });
        const task = tf.mean(tf.squaredDifference(out.output, target));
        return tf.addN([task, tf.mul(out.loadBalancingLoss, 0.02), tf.mul(out.zLoss, 1e-3)]) as tf.Scalar;
      };
      return sgdStep(loss, moe.trainableParameters(), () => {
        tf.dispose([x, target]);
        moe.dispose();
      });
    },
  }),
);

export const cases: BenchCase[] = [...forward, ...train];
