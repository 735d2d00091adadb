/**
 * Small ops the MoE blocks need, written so that they compute and differentiate the same on every backend
 * (tfjs 4.22):
 *
 * - row gather and scatter-add with gradients: tfjs's own `gather` gradient needs `UnsortedSegmentSum`, which
 *   tfjs-backend-wasm does not have; these two are each other's gradient and use only `GatherV2` and `ScatterNd`
 *   (which sums duplicate rows), so a sparse MoE trains on wasm too;
 * - the top-k choice and the capacity mask as constants of the gradient (tfjs has no gradient for `TopK` or
 *   `Less`, and neither choice is differentiable anyway);
 * - a float one-hot (tfjs-backend-wasm's `OneHot` writes integer bits into a float32 output).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

type TwoInputGrad = (a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[] };

/** `tf.customGrad` for a function of two tensors (tfjs types the inputs as one rest parameter). */
function customGrad(f: TwoInputGrad): (a: tf.Tensor, b: tf.Tensor) => tf.Tensor {
  return tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;
}

/** `x[rows]`: `[N, D]` and int32 `[M]` to `[M, D]`; the gradient scatters back (summing repeated rows). */
export function gatherRows(x: tf.Tensor2D, rows: tf.Tensor1D): tf.Tensor2D {
  const n = x.shape[0];
  const op = customGrad((xs: tf.Tensor, idx: tf.Tensor, save: tf.GradSaveFunc) => {
    save([idx]);
    return {
      value: tf.gather(xs, idx), // [M, D]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
        tf.scatterND(tf.expandDims(saved[0], 1), dy, [n, dy.shape[1]!]), // [N, D]
        tf.zeros(saved[0].shape),
      ],
    };
  });
  return op(x, rows) as tf.Tensor2D;
}

/** Sums the rows of `values` `[M, D]` into `[N, D]` at int32 `rows` `[M]`; the gradient gathers. */
export function scatterAddRows(values: tf.Tensor2D, rows: tf.Tensor1D, n: number): tf.Tensor2D {
  const op = customGrad((v: tf.Tensor, idx: tf.Tensor, save: tf.GradSaveFunc) => {
    save([idx]);
    return {
      value: tf.scatterND(tf.expandDims(idx, 1), v, [n, v.shape[1]!]), // [N, D]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.gather(dy, saved[0]), tf.zeros(saved[0].shape)], // [M, D]
    };
  });
  return op(values, rows) as tf.Tensor2D;
}

/**
 * `f(x)` computed as a constant of the gradient: ops inside a custom gradient's forward are not recorded on the
 * tape, so ops without a gradient in tfjs (TopK, Less) may run there, and no gradient flows back to `x`.
 */
export function withoutGradient(x: tf.Tensor, f: (x: tf.Tensor) => tf.Tensor): tf.Tensor {
  const op = tf.customGrad(((input: tf.Tensor) => ({
    value: f(input),
    gradFunc: () => [tf.zeros(input.shape)], // tfjs wants float32 gradients, even for int inputs
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x);
}

/** The indices of the `k` largest entries of each row of `scores` `[N, E]`, int32 `[N, k]`; no gradient flows. */
export function topKIndices(scores: tf.Tensor2D, k: number): tf.Tensor2D {
  return withoutGradient(scores, (s) => tf.topk(s, k).indices) as tf.Tensor2D;
}

/** `oneHot(indices, depth)` as float32 (through int32, which every backend gets right). */
export function oneHotFloat(indices: tf.Tensor, depth: number): tf.Tensor {
  return tf.tidy(() => tf.cast(tf.oneHot(indices, depth), 'float32'));
}
