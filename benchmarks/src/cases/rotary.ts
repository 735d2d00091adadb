/**
 * `RotaryEmbedding` on SmolLM-135M's queries, `[B, 9, T, 64]`, θ 10000. Two series: `rotary/apply` rotates with
 * tables computed beforehand (what each layer pays, since a forward computes the tables once and shares them), and
 * `rotary/tables` computes the cos/sin tables for T positions (what a forward pays once). GB/s counts q read and
 * written plus the two tables read, for `apply`, and the two tables written, for `tables`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { RotaryEmbedding } from '@slmkit/core';
import { benchCase, type BenchCase } from '../registry.js';
import { BATCH, F32, SMOLLM, phaseOf } from '../shapes.js';

const { heads, headDim } = SMOLLM;
const TS = [1, 128, 512, 2048];
const makeRope = (): RotaryEmbedding =>
  new RotaryEmbedding({ headDim, base: SMOLLM.ropeTheta, maxPositionEmbeddings: SMOLLM.maxPositions });

const apply = TS.map((T) =>
  benchCase({
    block: 'rotary',
    series: 'rotary/apply',
    axis: { name: 'T', value: T },
    phase: phaseOf(T),
    shape: { B: BATCH, H: heads, T, hd: headDim },
    bytes: (2 * BATCH * heads * T * headDim + 2 * T * headDim) * F32,
    quick: T === 1 || T === 512,
    setup: () => {
      const rope = makeRope();
      const tables = rope.cosSin({ offset: 0, length: T }); // cos, sin: [T, hd]
      const q = tf.randomNormal([BATCH, heads, T, headDim]) as tf.Tensor4D; // [B, H, T, hd]
      return {
        run: () => rope.apply(q, tables), // [B, H, T, hd]
        teardown: () => tf.dispose([q, tables.cos, tables.sin]),
      };
    },
  }),
);

const tables = TS.map((T) =>
  benchCase({
    block: 'rotary',
    series: 'rotary/tables',
    axis: { name: 'T', value: T },
    phase: phaseOf(T),
    shape: { T, hd: headDim },
    bytes: 2 * T * headDim * F32,
    quick: T === 512,
    setup: () => {
      const rope = makeRope();
      return {
        run: () => {
          const { cos, sin } = rope.cosSin({ offset: 0, length: T }); // [T, hd] each
          return [cos, sin];
        },
        teardown: () => undefined,
      };
    },
  }),
);

export const cases: BenchCase[] = [...apply, ...tables];
