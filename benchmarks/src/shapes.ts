/**
 * The default shapes: SmolLM-135M (HuggingFaceTB/SmolLM-135M config.json), the small Llama-style model every
 * case is sized after unless it says otherwise.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CaseInstance } from './registry.js';

export const SMOLLM = {
  hidden: 576,
  heads: 9,
  kvHeads: 3,
  headDim: 64,
  intermediate: 1536,
  vocab: 49152,
  layers: 30,
  ropeTheta: 10000,
  maxPositions: 2048,
  rmsEps: 1e-5,
} as const;

/** Batch size of every case: the single-stream inference and fine-tuning this library is for. */
export const BATCH = 1;

/** Bytes in a float32 or int32. */
export const F32 = 4;

/** Prefill is the phase of every T > 1; a single new token is a decode step. */
export function phaseOf(T: number): 'prefill' | 'decode' {
  return T === 1 ? 'decode' : 'prefill';
}

/**
 * A training step's case instance: `loss` differentiated with `tf.variableGrads` for `params`, one SGD update
 * (lr 1e-3), and the loss returned (downloading it after the update waits for the whole step, update included, on
 * async backends). `dispose` frees what the case built, at teardown.
 */
export function sgdStep(loss: () => tf.Scalar, params: tf.Variable[], dispose: () => void): CaseInstance {
  const optimizer = tf.train.sgd(1e-3);
  return {
    run: () => {
      const { value, grads } = tf.variableGrads(loss, params);
      optimizer.applyGradients(grads);
      tf.dispose(Object.values(grads));
      return value;
    },
    teardown: () => {
      optimizer.dispose();
      dispose();
    },
  };
}
