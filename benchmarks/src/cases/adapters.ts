/**
 * Adapters on SmolLM-135M's `up_proj` (576 → 1536), batch 1: the plain `Linear` against a rank-16 LoRA and DoRA
 * wrapped around the same layer, unmerged (the base matmul plus `x Aᵀ Bᵀ`; DoRA also recomputes `‖W + s B A‖` per
 * row on every call, as PEFT does) and merged (one matmul, what serving a merged adapter costs). GFLOP/s counts the
 * matmuls each form performs: `2·T·in·out` for the base, plus `2·T·r·(in + out)` for the low-rank path, plus
 * `2·in·r·out` for DoRA's `B A`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Linear } from '@slmkit/core';
import { LoRALinear } from '@slmkit/adapters';
import { benchCase, type BenchCase } from '../registry.js';
import { BATCH, SMOLLM, phaseOf } from '../shapes.js';

const inF = SMOLLM.hidden;
const outF = SMOLLM.intermediate;
const rank = 16;

type Variant = 'linear' | 'lora' | 'lora-merged' | 'dora' | 'dora-merged';
const VARIANTS: Variant[] = ['linear', 'lora', 'lora-merged', 'dora', 'dora-merged'];

function flops(variant: Variant, T: number): number {
  const base = 2 * BATCH * T * inF * outF;
  if (variant === 'linear' || variant.endsWith('merged')) return base;
  const low = 2 * BATCH * T * rank * (inF + outF);
  return variant === 'dora' ? base + low + 2 * inF * rank * outF : base + low;
}

export const cases: BenchCase[] = VARIANTS.flatMap((variant) =>
  [1, 128].map((T) =>
    benchCase({
      block: 'adapters',
      series: `adapters/${variant === 'linear' ? 'linear' : `${variant.split('-')[0]}-r${rank}${variant.endsWith('merged') ? '-merged' : ''}`}/forward`,
      axis: { name: 'T', value: T },
      phase: phaseOf(T),
      shape: { B: BATCH, T, in: inF, out: outF, r: variant === 'linear' ? 0 : rank },
      flops: flops(variant, T),
      quick: true,
      setup: () => {
        const base = new Linear(inF, outF, { bias: false, seed: 0 });
        let layer: Linear | LoRALinear = base;
        if (variant !== 'linear') {
          const lora = new LoRALinear(base, { rank, alpha: 32, dora: variant.startsWith('dora'), seed: 1 });
          // A trained adapter: B is not zero.
          const adapter = lora.adapter('default')!;
          tf.tidy(() => adapter.loraB.assign(tf.randomNormal(adapter.loraB.shape, 0, 0.02, 'float32', 2)));
          if (variant.endsWith('merged')) lora.merge();
          layer = lora;
        }
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
