/**
 * `CausalConv1d`: the depthwise causal convolution in front of Mamba's scan, with `torch.nn.Conv1d`'s parameter
 * layout.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ShapeError, checkFlag, checkPositiveInt } from '@slmkit/core';

/**
 * A depthwise causal 1-D convolution over time: for each channel `c`,
 * `y_t[c] = b[c] + Σ_{k<K} w[c, 0, k] · x_{t−K+1+k}[c]`, with the `K − 1` positions before the first taken from
 * `past` (zeros by default). Parameters `weight` `[C, 1, K]` and `bias` `[C]`, as `nn.Conv1d(C, C, K,
 * groups=C, padding=K−1)` stores them. Activations are channels-last, `[B, L, C]`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { CausalConv1d } from '@slmkit/ssm';
 * const conv = new CausalConv1d(8, 4);
 * const x = tf.randomNormal([1, 5, 8]);
 * const { y, past } = conv.forward(x); // y [1, 5, 8]; past: the last 3 inputs, [1, 3, 8]
 * console.log(y.shape, past.shape);
 * tf.dispose([x, y, past]);
 * conv.dispose();
 * ```
 */
export class CausalConv1d extends Module {
  /** Channels. */
  readonly channels: number;
  /** Kernel width `K`. */
  readonly kernelSize: number;
  /** `[C, 1, K]`. */
  readonly weight: tf.Variable;
  /** `[C]`, or undefined without bias. */
  readonly bias: tf.Variable | undefined;

  /**
   * @param channels - channels `C` (a positive integer).
   * @param kernelSize - `K` (a positive integer; Mamba's `conv_kernel`, 4).
   * @param options - `bias` (default true: Mamba's `use_conv_bias`).
   * @throws {@link @slmkit/core!ConfigError | ConfigError} for a non-positive size or a non-boolean flag.
   */
  constructor(channels: number, kernelSize: number, options: { bias?: boolean } = {}) {
    super();
    checkPositiveInt('CausalConv1d', 'channels', channels);
    checkPositiveInt('CausalConv1d', 'kernelSize', kernelSize);
    const bias = checkFlag('CausalConv1d', 'bias', options.bias, true);
    this.channels = channels;
    this.kernelSize = kernelSize;
    const bound = 1 / Math.sqrt(kernelSize);
    this.weight = this.registerParameter('weight', tf.randomUniform([channels, 1, kernelSize], -bound, bound));
    this.bias = bias ? this.registerParameter('bias', tf.randomUniform([channels], -bound, bound)) : undefined;
  }

  /**
   * @param x - float32 `[B, L, C]`.
   * @param past - the `K − 1` inputs before `x`, `[B, K − 1, C]` (default zeros: the causal padding).
   * @returns `y` `[B, L, C]` and the new `past`: the last `K − 1` inputs of `past ++ x`. The caller owns both.
   * @throws {@link @slmkit/core!ShapeError | ShapeError} for a wrong shape or dtype.
   */
  forward(x: tf.Tensor, past?: tf.Tensor): { y: tf.Tensor3D; past: tf.Tensor3D } {
    const C = this.channels;
    const K = this.kernelSize;
    if (!(x instanceof tf.Tensor) || x.rank !== 3 || x.shape[2] !== C || x.dtype !== 'float32') {
      const found = x instanceof tf.Tensor ? `${x.dtype} [${x.shape.join(', ')}]` : typeof x;
      throw new ShapeError(`CausalConv1d: x must be float32 [B, L, ${C}], found ${found}`, { field: 'x', expected: `[B, L, ${C}]`, found });
    }
    const [Bt, L] = x.shape;
    if (past != null && (past.rank !== 3 || past.shape[0] !== Bt || past.shape[1] !== K - 1 || past.shape[2] !== C)) {
      throw new ShapeError(`CausalConv1d: past must be [${Bt}, ${K - 1}, ${C}], found [${past.shape.join(', ')}]`, {
        field: 'past',
        expected: [Bt, K - 1, C],
        found: past.shape.slice(),
      });
    }
    return tf.tidy(() => {
      const padded = tf.concat([past ?? tf.zeros([Bt!, K - 1, C]), x], 1); // [B, K − 1 + L, C]
      const w = tf.reshape(this.weight, [C, K]); // [C, K]
      let y: tf.Tensor = this.bias != null ? tf.reshape(this.bias, [1, 1, C]) : tf.zeros([1, 1, C]);
      for (let k = 0; k < K; k++) {
        const tap = tf.reshape(tf.slice(w, [0, k], [C, 1]), [1, 1, C]); // [1, 1, C]
        y = tf.add(y, tf.mul(tf.slice(padded, [0, k, 0], [Bt!, L!, C]), tap)); // [B, L, C]
      }
      const next = tf.slice(padded, [0, L!, 0], [Bt!, K - 1, C]) as tf.Tensor3D; // [B, K − 1, C]
      return { y: y as tf.Tensor3D, past: next };
    });
  }
}
