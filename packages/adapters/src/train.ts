/**
 * Fine-tuning adapters: the next-token loss and one optimiser step in which only the active adapter's parameters
 * move.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, type Module } from '@slmkit/core';
import { activeAdapter, adaptedLayers, adapterParameters } from './model.js';

/**
 * What {@link trainAdapterStep} trains: a module with a forward from token ids `[B, T]` to logits `[B, T, V]`
 * (a `CausalLM` or a `MambaLM` from `@slmkit/models`).
 *
 * @example
 * ```ts
 * import { CausalLM, configFromHF } from '@slmkit/models';
 * import type { AdaptableLM } from '@slmkit/adapters';
 * const model: AdaptableLM = new CausalLM(configFromHF({
 *   model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
 *   num_attention_heads: 4, num_key_value_heads: 2,
 * }));
 * model.dispose();
 * ```
 */
export type AdaptableLM = Module & { forward(ids: tf.Tensor2D, options?: { attentionMask?: tf.Tensor2D }): tf.Tensor3D };

/**
 * The mean next-token cross-entropy of causal-LM logits: position `t` predicts token `t + 1`, over the positions
 * where `mask` (default all ones) is 1 for the target token.
 *
 * @param logits - `[B, T, V]`.
 * @param ids - int32 `[B, T]`, the tokens the logits were computed from.
 * @param mask - `[B, T]`, 1 for tokens to learn, 0 for padding or prompt tokens the loss should skip.
 * @returns a scalar; the caller owns it.
 * @throws {@link @slmkit/core!ShapeError | ShapeError} when the shapes disagree or `T < 2`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { nextTokenLoss } from '@slmkit/adapters';
 * const logits = tf.zeros([1, 3, 4]) as tf.Tensor3D; // uniform over 4 tokens
 * const ids = tf.tensor2d([[0, 1, 2]], undefined, 'int32');
 * const loss = nextTokenLoss(logits, ids);
 * console.log(loss.dataSync()[0]); // ln 4 ≈ 1.386
 * tf.dispose([logits, ids, loss]);
 * ```
 */
export function nextTokenLoss(logits: tf.Tensor3D, ids: tf.Tensor2D, mask?: tf.Tensor2D): tf.Scalar {
  if (logits.rank !== 3 || ids.rank !== 2 || logits.shape[0] !== ids.shape[0] || logits.shape[1] !== ids.shape[1] || ids.shape[1] < 2) {
    throw new ShapeError(`nextTokenLoss: logits [B, T, V] and ids [B, T] with T >= 2 must agree, found [${logits.shape.join(', ')}] and [${ids.shape.join(', ')}]`, {
      field: 'ids',
      expected: [logits.shape[0], logits.shape[1]],
      found: ids.shape.slice(),
    });
  }
  if (mask != null && (mask.rank !== 2 || mask.shape[0] !== ids.shape[0] || mask.shape[1] !== ids.shape[1])) {
    throw new ShapeError(`nextTokenLoss: mask must be [${ids.shape.join(', ')}], found [${mask.shape.join(', ')}]`, { field: 'mask', expected: ids.shape.slice(), found: mask.shape.slice() });
  }
  const [B, T, V] = logits.shape;
  return tf.tidy(() => {
    const predicting = tf.slice(logits, [0, 0, 0], [B, T - 1, V]); // [B, T-1, V]
    const targets = tf.slice(ids, [0, 1], [B, T - 1]); // [B, T-1]
    const logZ = tf.logSumExp(predicting, 2); // [B, T-1]
    const picked = tf.sum(tf.mul(predicting, tf.oneHot(tf.cast(targets, 'int32'), V)), 2); // [B, T-1]
    const nll = tf.sub(logZ, picked); // [B, T-1]
    if (mask == null) return tf.mean(nll) as tf.Scalar;
    const m = tf.cast(tf.slice(mask, [0, 1], [B, T - 1]), 'float32'); // [B, T-1]
    return tf.div(tf.sum(tf.mul(nll, m)), tf.maximum(tf.sum(m), 1)) as tf.Scalar;
  });
}

/**
 * Options of {@link trainAdapterStep}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { TrainAdapterStepOptions } from '@slmkit/adapters';
 * const options: TrainAdapterStepOptions = { lossMask: tf.tensor2d([[0, 0, 1, 1]]) }; // learn the answer only
 * ```
 */
export interface TrainAdapterStepOptions {
  /** `[B, T]`: which target tokens count in the loss (see {@link nextTokenLoss}); default all. */
  lossMask?: tf.Tensor2D;
  /** `[B, T]` attention mask passed to the model's forward (1 real, 0 padding). */
  attentionMask?: tf.Tensor2D;
}

/**
 * One fine-tuning step of the active adapter: a forward in training mode (the adapters' dropout on), the
 * next-token loss, gradients for the active adapter's parameters only, and the optimiser's update. The base
 * weights are not in the optimiser's variable list, so they stay bit-identical; every intermediate tensor is freed
 * (an optimiser such as Adam keeps its own slots, made at its first step).
 *
 * @param ids - int32 `[B, T]` token ids (a tensor the caller keeps, or arrays).
 * @returns the loss before the update.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when the model has no active adapter or it is merged.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { CausalLM, configFromHF } from '@slmkit/models';
 * import { addAdapter, trainAdapterStep } from '@slmkit/adapters';
 * const model = new CausalLM(configFromHF({
 *   model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
 *   num_attention_heads: 4, num_key_value_heads: 2,
 * }));
 * addAdapter(model, 'default', { target: ['q_proj', 'v_proj'], rank: 4, alpha: 8 });
 * const optimizer = tf.train.adam(1e-2);
 * for (let step = 0; step < 5; step++) {
 *   const loss = await trainAdapterStep(model, optimizer, [[1, 2, 3, 4, 5, 6]]);
 *   console.log(step, loss.toFixed(3)); // falls
 * }
 * optimizer.dispose();
 * model.dispose();
 * ```
 */
export async function trainAdapterStep(
  model: AdaptableLM,
  optimizer: tf.Optimizer,
  ids: tf.Tensor2D | number[][],
  options: TrainAdapterStepOptions = {},
): Promise<number> {
  const active = activeAdapter(model);
  const layers = adaptedLayers(model);
  if (active == null) {
    throw new ConfigError('trainAdapterStep: no active adapter (addAdapter, loadAdapter or setAdapter first)', { field: 'model', expected: 'an active adapter', found: 'none' });
  }
  const merged = layers.find(([, l]) => l.mergedAdapter != null);
  if (merged != null) {
    throw new ConfigError(`trainAdapterStep: adapter "${merged[1].mergedAdapter}" is merged into ${merged[0]}; unmergeAdapters first`, { field: 'merged', expected: 'no merged adapter', found: merged[0] });
  }
  const vars = adapterParameters(model, active);
  const idsT = ids instanceof tf.Tensor ? ids : tf.tensor2d(ids, undefined, 'int32'); // [B, T]
  for (const [, l] of layers) l.training = true;
  try {
    // An async read leaves a host copy of the ids, which the embedding's synchronous id check needs on WebGPU once
    // the same ids tensor has been uploaded by an earlier step (free on cpu and wasm).
    await idsT.data();
    const loss = optimizer.minimize(
      () => tf.tidy(() => nextTokenLoss(model.forward(idsT, { attentionMask: options.attentionMask }), idsT, options.lossMask)),
      true,
      vars,
    )!;
    const value = (await loss.data())[0]!;
    loss.dispose();
    return value;
  } finally {
    for (const [, l] of layers) l.training = false;
    if (idsT !== ids) idsT.dispose();
  }
}
