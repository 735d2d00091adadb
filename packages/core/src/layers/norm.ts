/**
 * Normalisation layers: `RMSNorm` (Llama, Mistral, Qwen, Gemma, Mamba, Falcon-Mamba's weightless variant) and
 * `LayerNorm` (Phi, StableLM).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { defineFusedOp, fusedGradient, registerFusedKernel, runTypedKernel } from '../kernels.js';
import { Module } from '../module.js';
import { checkEps, checkFlag, checkLastDim, checkPositiveInt } from '../validate.js';

/**
 * Options of {@link RMSNorm}.
 *
 * @example
 * ```ts
 * import type { RMSNormOptions } from '@slmkit/core';
 * const llama: RMSNormOptions = { eps: 1e-6 };
 * const gemma: RMSNormOptions = { eps: 1e-6, unitOffset: true };
 * const falconMambaDtBC: RMSNormOptions = { eps: 1e-6, elementwiseAffine: false };
 * ```
 */
export interface RMSNormOptions {
  /** Added to the mean square before the square root (the config's `rms_norm_eps`); must be > 0. */
  eps: number;
  /**
   * Gemma's parametrisation: scale by `1 + w` instead of `w`, with `w` initialised to zeros (default `false`).
   * A Gemma checkpoint stores `w`, not `1 + w`.
   */
  unitOffset?: boolean;
  /** Whether there is a learned scale `w` at all (default `true`). `false`: Falcon-Mamba's dt/B/C norms. */
  elementwiseAffine?: boolean;
}

/**
 * Root-mean-square normalisation over the last dimension (Zhang & Sennrich 2019, "Root Mean Square Layer
 * Normalization"):
 *
 * `y = x / √(mean(x², -1) + ε) ⊙ w`
 *
 * with `w` replaced by `1 + w` when `unitOffset` (Gemma) and dropped when `elementwiseAffine` is false
 * (Falcon-Mamba). Computed in float32 (inputs must be float32), matching Hugging Face, which upcasts before
 * normalising. The scale is the
 * parameter `weight`, shape `[dim]`, initialised to ones (zeros with `unitOffset`, so both start as the identity
 * scale).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { RMSNorm } from '@slmkit/core';
 * const norm = new RMSNorm(8, { eps: 1e-6 });
 * const x = tf.randomNormal([2, 3, 8]);
 * const y = norm.forward(x); // [2, 3, 8], each row of unit root mean square
 * tf.dispose([x, y]);
 * norm.dispose();
 * ```
 */
export class RMSNorm extends Module {
  /** Width of the normalised (last) dimension. */
  readonly dim: number;
  /** ε. */
  readonly eps: number;
  /** Whether the scale is `1 + w` (Gemma). */
  readonly unitOffset: boolean;
  /** The scale `w`, shape `[dim]`; `undefined` when built with `elementwiseAffine: false`. */
  readonly weight: tf.Variable | undefined;

  /**
   * @param dim - width of the normalised dimension (a positive integer).
   * @param options - ε and the variant; see {@link RMSNormOptions}.
   * @throws {@link ConfigError} when `dim` is not a positive integer, `eps` is not a finite number > 0, or a flag
   *   is not a boolean.
   */
  constructor(dim: number, options: RMSNormOptions) {
    super();
    checkPositiveInt('RMSNorm', 'dim', dim);
    checkEps('RMSNorm', options?.eps);
    const unitOffset = checkFlag('RMSNorm', 'unitOffset', options.unitOffset, false);
    const affine = checkFlag('RMSNorm', 'elementwiseAffine', options.elementwiseAffine, true);
    if (unitOffset && !affine) {
      throw new ConfigError('RMSNorm: unitOffset needs a weight, but elementwiseAffine is false', {
        field: 'unitOffset',
        expected: 'false when elementwiseAffine is false',
        found: true,
      });
    }
    this.dim = dim;
    this.eps = options.eps;
    this.unitOffset = unitOffset;
    this.weight = affine ? this.registerParameter('weight', unitOffset ? tf.zeros([dim]) : tf.ones([dim])) : undefined;
  }

  /**
   * Normalises over the last dimension.
   *
   * @param x - float32 `[..., dim]`.
   * @returns float32 `[..., dim]`; the caller owns it.
   * @throws {@link ShapeError} when `x` is not float32 or its last dimension is not `dim`.
   */
  forward(x: tf.Tensor): tf.Tensor {
    checkLastDim('RMSNorm', x, this.dim, 'dim');
    return tf.tidy(() => {
      const weight = this.weight ?? tf.zeros([0]); // [dim], or none
      const attrs: RMSNormAttrs = { eps: this.eps, unitOffset: this.unitOffset };
      // A decode step's few rows: one kernel on cpu / wasm instead of six small ops (about 0.12 → 0.05 ms a norm,
      // two norms a layer). More rows: the ops, whose wasm kernels are vectorised and beat the kernel's loop.
      const implementation = x.size <= FUSED_NORM_MAX_ROWS * this.dim && rmsNormOp.hasKernel() ? 'fused' : 'naive';
      return rmsNormOp({ x, weight }, attrs, { implementation }); // [..., dim]
    });
  }
}

/** The most rows {@link RMSNorm} normalises with its kernel. */
const FUSED_NORM_MAX_ROWS = 8;

type RMSNormInputs = { x: tf.Tensor; weight: tf.Tensor };
interface RMSNormAttrs {
  eps: number;
  unitOffset: boolean;
}

/** `x / √(mean(x²) + ε) · w` (or `1 + w`, or no scale for an empty `weight`) in tfjs ops: the reference. */
function rmsNormOps({ x, weight }: RMSNormInputs, { eps, unitOffset }: RMSNormAttrs): tf.Tensor {
  const meanSquare = tf.mean(tf.square(x), -1, true); // [..., 1]
  const y = tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))); // [..., dim]
  if (weight.size === 0) return y;
  return tf.mul(y, unitOffset ? tf.add(weight, 1) : weight); // [..., dim]
}

const RMS_NORM_KERNEL = 'SlmkitRMSNorm';
const rmsNormOp = defineFusedOp<RMSNormInputs, RMSNormAttrs>({ kernelName: RMS_NORM_KERNEL, naive: rmsNormOps });

/** The kernel: per row, the mean square in float64, then the scaled row. */
function rmsNormKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, weight } = inputs as unknown as Record<'x' | 'weight', tf.TensorInfo>;
  const { eps, unitOffset } = attrs as unknown as RMSNormAttrs;
  const d = x.shape[x.shape.length - 1];
  const scaled = weight.shape[0] > 0;
  const [y] = runTypedKernel(backend, scaled ? [x, weight] : [x], [x.shape], ([xv, w], [out]) => {
    const g = new Float32Array(d).fill(1); // the scale: w, 1 + w, or none
    if (scaled) for (let i = 0; i < d; i++) g[i] = unitOffset ? 1 + w[i] : w[i];
    for (let at = 0; at < out.length; at += d) {
      let sum = 0;
      for (let i = at; i < at + d; i++) sum += xv[i] * xv[i];
      const inv = 1 / Math.sqrt(sum / d + eps);
      for (let i = 0; i < d; i++) out[at + i] = xv[at + i] * inv * g[i];
    }
  });
  return y;
}

// No backward kernel: the gradient recomputes the ops and differentiates them.
const rmsNormGradient = fusedGradient<'x' | 'weight', RMSNormAttrs>({ inputNames: ['x', 'weight'], gradKernelName: `${RMS_NORM_KERNEL}Grad`, recompute: rmsNormOps });
for (const backendName of ['cpu', 'wasm']) {
  registerFusedKernel({ kernelName: RMS_NORM_KERNEL, backendName, kernelFunc: rmsNormKernel as tf.KernelFunc, gradient: rmsNormGradient });
}

/**
 * Options of {@link LayerNorm}.
 *
 * @example
 * ```ts
 * import type { LayerNormOptions } from '@slmkit/core';
 * const stablelm: LayerNormOptions = { eps: 1e-5 };
 * const nonParametric: LayerNormOptions = { eps: 1e-5, elementwiseAffine: false };
 * ```
 */
export interface LayerNormOptions {
  /** Added to the variance before the square root (the config's `layer_norm_eps`); must be > 0. */
  eps: number;
  /** Whether there is a learned shift `b` (default `true`, like `torch.nn.LayerNorm`). */
  bias?: boolean;
  /** Whether there are learned `w` and `b` at all (default `true`). `false` implies no bias either. */
  elementwiseAffine?: boolean;
}

/**
 * Layer normalisation over the last dimension (Ba, Kiros & Hinton 2016, "Layer Normalization"):
 *
 * `y = (x − mean(x)) / √(var(x) + ε) ⊙ w + b`
 *
 * with the biased variance `mean((x − mean(x))²)`, as `torch.nn.LayerNorm` computes it. Computed in float32.
 * Parameters `weight` (ones) and `bias` (zeros), shape `[dim]`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { LayerNorm } from '@slmkit/core';
 * const ln = new LayerNorm(8, { eps: 1e-5 });
 * const x = tf.randomNormal([4, 8]);
 * const y = ln.forward(x); // [4, 8], each row of mean 0 and variance ~1
 * console.log(ln.namedParameters().map(([n]) => n)); // ["weight", "bias"]
 * tf.dispose([x, y]);
 * ln.dispose();
 * ```
 */
export class LayerNorm extends Module {
  /** Width of the normalised (last) dimension. */
  readonly dim: number;
  /** ε. */
  readonly eps: number;
  /** The scale `w`, shape `[dim]`; `undefined` without `elementwiseAffine`. */
  readonly weight: tf.Variable | undefined;
  /** The shift `b`, shape `[dim]`; `undefined` without `bias` or `elementwiseAffine`. */
  readonly bias: tf.Variable | undefined;

  /**
   * @param dim - width of the normalised dimension (a positive integer).
   * @param options - ε, bias and affine; see {@link LayerNormOptions}.
   * @throws {@link ConfigError} when `dim` is not a positive integer, `eps` is not a finite number > 0, or a flag
   *   is not a boolean.
   */
  constructor(dim: number, options: LayerNormOptions) {
    super();
    checkPositiveInt('LayerNorm', 'dim', dim);
    checkEps('LayerNorm', options?.eps);
    const affine = checkFlag('LayerNorm', 'elementwiseAffine', options.elementwiseAffine, true);
    const bias = checkFlag('LayerNorm', 'bias', options.bias, true);
    this.dim = dim;
    this.eps = options.eps;
    this.weight = affine ? this.registerParameter('weight', tf.ones([dim])) : undefined;
    this.bias = affine && bias ? this.registerParameter('bias', tf.zeros([dim])) : undefined;
  }

  /**
   * Normalises over the last dimension.
   *
   * @param x - float32 `[..., dim]`.
   * @returns float32 `[..., dim]`; the caller owns it.
   * @throws {@link ShapeError} when `x` is not float32 or its last dimension is not `dim`.
   */
  forward(x: tf.Tensor): tf.Tensor {
    checkLastDim('LayerNorm', x, this.dim, 'dim');
    return tf.tidy(() => {
      const centred = tf.sub(x, tf.mean(x, -1, true)); // mean: [..., 1]
      // Variance from the centred values (two passes), not E[x²] − E[x]², which cancels badly in float32.
      const variance = tf.mean(tf.square(centred), -1, true); // [..., 1]
      let y = tf.mul(centred, tf.rsqrt(tf.add(variance, this.eps)));
      if (this.weight != null) y = tf.mul(y, this.weight);
      if (this.bias != null) y = tf.add(y, this.bias);
      return y;
    });
  }
}
