/**
 * `Linear`, the matmul every projection is made of, at SmolLM-135M's widths; and the bare matmul in both weight
 * layouts, because the backends do not treat them alike: `matmul-nt` multiplies by a weight in Hugging Face's
 * `[out, in]` layout (`x·Wᵀ`, transposeB), `matmul-nn` by one stored `[in, out]` (`x·W`), which is how `Linear`
 * keeps its weight since transposeB turned out ~10x slower on wasm.
 *
 * GFLOP/s counts the 2·T·in·out multiply-adds. At T = 1 the weight read dominates, so GB/s (weight plus
 * activations) is given there too.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Linear } from '@slmkit/core';
import { benchCase, type BenchCase } from '../registry.js';
import { BATCH, F32, SMOLLM, phaseOf } from '../shapes.js';

const shapeOf = (T: number, inF: number, outF: number) => ({
  phase: phaseOf(T),
  shape: { B: BATCH, T, in: inF, out: outF },
  flops: 2 * BATCH * T * inF * outF,
  // Only a decode step is bound by memory; for a prefill, GB/s would say nothing.
  ...(T === 1 ? { bytes: (inF * outF + BATCH * T * (inF + outF)) * F32 } : {}),
});

/** The projections worth timing apart: the MLP's up/gate width and the untied LM head. */
const PROJECTIONS = [
  { name: 'up_proj', inF: SMOLLM.hidden, outF: SMOLLM.intermediate, Ts: [1, 128, 512], quick: [1, 128] },
  { name: 'lm_head', inF: SMOLLM.hidden, outF: SMOLLM.vocab, Ts: [1, 128], quick: [1] },
];

// Again in a child process: up_proj at T 128 with its matmul on XNNPACK (`-xnnpack`, SLMKIT_WASM_XNNPACK=1), the
// before of slmkit's GEMM; up_proj at T 128 and the decode step's lm_head on two wasm threads (`-2threads`), the
// GEMM split over both cores.
const EXTRA: Record<string, [number, 'xnnpack' | '2threads'][]> = {
  up_proj: [
    [128, 'xnnpack'],
    [128, '2threads'],
  ],
  lm_head: [[1, '2threads']],
};
const modules = PROJECTIONS.flatMap(({ name, inF, outF, Ts, quick }) =>
  [...Ts.map((T) => [T, null] as const), ...(EXTRA[name] ?? [])].map(([T, variant]) =>
    benchCase({
      block: 'linear',
      series: `linear/${name}${variant != null ? `-${variant}` : ''}`,
      axis: { name: 'T', value: T },
      ...shapeOf(T, inF, outF),
      quick: variant != null || quick.includes(T),
      ...(variant === 'xnnpack' ? { env: { SLMKIT_WASM_XNNPACK: '1' } } : {}),
      ...(variant === '2threads' ? { threads: 2 } : {}),
      setup: () => {
        const layer = new Linear(inF, outF, { bias: false, seed: 0 });
        const x = tf.randomNormal([BATCH, T, inF]); // [B, T, in]
        return {
          run: () => layer.forward(x), // [B, T, out]
          teardown: () => {
            x.dispose();
            layer.dispose();
          },
        };
      },
    }),
  ),
);

const inF = SMOLLM.hidden;
const outF = SMOLLM.intermediate;
const LAYOUTS = [
  { series: 'linear/matmul-nt', transposeB: true, weightShape: [outF, inF] }, // x [T, in] · W [out, in]ᵀ
  { series: 'linear/matmul-nn', transposeB: false, weightShape: [inF, outF] }, // x [T, in] · W [in, out]
];

const matmuls = LAYOUTS.flatMap(({ series, transposeB, weightShape }) =>
  [1, 128, 512].map((T) =>
    benchCase({
      block: 'linear',
      series,
      axis: { name: 'T', value: T },
      ...shapeOf(T, inF, outF),
      // linear-layout.ts times the same two layouts in the quick subset.
      quick: false,
      setup: () => {
        const w = tf.randomNormal(weightShape);
        const x = tf.randomNormal([BATCH * T, inF]); // [B·T, in]
        return {
          run: () => tf.matMul(x, w, false, transposeB), // [B·T, out]
          teardown: () => tf.dispose([x, w]),
        };
      },
    }),
  ),
);

/**
 * The two transposed products of a projection's gradient, at up_proj's widths and T 128: `dx = dy·Wᵀ` and
 * `dW = xᵀ·dy` (`W` stored `[in, out]` as `Linear` keeps it). On wasm slmkit rewrites them as plain products for
 * XNNPACK; the `-tfjs` series run the same products through tfjs's own kernel (its scalar loop), in a child
 * process of the same run with `SLMKIT_WASM_TFJS_MATMUL=1`: the before and after.
 */
const GRAD_T = 128;
const gradients = (['dx', 'dw'] as const).flatMap((product) =>
  [false, true].map((tfjsKernel) =>
    benchCase({
      block: 'linear',
      series: `linear/grad-${product}${tfjsKernel ? '-tfjs' : ''}`,
      axis: { name: 'T', value: GRAD_T },
      phase: 'train',
      shape: { B: BATCH, T: GRAD_T, in: inF, out: outF },
      flops: 2 * BATCH * GRAD_T * inF * outF,
      quick: true,
      ...(tfjsKernel ? { env: { SLMKIT_WASM_TFJS_MATMUL: '1' } } : {}),
      setup: () => {
        const w = tf.randomNormal([inF, outF]); // [in, out]
        const x = tf.randomNormal([BATCH * GRAD_T, inF]); // [N, in]
        const dy = tf.randomNormal([BATCH * GRAD_T, outF]); // [N, out]
        return {
          // dx: [N, out] · [in, out]ᵀ -> [N, in]; dW: [N, in]ᵀ · [N, out] -> [in, out]
          run: () => (product === 'dx' ? tf.matMul(dy, w, false, true) : tf.matMul(x, dy, true, false)),
          teardown: () => tf.dispose([w, x, dy]),
        };
      },
    }),
  ),
);

export const cases: BenchCase[] = [...modules, ...matmuls, ...gradients];
