/**
 * The Mamba-1 selective scan at mamba-130m's inner width (d_inner 1536, N 16), batch 1, with the gate, the skip
 * and the softplus on, as the mixer calls it: the naive tfjs-ops scan (one small op chain per time step) against
 * the fused kernel, which runs on WebAssembly SIMD on cpu and wasm (`fused`), and against the same kernel's plain
 * typed-array loop, the path for engines without SIMD (`fused-loop`; before the SIMD module, it was the kernel).
 * The naive scan only runs at T = 128: it takes seconds there and grows worse than linearly. Target: the fused
 * scan at T = 128 under 15 ms on wasm, linear in T.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MambaMixer, SsmState, selectiveScan } from '@slmkit/ssm';
// Internal to @slmkit/ssm (not exported): switches its cpu / wasm kernel between SIMD and the plain loop. The
// package resolves to the same files through the workspace link, so this is the module the kernel uses.
import { setScanSimd } from '../../../packages/ssm/dist/ops/wasm/scan-simd.js';
import { benchCase, type BenchCase } from '../registry.js';
import { F32, phaseOf } from '../shapes.js';

const D = 1536;
const N = 16;

function scanCase(variant: 'naive' | 'fused' | 'fused-loop', T: number): BenchCase {
  const implementation = variant === 'naive' ? 'naive' : 'fused';
  return benchCase({
    block: 'ssm',
    series: `ssm/selective-scan/${variant}`,
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
      setScanSimd(variant !== 'fused-loop');
      return {
        run: () => selectiveScan(u, delta, A, B, C, { D: skip, z, deltaBias: bias, deltaSoftplus: true, implementation }), // [B, D, T]
        teardown: () => {
          setScanSimd(true);
          tf.dispose([u, delta, z, A, B, C, skip, bias]);
        },
      };
    },
  });
}

/** mamba-130m's mixer: hidden 768, inner 1536, N 16, conv 4, dt rank 48. */
const MIXER = { hiddenSize: 768, intermediateSize: D, stateSize: N, convKernel: 4, timeStepRank: 48 };

/** The whole mixer (projections, causal conv, scan, gate) over a prompt of T tokens, as a prefill runs it. */
function mixerPrefillCase(T: number): BenchCase {
  return benchCase({
    block: 'ssm',
    series: 'ssm/mamba-mixer/prefill',
    axis: { name: 'T', value: T },
    phase: phaseOf(T),
    shape: { B: 1, T, hidden: MIXER.hiddenSize, d: D, N },
    quick: T === 128,
    setup: () => {
      const mixer = new MambaMixer(MIXER);
      const x = tf.randomNormal([1, T, MIXER.hiddenSize]); // [B, T, hidden]
      return {
        run: () => mixer.forward(x), // [B, T, hidden]
        teardown: () => {
          x.dispose();
          mixer.dispose();
        },
      };
    },
  });
}

/**
 * One recurrent step after a prompt of `ctx` tokens. The state is fixed-size (conv window + [D, N] per row), so
 * unlike attention's decode the cost does not grow with the context.
 */
function mixerDecodeCase(ctx: number): BenchCase {
  return benchCase({
    block: 'ssm',
    series: 'ssm/mamba-mixer/decode',
    axis: { name: 'ctx', value: ctx },
    phase: 'decode',
    shape: { B: 1, ctx, hidden: MIXER.hiddenSize, d: D, N },
    quick: ctx === 2048,
    setup: () => {
      const mixer = new MambaMixer(MIXER);
      const state = new SsmState();
      tf.tidy(() => mixer.forward(tf.randomNormal([1, ctx, MIXER.hiddenSize]), { state })).dispose();
      const x = tf.randomNormal([1, 1, MIXER.hiddenSize]); // [B, 1, hidden]
      return {
        // Each repeat runs from a copy of the prefilled state, so every timed step sees exactly ctx positions.
        run: () => {
          const step = state.clone();
          const y = mixer.forward(x, { state: step }); // [B, 1, hidden]
          step.dispose();
          return y;
        },
        teardown: () => {
          x.dispose();
          state.dispose();
          mixer.dispose();
        },
      };
    },
  });
}

export const cases: BenchCase[] = [
  scanCase('naive', 128),
  ...[128, 512, 2048].map((T) => scanCase('fused', T)),
  ...[128, 512, 2048].map((T) => scanCase('fused-loop', T)),
  ...[128, 512, 2048].map((T) => mixerPrefillCase(T)),
  ...[128, 2048].map((ctx) => mixerDecodeCase(ctx)),
];
