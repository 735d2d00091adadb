/**
 * A few LoRA fine-tuning steps on the loaded model: a rank-4 adapter on every `q_proj` and `v_proj`, trained with
 * Adam on the prompt itself (next-token loss), only the adapter's parameters updated. The adapter is removed again
 * afterwards, so the model is the base one. Shared by the page and by the test's Node reference.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CausalLM } from '@slmkit/models';
import { addAdapter, deleteAdapter, trainAdapterStep } from '@slmkit/adapters';

/** Steps the page runs (about 3.4 s each on SwiftShader; four show the loss falling). */
export const LORA_STEPS = 4;

export interface LoRARun {
  /** The loss of each step, before its update. */
  losses: number[];
  /** Milliseconds per step. */
  stepMs: number[];
  /** How many layers got the adapter. */
  layers: number;
  /** Trainable parameters during training: the adapter's only. */
  trainable: number;
  /** `tf.memory().numTensors` before and after (equal: nothing leaks). */
  numTensors: { before: number; after: number };
}

export async function loraFineTune(model: CausalLM, ids: number[][], steps = LORA_STEPS): Promise<LoRARun> {
  const before = tf.memory().numTensors;
  const layers = addAdapter(model, 'demo', { target: ['q_proj', 'v_proj'], rank: 4, alpha: 8, seed: 0 });
  const trainable = model.parameterCount().trainable;
  const optimizer = tf.train.adam(2e-2);
  const input = tf.tensor2d(ids, undefined, 'int32'); // [B, T]
  const losses: number[] = [];
  const stepMs: number[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const t0 = performance.now();
      losses.push(await trainAdapterStep(model, optimizer, input));
      stepMs.push(performance.now() - t0);
    }
  } finally {
    input.dispose();
    optimizer.dispose();
    deleteAdapter(model, 'demo');
  }
  return { losses, stepMs, layers: layers.length, trainable, numTensors: { before, after: tf.memory().numTensors } };
}
