/**
 * `Embedding.forward`: gathering T rows of SmolLM-135M's 49152 × 576 table, with the default id range check (a
 * host read of the ids). GB/s counts the rows read and written plus the ids read.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Embedding } from '@slmkit/core';
import { benchCase, type BenchCase } from '../registry.js';
import { BATCH, F32, SMOLLM, phaseOf } from '../shapes.js';

const { vocab, hidden } = SMOLLM;

export const cases: BenchCase[] = [1, 128, 512, 2048].map((T) =>
  benchCase({
    block: 'embedding',
    series: 'embedding/gather',
    axis: { name: 'T', value: T },
    phase: phaseOf(T),
    shape: { B: BATCH, T, vocab, d: hidden },
    bytes: (2 * BATCH * T * hidden + BATCH * T) * F32,
    quick: T === 1 || T === 512,
    setup: () => {
      const embed = new Embedding(vocab, hidden, { seed: 0 });
      const ids = tf.randomUniform([BATCH, T], 0, vocab, 'int32') as tf.Tensor2D; // [B, T]
      return {
        run: () => embed.forward(ids), // [B, T, d]
        teardown: () => {
          ids.dispose();
          embed.dispose();
        },
      };
    },
  }),
);
