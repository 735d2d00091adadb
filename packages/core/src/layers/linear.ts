/**
 * `Linear`: the affine map every projection in a transformer or SSM block is made of, loading Hugging Face's
 * weights, and `Projection`, the interface blocks accept so LoRA or quantised linears can replace it.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { Module } from '../module.js';
import { checkFlag, checkLastDim, checkPositiveInt } from '../validate.js';

/**
 * What a block needs from one of its projections: a {@link Module} (so its parameters load, count and freeze
 * with the block's) with a `forward` mapping `[..., in]` to `[..., out]`. {@link Linear} is one; a LoRA or a
 * quantised linear is another. `inFeatures` / `outFeatures`, where present, let blocks check that their
 * projections fit together when they are built rather than at the first forward.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Linear, type Projection } from '@slmkit/core';
 * const p: Projection = new Linear(4, 8, { bias: false });
 * const y = p.forward(tf.ones([2, 4])); // [2, 8]
 * console.log(y.shape, p.outFeatures); // [2, 8] 8
 * y.dispose();
 * p.dispose();
 * ```
 */
export type Projection = Module & {
  /** Maps `[..., inFeatures]` to `[..., outFeatures]`; the caller owns the result. */
  forward(x: tf.Tensor): tf.Tensor;
  /** Input width, where known. */
  readonly inFeatures?: number;
  /** Output width, where known. */
  readonly outFeatures?: number;
};

/**
 * Options of {@link Linear}.
 *
 * @example
 * ```ts
 * import type { LinearOptions } from '@slmkit/core';
 * const qProj: LinearOptions = { bias: true, seed: 42 };
 * ```
 */
export interface LinearOptions {
  /** Whether the layer has an additive bias `b` (default `true`, like `torch.nn.Linear`). */
  bias?: boolean;
  /**
   * Seed of the initial values. With a seed, two layers of the same shape start identical on every backend
   * (the draw is made in JavaScript, not on the device); without one, `Math.random` is used. The bias draws
   * from `seed + 1` so that it is not a copy of the weight's first row.
   */
  seed?: number;
}

/**
 * An affine map, `y = x Wᵀ + b`, with `W` of shape `[outFeatures, inFeatures]` and `b` of shape `[outFeatures]`,
 * as in `torch.nn.Linear`. Parameters are named `weight` and `bias`, as in a Hugging Face `state_dict`.
 *
 * The weight is stored transposed: the variable {@link Linear.weight} is `Wᵀ`, shape `[inFeatures, outFeatures]`,
 * and the forward is a plain `matMul(x, weight)`: on tfjs-backend-wasm 4.22, Node's default CPU backend, only
 * that form reaches XNNPACK's fast path, and multiplying by a transposed `[out, in]` weight is about 15x slower.
 * The checkpoint keeps Hugging Face's layout: {@link Module.loadWeights} takes the `[outFeatures, inFeatures]`
 * tensor a `state_dict` holds under `weight` (and reports shapes that way), and {@link Module.stateDict} gives it
 * back in that layout; see {@link ParameterOptions.transposed}.
 *
 * Inputs of any rank ≥ 1 are accepted: every dimension but the last is a batch dimension.
 *
 * Initialisation follows `torch.nn.Linear`: `W` and `b` uniform in `±1/√inFeatures` (PyTorch's
 * `kaiming_uniform_(a=√5)` reduces to that bound), `W` drawn row by row in the `[out, in]` layout so that a seed
 * gives the same map as it did before the weight was stored transposed. Pretrained weights replace it through
 * {@link Module.loadWeights}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Linear } from '@slmkit/core';
 * const proj = new Linear(16, 32, { bias: false, seed: 0 });
 * const x = tf.randomNormal([2, 5, 16]);
 * const y = proj.forward(x); // [2, 5, 32]
 * console.log(y.shape, proj.namedParameters().map(([n]) => n)); // [2, 5, 32] ["weight"]
 * tf.dispose([x, y]);
 * proj.dispose();
 * ```
 */
export class Linear extends Module {
  /** Width of the input's last dimension. */
  readonly inFeatures: number;
  /** Width of the output's last dimension. */
  readonly outFeatures: number;
  /**
   * `Wᵀ`, shape `[inFeatures, outFeatures]`: the transpose of Hugging Face's `weight` (`[outFeatures,
   * inFeatures]`), which is what checkpoints, {@link Module.loadWeights} and {@link Module.stateDict} use. To set
   * it from an `[out, in]` tensor, load it: `await linear.loadWeights({ weight })`.
   */
  readonly weight: tf.Variable;
  /** `b`, shape `[outFeatures]`; `undefined` when built with `bias: false`. */
  readonly bias: tf.Variable | undefined;
  private delegateTo: Projection | undefined = undefined;

  /**
   * @param inFeatures - width of the input's last dimension (a positive integer).
   * @param outFeatures - width of the output's last dimension (a positive integer).
   * @param options - bias and initialisation seed; see {@link LinearOptions}.
   * @throws {@link ConfigError} when a width is not a positive integer or an option has the wrong type.
   */
  constructor(inFeatures: number, outFeatures: number, options: LinearOptions = {}) {
    super();
    checkPositiveInt('Linear', 'inFeatures', inFeatures);
    checkPositiveInt('Linear', 'outFeatures', outFeatures);
    const bias = checkFlag('Linear', 'bias', options.bias, true);
    const seed = options.seed;
    if (seed != null && !Number.isFinite(seed)) {
      throw new ConfigError(`Linear: seed must be a finite number, found ${String(seed)}`, {
        field: 'seed',
        expected: 'a finite number',
        found: seed,
      });
    }
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.registerParameter(
      'weight',
      tf.tidy(() => tf.transpose(tf.randomUniform([outFeatures, inFeatures], -bound, bound, 'float32', seed))), // [in, out]
      { transposed: true },
    );
    this.bias = bias
      ? this.registerParameter('bias', tf.randomUniform([outFeatures], -bound, bound, 'float32', seed == null ? undefined : seed + 1))
      : undefined;
  }

  /**
   * The projection {@link Linear.forward} hands its input to instead of computing `x Wᵀ + b` itself, if any;
   * see {@link Linear.setDelegate}.
   */
  get delegate(): Projection | undefined {
    return this.delegateTo;
  }

  /**
   * Makes {@link Linear.forward} return `delegate.forward(x)` (or, with `undefined`, its own `x Wᵀ + b` again).
   * Blocks hold their projections by reference, so this is how a layer already built into a model takes on a
   * different computation: a LoRA adapter attached to a loaded model wraps this layer (sharing its variables, and
   * computing the affine part with {@link Linear.affine}) and becomes its delegate. A delegate must not call this
   * layer's `forward` (that would recurse).
   *
   * @throws {@link ConfigError} when `delegate` is this layer, has no `forward`, or declares other widths.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { Linear, Module } from '@slmkit/core';
   * class Doubled extends Module {
   *   readonly inFeatures = 4;
   *   readonly outFeatures = 2;
   *   constructor(readonly base: Linear) { super(); }
   *   forward(x: tf.Tensor): tf.Tensor {
   *     return tf.tidy(() => tf.mul(this.base.affine(x), 2));
   *   }
   * }
   * const proj = new Linear(4, 2);
   * proj.setDelegate(new Doubled(proj));
   * const y = proj.forward(tf.ones([1, 4])); // 2 (x Wᵀ + b)
   * proj.setDelegate(undefined); // back to x Wᵀ + b
   * y.dispose();
   * proj.dispose();
   * ```
   */
  setDelegate(delegate: Projection | undefined): void {
    if (delegate != null) {
      const widths = (p: { inFeatures?: number; outFeatures?: number }) => `[${p.inFeatures ?? '?'} -> ${p.outFeatures ?? '?'}]`;
      if ((delegate as unknown) === this || typeof (delegate as { forward?: unknown }).forward !== 'function') {
        throw new ConfigError('Linear.setDelegate: the delegate must be another projection with a forward', {
          field: 'delegate',
          expected: 'a Projection other than this layer',
          found: (delegate as unknown) === this ? 'this layer' : typeof delegate,
        });
      }
      if ((delegate.inFeatures != null && delegate.inFeatures !== this.inFeatures) || (delegate.outFeatures != null && delegate.outFeatures !== this.outFeatures)) {
        throw new ConfigError(`Linear.setDelegate: the delegate maps ${widths(delegate)}, this layer ${widths(this)}`, {
          field: 'delegate',
          expected: [this.inFeatures, this.outFeatures],
          found: [delegate.inFeatures, delegate.outFeatures],
        });
      }
    }
    this.delegateTo = delegate;
  }

  /**
   * Applies `x Wᵀ + b` over the last dimension, or hands `x` to the {@link Linear.delegate} when one is set.
   *
   * @param x - float32 tensor `[..., inFeatures]`.
   * @returns `[..., outFeatures]`; the caller owns it.
   * @throws {@link ShapeError} when `x` is a scalar, not float32, or its last dimension is not `inFeatures`.
   */
  forward(x: tf.Tensor): tf.Tensor {
    if (this.delegateTo != null) return this.delegateTo.forward(x);
    return this.affine(x);
  }

  /**
   * Applies `x Wᵀ + b` over the last dimension (`matMul(x, weight)`, the weight being stored `[in, out]`), whatever
   * the {@link Linear.delegate}: what a delegate wrapping this layer calls for the affine part.
   *
   * @param x - float32 tensor `[..., inFeatures]`.
   * @returns `[..., outFeatures]`; the caller owns it.
   * @throws {@link ShapeError} when `x` is a scalar, not float32, or its last dimension is not `inFeatures`.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { Linear } from '@slmkit/core';
   * const proj = new Linear(3, 2);
   * const y = proj.affine(tf.ones([5, 3])); // [5, 2]
   * console.log(y.shape); // [5, 2]
   * y.dispose();
   * proj.dispose();
   * ```
   */
  affine(x: tf.Tensor): tf.Tensor {
    checkLastDim('Linear', x, this.inFeatures, 'inFeatures');
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const rows = lead.reduce((a, b) => a * b, 1);
      // A matrix goes straight in (a reshape is a kernel launch too, which counts in a one-token decode step).
      const x2d = x.rank === 2 ? x : tf.reshape(x, [rows, this.inFeatures]); // [N, in]
      let y = tf.matMul(x2d, this.weight); // [N, in] · [in, out] -> [N, out]
      if (this.bias != null) y = tf.add(y, this.bias);
      return x.rank === 2 ? y : tf.reshape(y, [...lead, this.outFeatures]); // [..., out]
    });
  }
}
