/**
 * Feed-forward blocks: the gated MLP of Llama-style models (SwiGLU, GeGLU) and the plain two-layer MLP of Phi.
 * Both take their projections as constructor arguments, so LoRA or quantised linears can replace {@link Linear}.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { defineFusedOp, fusedGradient, registerFusedKernel } from '../kernels.js';
import { Module } from '../module.js';
import { checkLastDim, checkProjection } from '../validate.js';
import { GATED_PRODUCT_KERNEL, gatedProductKernel, gatedProductRuns, gradientsRecording, type GatedActivation } from '../wasm-gated.js';
import { activation as activationFn, type Activation, type ActivationFn } from './activations.js';
import { Linear, type Projection } from './linear.js';

type GatedInputs = { x: tf.Tensor; gate: tf.Tensor; up: tf.Tensor };
type GatedAttrs = { activation: GatedActivation };

/** `act(x · W_gate) ⊙ (x · W_up)` in tfjs ops, for x `[m, k]` and the weights `[k, n]`: the oracle and the gradient. */
const gatedProductOps = ({ x, gate, up }: GatedInputs, { activation }: GatedAttrs): tf.Tensor =>
  tf.tidy(() => tf.mul(activationFn(activation)(tf.matMul(x, gate)), tf.matMul(x, up))); // [m, n]

/** The gated product as one op: on `wasm`, one pass of slmkit's GEMM (see wasm-gated.ts). */
const gatedProduct = defineFusedOp<GatedInputs, GatedAttrs>({ kernelName: GATED_PRODUCT_KERNEL, naive: gatedProductOps });
registerFusedKernel({
  kernelName: GATED_PRODUCT_KERNEL,
  backendName: 'wasm',
  kernelFunc: gatedProductKernel,
  // GatedMLP keeps its unfused ops under a gradient tape; this is for any other caller.
  gradient: fusedGradient<keyof GatedInputs, GatedAttrs>({
    inputNames: ['x', 'gate', 'up'],
    gradKernelName: `${GATED_PRODUCT_KERNEL}Grad`,
    recompute: (inputs, attrs) => gatedProductOps(inputs as GatedInputs, attrs),
  }),
});

/**
 * The parts of a {@link GatedMLP}.
 *
 * @example
 * ```ts
 * import { Linear, type GatedMLPParts } from '@slmkit/core';
 * const parts: GatedMLPParts = {
 *   gateProj: new Linear(8, 32, { bias: false }),
 *   upProj: new Linear(8, 32, { bias: false }),
 *   downProj: new Linear(32, 8, { bias: false }),
 *   activation: 'silu',
 * };
 * ```
 */
export interface GatedMLPParts {
  /** `hidden → intermediate`, fed through the activation; registered as `gate_proj` (or `names.gate`). */
  gateProj: Projection;
  /** `hidden → intermediate`, the linear branch; registered as `up_proj` (or `names.up`). */
  upProj: Projection;
  /** `intermediate → hidden`; registered as `down_proj` (or `names.down`). */
  downProj: Projection;
  /** The activation of the gate: a name (default `'silu'`, giving SwiGLU) or a function. */
  activation?: Activation | ActivationFn;
  /**
   * The names the projections are registered under, where a checkpoint names them otherwise (Mixtral's experts:
   * `{ gate: 'w1', up: 'w3', down: 'w2' }`). Default `gate_proj`, `up_proj`, `down_proj`.
   */
  names?: { gate?: string; up?: string; down?: string };
}

/**
 * Options of {@link GatedMLP.create} and {@link MLP.create}.
 *
 * @example
 * ```ts
 * import type { MLPOptions } from '@slmkit/core';
 * const gemma: MLPOptions = { activation: 'gelu_tanh', bias: false };
 * ```
 */
export interface MLPOptions {
  /** The activation (for {@link GatedMLP.create} default `'silu'`; required by {@link MLP.create}). */
  activation?: Activation;
  /** Whether every projection has a bias (default `false` for {@link GatedMLP.create}, `true` for {@link MLP.create}). */
  bias?: boolean;
  /** Seed of the projections' initial values; see `LinearOptions.seed`. */
  seed?: number;
}

/**
 * The gated feed-forward block of GLU variants (Shazeer 2020, "GLU Variants Improve Transformer"):
 *
 * `y = down(act(gate(x)) ⊙ up(x))`
 *
 * SwiGLU with `act = silu` (Llama, Mistral, Qwen), GeGLU with `gelu` or `gelu_tanh` (Gemma). The projections are
 * registered under Hugging Face's names `gate_proj`, `up_proj` and `down_proj`, so `gate_proj.weight` and so on
 * load from a checkpoint as they are named there.
 *
 * On `wasm`, `act(gate(x)) ⊙ up(x)` runs as one kernel (slmkit's GEMM with a gated epilogue, split over the backend's
 * threads) when both projections are plain bias-free {@link Linear}s and the activation is `silu` or `gelu_tanh`;
 * under a gradient tape, and for anything else, it runs as tfjs ops. Both compute the same values to float32
 * rounding.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { GatedMLP, Linear } from '@slmkit/core';
 * // Build from parts (any Projection may stand in for a Linear) ...
 * const mlp = new GatedMLP({
 *   gateProj: new Linear(8, 32, { bias: false }),
 *   upProj: new Linear(8, 32, { bias: false }),
 *   downProj: new Linear(32, 8, { bias: false }),
 *   activation: 'silu',
 * });
 * // ... or let create() build the Linears.
 * const geglu = GatedMLP.create(8, 32, { activation: 'gelu_tanh' });
 * const x = tf.randomNormal([2, 3, 8]);
 * const y = mlp.forward(x); // [2, 3, 8]
 * console.log(y.shape, mlp.namedParameters().map(([n]) => n)); // ["gate_proj.weight", "up_proj.weight", "down_proj.weight"]
 * tf.dispose([x, y]);
 * mlp.dispose();
 * geglu.dispose();
 * ```
 */
export class GatedMLP extends Module {
  /** `hidden → intermediate`, through the activation. */
  readonly gateProj: Projection;
  /** `hidden → intermediate`, the linear branch. */
  readonly upProj: Projection;
  /** `intermediate → hidden`. */
  readonly downProj: Projection;
  /** The activation's name, or `undefined` when a function was given. */
  readonly activationName: Activation | undefined;
  private readonly act: ActivationFn;

  /**
   * @param parts - the three projections and the activation; see {@link GatedMLPParts}.
   * @throws {@link ConfigError} when a projection is not a Module with `forward`, the activation is unknown, or
   *   the projections' known widths do not fit together.
   */
  constructor(parts: GatedMLPParts) {
    super();
    const { gateProj, upProj, downProj } = parts;
    checkProjection('GatedMLP', 'gateProj', gateProj);
    checkProjection('GatedMLP', 'upProj', upProj);
    checkProjection('GatedMLP', 'downProj', downProj);
    checkWidth('GatedMLP', 'upProj.inFeatures', upProj.inFeatures, 'gateProj.inFeatures', gateProj.inFeatures);
    checkWidth('GatedMLP', 'upProj.outFeatures', upProj.outFeatures, 'gateProj.outFeatures', gateProj.outFeatures);
    checkWidth('GatedMLP', 'downProj.inFeatures', downProj.inFeatures, 'gateProj.outFeatures', gateProj.outFeatures);
    const act = resolveActivation(parts.activation ?? 'silu');
    const names = parts.names ?? {};
    this.gateProj = this.registerModule(names.gate ?? 'gate_proj', gateProj);
    this.upProj = this.registerModule(names.up ?? 'up_proj', upProj);
    this.downProj = this.registerModule(names.down ?? 'down_proj', downProj);
    this.activationName = act.name;
    this.act = act.fn;
  }

  /**
   * Builds a gated MLP from three new {@link Linear}s: `gate_proj` and `up_proj` `hidden → intermediate`,
   * `down_proj` `intermediate → hidden`.
   *
   * @param hidden - the model width (a positive integer).
   * @param intermediate - the inner width (a positive integer).
   * @param options - activation (default `'silu'`), bias (default `false`), seed; see {@link MLPOptions}.
   * @throws {@link ConfigError} for a bad width or option.
   */
  static create(hidden: number, intermediate: number, options: MLPOptions = {}): GatedMLP {
    const bias = options.bias ?? false;
    const seed = options.seed;
    const at = (k: number) => (seed == null ? undefined : seed + k);
    // The activation is checked first so that a bad name fails before any weight is allocated.
    const act = options.activation ?? 'silu';
    activationFn(act);
    return new GatedMLP({
      gateProj: new Linear(hidden, intermediate, { bias, seed: at(0) }),
      upProj: new Linear(hidden, intermediate, { bias, seed: at(2) }),
      downProj: new Linear(intermediate, hidden, { bias, seed: at(4) }),
      activation: act,
    });
  }

  /**
   * @param x - float32 `[..., hidden]`.
   * @returns `[..., hidden]`; the caller owns it.
   * @throws `ShapeError` (from the projections) when the last dimension is wrong.
   */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const gated = this.fusedGatedProduct(x) ?? tf.mul(this.act(this.gateProj.forward(x)), this.upProj.forward(x)); // [..., intermediate]
      return this.downProj.forward(gated); // [..., hidden]
    });
  }

  /**
   * `act(gate(x)) ⊙ up(x)` as one kernel where that runs: on `wasm` with slmkit's GEMM, for plain bias-free
   * {@link Linear}s (no delegate) and SiLU or GELU's tanh form, outside a gradient tape. Else `null`.
   */
  private fusedGatedProduct(x: tf.Tensor): tf.Tensor | null {
    const { gateProj: gate, upProj: up, activationName: activation } = this;
    if (!(gate instanceof Linear) || !(up instanceof Linear) || gate.delegate != null || up.delegate != null) return null;
    if (gate.bias != null || up.bias != null || (activation !== 'silu' && activation !== 'gelu_tanh')) return null;
    if (x.dtype !== 'float32' || x.size === 0 || gradientsRecording() || !gatedProductRuns()) return null;
    checkLastDim('Linear', x, gate.inFeatures, 'inFeatures');
    const lead = x.shape.slice(0, -1);
    const x2d = x.rank === 2 ? x : tf.reshape(x, [lead.reduce((a, b) => a * b, 1), gate.inFeatures]); // [N, hidden]
    const gated = gatedProduct({ x: x2d, gate: gate.weight, up: up.weight }, { activation }, { implementation: 'fused' }); // [N, intermediate]
    return x.rank === 2 ? gated : tf.reshape(gated, [...lead, gate.outFeatures]); // [..., intermediate]
  }
}

/**
 * The parts of an {@link MLP}.
 *
 * @example
 * ```ts
 * import { Linear, type MLPParts } from '@slmkit/core';
 * const parts: MLPParts = { fc1: new Linear(8, 32), fc2: new Linear(32, 8), activation: 'gelu_tanh' };
 * ```
 */
export interface MLPParts {
  /** `hidden → intermediate`; registered as `fc1`. */
  fc1: Projection;
  /** `intermediate → hidden`; registered as `fc2`. */
  fc2: Projection;
  /** The activation between them: a name or a function. */
  activation: Activation | ActivationFn;
}

/**
 * The two-layer feed-forward block of the original Transformer (Vaswani et al. 2017) as Phi-1/1.5/2 use it:
 *
 * `y = fc2(act(fc1(x)))`
 *
 * with `act = gelu_tanh` for Phi (`hidden_act: "gelu_new"`). The projections are registered as `fc1` and `fc2`,
 * Hugging Face's names.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { MLP } from '@slmkit/core';
 * const mlp = MLP.create(8, 32, { activation: 'gelu_tanh' });
 * const x = tf.randomNormal([2, 3, 8]);
 * const y = mlp.forward(x); // [2, 3, 8]
 * console.log(mlp.namedParameters().map(([n]) => n)); // ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
 * tf.dispose([x, y]);
 * mlp.dispose();
 * ```
 */
export class MLP extends Module {
  /** `hidden → intermediate`. */
  readonly fc1: Projection;
  /** `intermediate → hidden`. */
  readonly fc2: Projection;
  /** The activation's name, or `undefined` when a function was given. */
  readonly activationName: Activation | undefined;
  private readonly act: ActivationFn;

  /**
   * @param parts - the two projections and the activation; see {@link MLPParts}.
   * @throws {@link ConfigError} when a projection is not a Module with `forward`, the activation is missing or
   *   unknown, or the projections' known widths do not fit together.
   */
  constructor(parts: MLPParts) {
    super();
    const { fc1, fc2 } = parts;
    checkProjection('MLP', 'fc1', fc1);
    checkProjection('MLP', 'fc2', fc2);
    checkWidth('MLP', 'fc2.inFeatures', fc2.inFeatures, 'fc1.outFeatures', fc1.outFeatures);
    const act = resolveActivation(parts.activation);
    this.fc1 = this.registerModule('fc1', fc1);
    this.fc2 = this.registerModule('fc2', fc2);
    this.activationName = act.name;
    this.act = act.fn;
  }

  /**
   * Builds an MLP from two new {@link Linear}s: `fc1` `hidden → intermediate`, `fc2` `intermediate → hidden`.
   *
   * @param hidden - the model width (a positive integer).
   * @param intermediate - the inner width (a positive integer).
   * @param options - activation (required), bias (default `true`), seed; see {@link MLPOptions}.
   * @throws {@link ConfigError} for a bad width or option, or a missing activation.
   */
  static create(hidden: number, intermediate: number, options: MLPOptions & { activation: Activation }): MLP {
    const bias = options?.bias ?? true;
    const seed = options?.seed;
    activationFn(options?.activation);
    return new MLP({
      fc1: new Linear(hidden, intermediate, { bias, seed }),
      fc2: new Linear(intermediate, hidden, { bias, seed: seed == null ? undefined : seed + 2 }),
      activation: options.activation,
    });
  }

  /**
   * @param x - float32 `[..., hidden]`.
   * @returns `[..., hidden]`; the caller owns it.
   * @throws `ShapeError` (from the projections) when the last dimension is wrong.
   */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const h = this.act(this.fc1.forward(x)); // [..., intermediate]
      return this.fc2.forward(h); // [..., hidden]
    });
  }
}

function resolveActivation(a: Activation | ActivationFn | undefined): { name: Activation | undefined; fn: ActivationFn } {
  if (typeof a === 'function') return { name: undefined, fn: a };
  return { name: a, fn: activationFn(a as Activation) };
}

function checkWidth(block: string, field: string, value: number | undefined, otherField: string, other: number | undefined): void {
  if (typeof value !== 'number' || typeof other !== 'number' || value === other) return;
  throw new ConfigError(`${block}: ${field} must equal ${otherField} = ${other}, found ${value}`, {
    field,
    expected: other,
    found: value,
  });
}
