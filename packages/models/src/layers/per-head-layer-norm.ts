/**
 * `PerHeadLayerNorm`: one LayerNorm per attention head, as StableLM's `qk_layernorm` stores it.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Module, ShapeError, checkPositiveInt } from '@slmkit/core';
import { ModuleList } from './module-list.js';

/**
 * A separate LayerNorm over `headDim` for each of `numHeads` heads (StableLM's `StableLmLayerNormPerHead`):
 *
 * `y[..., h, :] = (x[..., h, :] − mean) / √(var + ε) ⊙ w_h (+ b_h)`
 *
 * The per-head norms are registered as `norms.<h>` (`norms.0.weight`, …, each `[headDim]`), the names of a
 * StableLM checkpoint. The statistics are those of one LayerNorm; only the weights differ per head, so the whole
 * input is normalised at once and scaled by the stacked `[numHeads, headDim]` weights.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { PerHeadLayerNorm } from '@slmkit/models';
 * const norm = new PerHeadLayerNorm(3, 16, { eps: 1e-5, bias: false });
 * const q = tf.randomNormal([2, 5, 3, 16]); // [B, T, H, Dh]
 * const y = norm.forward(q); // [2, 5, 3, 16]
 * console.log(norm.namedParameters().map(([n]) => n)); // ["norms.0.weight", "norms.1.weight", "norms.2.weight"]
 * tf.dispose([q, y]);
 * norm.dispose();
 * ```
 */
export class PerHeadLayerNorm extends Module {
  /** The heads `H`. */
  readonly numHeads: number;
  /** The normalised width `Dh`. */
  readonly headDim: number;
  /** The per-head norms, head `h` at index `h`. */
  readonly norms: readonly LayerNorm[];
  private readonly eps: number;

  /**
   * @param numHeads - heads `H` (a positive integer).
   * @param headDim - width `Dh` of each head (a positive integer).
   * @param options - ε and whether each norm has a bias (default `false`, as in StableLM).
   * @throws `ConfigError` for a bad size or ε.
   */
  constructor(numHeads: number, headDim: number, options: { eps: number; bias?: boolean }) {
    super();
    checkPositiveInt('PerHeadLayerNorm', 'numHeads', numHeads);
    checkPositiveInt('PerHeadLayerNorm', 'headDim', headDim);
    const list = new ModuleList(Array.from({ length: numHeads }, () => new LayerNorm(headDim, { eps: options.eps, bias: options.bias ?? false })));
    this.registerModule('norms', list);
    this.norms = list.items as LayerNorm[];
    this.numHeads = numHeads;
    this.headDim = headDim;
    this.eps = options.eps;
  }

  /**
   * @param x - float32 `[..., numHeads, headDim]`.
   * @returns `[..., numHeads, headDim]`; the caller owns it.
   * @throws `ShapeError` when the last two dimensions are not `[numHeads, headDim]`.
   */
  forward(x: tf.Tensor): tf.Tensor {
    if (x.rank < 2 || x.shape[x.rank - 1] !== this.headDim || x.shape[x.rank - 2] !== this.numHeads || x.dtype !== 'float32') {
      throw new ShapeError(
        `PerHeadLayerNorm: input must be float32 [..., ${this.numHeads}, ${this.headDim}], found ${x.dtype} [${x.shape.join(', ')}]`,
        { field: 'x', expected: [this.numHeads, this.headDim], found: x.shape.slice() },
      );
    }
    return tf.tidy(() => {
      const centred = tf.sub(x, tf.mean(x, -1, true)); // [..., H, Dh]
      const variance = tf.mean(tf.square(centred), -1, true); // [..., H, 1]
      let y = tf.mul(centred, tf.rsqrt(tf.add(variance, this.eps))); // [..., H, Dh]
      y = tf.mul(y, tf.stack(this.norms.map((n) => n.weight!))); // weights [H, Dh]
      const biases = this.norms.map((n) => n.bias).filter((b): b is tf.Variable => b != null);
      if (biases.length === this.numHeads) y = tf.add(y, tf.stack(biases)); // biases [H, Dh]
      return y;
    });
  }
}
