/**
 * The weight layout of `Linear` and of the tied head, before and after it changed, in one run: the old way keeps
 * Hugging Face's `[out, in]` weight and multiplies by its transpose (`matMul(x, W, false, true)`), the new way
 * keeps the weight `[in, out]` (`Linear.weight`, `Embedding.weight` as `[dim, vocab]`) and multiplies plainly
 * (`matMul(x, W)`). On tfjs-backend-wasm 4.22 only the plain form reaches XNNPACK's fast path.
 *
 * Shapes: SmolLM-135M's MLP up projection (576 -> 1536) at T 1 and 128, and its tied LM head (576 -> 49152) at a
 * decode step. GFLOP/s counts 2·T·in·out; at T = 1 the weight read dominates, so GB/s (weight plus activations)
 * is given there too.
 */
import * as tf from '@tensorflow/tfjs-core';
import { benchCase, type BenchCase } from '../registry.js';
import { BATCH, F32, SMOLLM, phaseOf } from '../shapes.js';

const LAYOUTS = [
  // x [T, in] · W [out, in]ᵀ: Hugging Face's layout, what Linear and Embedding.attend computed before.
  { variant: 'out-in-transposeB', transposeB: true },
  // x [T, in] · W [in, out]: the layout Linear and Embedding store now.
  { variant: 'in-out', transposeB: false },
] as const;

const MATMULS = [
  { name: 'up_proj', inF: SMOLLM.hidden, outF: SMOLLM.intermediate, Ts: [1, 128] },
  { name: 'tied_head', inF: SMOLLM.hidden, outF: SMOLLM.vocab, Ts: [1] },
];

export const cases: BenchCase[] = MATMULS.flatMap(({ name, inF, outF, Ts }) =>
  LAYOUTS.flatMap(({ variant, transposeB }) =>
    Ts.map((T) =>
      benchCase({
        block: 'linear-layout',
        series: `linear-layout/${name}/${variant}`,
        axis: { name: 'T', value: T },
        phase: phaseOf(T),
        shape: { B: BATCH, T, in: inF, out: outF },
        flops: 2 * BATCH * T * inF * outF,
        // Only a decode step is bound by memory; for a prefill, GB/s would say nothing.
        ...(T === 1 ? { bytes: (inF * outF + BATCH * T * (inF + outF)) * F32 } : {}),
        quick: true,
        setup: () => {
          const w = tf.randomNormal(transposeB ? [outF, inF] : [inF, outF]);
          const x = tf.randomNormal([BATCH * T, inF]); // [B·T, in]
          return {
            run: () => tf.matMul(x, w, false, transposeB), // [B·T, out]
            teardown: () => tf.dispose([x, w]),
          };
        },
      }),
    ),
  ),
);
