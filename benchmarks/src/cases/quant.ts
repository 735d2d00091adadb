/**
 * Low-bit weights against float32 on SmolLM-135M's shapes: the up projection (576 → 1536) as a plain `Linear` and
 * as a `QuantizedLinear` in int8, int4 (group 64) and ternary, at T = 1 (a decode step's matvec, bound by reading
 * the weight) and T = 128; and one decode step of a 4-layer SmolLM-135M-shaped model (ctx 128), float32 and after
 * `quantize(model, …)` to int8, int4 or ternary. GB/s counts the bytes of the weight as stored (4 per value in
 * float32, 1 in int8, ½ in int4 plus scales, ¼ in ternary) and the activations.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Linear, QuantizedLinear, quantize, type QuantScheme } from '@slmkit/core';
import { CausalLM, smollm135m } from '@slmkit/models';
import { benchCase, type BenchCase } from '../registry.js';
import { BATCH, F32, SMOLLM, phaseOf } from '../shapes.js';
import { modelDecodeStep } from './model.js';

type Variant = 'float32' | QuantScheme;
const VARIANTS: Variant[] = ['float32', 'int8', 'int4', 'ternary'];
const BYTES_PER_WEIGHT: Record<Variant, number> = { float32: 4, int8: 1 + 4 / SMOLLM.hidden, int4: 0.5 + 4.5 / 64, ternary: 0.25 };

const inF = SMOLLM.hidden;
const outF = SMOLLM.intermediate;

const matmuls = VARIANTS.flatMap((variant) =>
  [1, 128].map((T) =>
    benchCase({
      block: 'quant',
      series: `quant/up_proj/${variant}`,
      axis: { name: 'T', value: T },
      phase: phaseOf(T),
      shape: { B: BATCH, T, in: inF, out: outF },
      flops: 2 * BATCH * T * inF * outF,
      ...(T === 1 ? { bytes: inF * outF * BYTES_PER_WEIGHT[variant] + BATCH * T * (inF + outF) * F32 } : {}),
      quick: T === 1,
      setup: () => {
        const linear = new Linear(inF, outF, { bias: false, seed: 0 });
        const layer = variant === 'float32' ? linear : QuantizedLinear.fromLinear(linear, { scheme: variant, groupSize: 64 });
        const x = tf.randomNormal([BATCH, T, inF]); // [B, T, in]
        return {
          run: () => layer.forward(x), // [B, T, out]
          teardown: () => {
            x.dispose();
            layer.dispose();
            linear.dispose();
          },
        };
      },
    }),
  ),
);

const config = { ...smollm135m(), numLayers: 4 };
const ctx = 128;

const decode = VARIANTS.map((variant) =>
  benchCase({
    block: 'quant',
    series: `quant/decode-4-layers/${variant}`,
    axis: { name: 'ctx', value: ctx },
    phase: 'decode',
    shape: { B: BATCH, ctx, layers: config.numLayers, d: config.hiddenSize },
    quick: true,
    setup: () => {
      const lm = new CausalLM(config);
      if (variant !== 'float32') quantize(lm, { scheme: variant, groupSize: 64 });
      return modelDecodeStep(lm, tf.tensor2d([[7]], undefined, 'int32'), ctx); // ids [B, 1]
    },
  }),
);

export const cases: BenchCase[] = [...matmuls, ...decode];
