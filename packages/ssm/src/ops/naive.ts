/**
 * The naive selective scan: plain tfjs ops, one step per time position. The oracle the fused kernels are tested
 * against and the fallback on backends without one. It follows `selective_scan_ref` of `mamba_ssm`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * The kernel-level inputs of the scan. Optional inputs that are absent are empty tensors (shape `[0]`), so the
 * kernel always has the same nine inputs and its gradient can save all of them.
 */
export interface ScanKernelInputs extends Record<string, tf.Tensor> {
  u: tf.Tensor;
  delta: tf.Tensor;
  A: tf.Tensor;
  B: tf.Tensor;
  C: tf.Tensor;
  D: tf.Tensor;
  z: tf.Tensor;
  deltaBias: tf.Tensor;
  initialState: tf.Tensor;
}

/** The kernel-level attributes of the scan. */
export interface ScanKernelAttrs {
  /** `delta ← softplus(delta + deltaBias)`. */
  deltaSoftplus: boolean;
  /** Pack the last state after `y`: the output is `[Bt, D, L + N]` instead of `[Bt, D, L]`. */
  returnLastState: boolean;
}

/** Names of the kernel's inputs, in the order its gradient saves them. */
export const SCAN_INPUT_NAMES = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'deltaBias', 'initialState'] as const;

/** `[Bt, N, L]` or `[Bt, G, N, L]` to `[Bt, D, N, L]` (channel d reads group floor(d / (D / G))). */
function perChannel(x: tf.Tensor, channels: number): tf.Tensor4D {
  const x4 = (x.rank === 3 ? tf.expandDims(x, 1) : x) as tf.Tensor4D; // [Bt, G, N, L]
  const [Bt, G, N, L] = x4.shape;
  if (G === channels) return x4;
  // Repeat each group D / G times in place (a tile, not a gather: its gradient runs on every backend).
  const flat = tf.reshape(x4, [Bt, G, 1, N * L]); // [Bt, G, 1, N·L]
  const repeated = tf.tile(flat, [1, 1, channels / G, 1]); // [Bt, G, D / G, N·L]
  return tf.reshape(repeated, [Bt, channels, N, L]) as tf.Tensor4D; // [Bt, D, N, L]
}

/** The naive scan; see {@link ScanKernelInputs} and {@link ScanKernelAttrs}. */
export function naiveSelectiveScan(inputs: ScanKernelInputs, attrs: ScanKernelAttrs): tf.Tensor {
  return tf.tidy(() => {
    const { u, A } = inputs;
    const [Bt, Dc, L] = u.shape;
    const N = A.shape[1]!;
    let dt: tf.Tensor = inputs.delta; // [Bt, D, L]
    if (inputs.deltaBias.size > 0) dt = tf.add(dt, tf.reshape(inputs.deltaBias, [1, Dc, 1]));
    if (attrs.deltaSoftplus) dt = tf.softplus(dt);
    const dtT = tf.transpose(dt, [2, 0, 1]); // [L, Bt, D]
    const uT = tf.transpose(u, [2, 0, 1]); // [L, Bt, D]
    const dA = tf.exp(tf.mul(tf.expandDims(dtT, 3), A)); // [L, Bt, D, N]
    const Bc = tf.transpose(perChannel(inputs.B, Dc), [3, 0, 1, 2]); // [L, Bt, D, N]
    const Cc = tf.transpose(perChannel(inputs.C, Dc), [3, 0, 1, 2]); // [L, Bt, D, N]
    const dBu = tf.mul(tf.expandDims(tf.mul(dtT, uT), 3), Bc); // [L, Bt, D, N]
    const step = (x: tf.Tensor, t: number): tf.Tensor => tf.reshape(tf.slice(x, [t, 0, 0, 0], [1, Bt, Dc, N]), [Bt, Dc, N]);
    let h: tf.Tensor = inputs.initialState.size > 0 ? inputs.initialState : tf.zeros([Bt, Dc, N]); // [Bt, D, N]
    const ys: tf.Tensor[] = [];
    for (let t = 0; t < L; t++) {
      h = tf.add(tf.mul(step(dA, t), h), step(dBu, t)); // [Bt, D, N]
      ys.push(tf.sum(tf.mul(h, step(Cc, t)), -1, true)); // [Bt, D, 1]
    }
    let y: tf.Tensor = ys.length === 1 ? ys[0] : tf.concat(ys, 2); // [Bt, D, L]
    if (inputs.D.size > 0) y = tf.add(y, tf.mul(u, tf.reshape(inputs.D, [1, Dc, 1])));
    if (inputs.z.size > 0) y = tf.mul(y, tf.mul(inputs.z, tf.sigmoid(inputs.z)));
    return attrs.returnLastState ? tf.concat([y, h], 2) : y; // [Bt, D, L (+ N)]
  });
}
