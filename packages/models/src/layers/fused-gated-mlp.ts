/**
 * `FusedGatedMLP`: the gated MLP with gate and up stored as one projection, as Phi-3 stores them (`gate_up_proj`).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Linear, Module, activation as activationFn, type Activation, type Projection } from '@slmkit/core';

/**
 * The parts of a {@link FusedGatedMLP}.
 *
 * @example
 * ```ts
 * import { Linear } from '@slmkit/core';
 * import type { FusedGatedMLPParts } from '@slmkit/models';
 * const parts: FusedGatedMLPParts = {
 *   gateUpProj: new Linear(8, 64, { bias: false }),
 *   downProj: new Linear(32, 8, { bias: false }),
 *   activation: 'silu',
 * };
 * ```
 */
export interface FusedGatedMLPParts {
  /** `hidden → 2·intermediate`, gate rows first then up rows; registered as `gate_up_proj`. */
  gateUpProj: Projection;
  /** `intermediate → hidden`; registered as `down_proj`. */
  downProj: Projection;
  /** The activation of the gate (default `silu`). */
  activation?: Activation;
}

/**
 * The gated MLP of GLU variants with gate and up fused into one projection:
 *
 * `[g, u] = gate_up(x)`, `y = down(act(g) ⊙ u)`
 *
 * where `g` is the first half of the fused output and `u` the second, as in Phi-3's `Phi3MLP` (`gate_up_proj`,
 * then `chunk(2, dim=-1)`). It computes the same function as core's `GatedMLP` with the gate and up weights
 * stacked, but loads a Phi-3 checkpoint's `mlp.gate_up_proj.weight` as it is stored, with one matmul instead of two.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { FusedGatedMLP } from '@slmkit/models';
 * const mlp = FusedGatedMLP.create(8, 16);
 * const x = tf.randomNormal([2, 3, 8]);
 * const y = mlp.forward(x); // [2, 3, 8]
 * console.log(mlp.namedParameters().map(([n]) => n)); // ["gate_up_proj.weight", "down_proj.weight"]
 * tf.dispose([x, y]);
 * mlp.dispose();
 * ```
 */
export class FusedGatedMLP extends Module {
  /** `hidden → 2·intermediate` (gate, then up). */
  readonly gateUpProj: Projection;
  /** `intermediate → hidden`. */
  readonly downProj: Projection;
  /** The gate's activation. */
  readonly activationName: Activation;
  /** The inner width: half of `gateUpProj`'s output. */
  readonly intermediate: number;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  /**
   * @param parts - the fused and the down projection, and the activation; see {@link FusedGatedMLPParts}.
   * @throws `ConfigError` when the widths do not fit (`gateUpProj.outFeatures` must be `2 · downProj.inFeatures`)
   *   or the activation is unknown.
   */
  constructor(parts: FusedGatedMLPParts) {
    super();
    const { gateUpProj, downProj } = parts;
    const fused = gateUpProj.outFeatures;
    const inner = downProj.inFeatures;
    if (fused == null || inner == null || fused !== 2 * inner) {
      throw new ConfigError(
        `FusedGatedMLP: gateUpProj.outFeatures must be 2 · downProj.inFeatures (2 · ${String(inner)}), found ${String(fused)}`,
        { field: 'gateUpProj.outFeatures', expected: inner == null ? 'known widths' : 2 * inner, found: fused },
      );
    }
    this.activationName = parts.activation ?? 'silu';
    this.act = activationFn(this.activationName);
    this.intermediate = inner;
    this.gateUpProj = this.registerModule('gate_up_proj', gateUpProj);
    this.downProj = this.registerModule('down_proj', downProj);
  }

  /**
   * Builds one from two new bias-free `Linear`s: `gate_up_proj` `hidden → 2·intermediate`, `down_proj`
   * `intermediate → hidden`.
   *
   * @example
   * ```ts
   * import { FusedGatedMLP } from '@slmkit/models';
   * const mlp = FusedGatedMLP.create(3072, 8192, { activation: 'silu' }); // Phi-3-mini's MLP
   * console.log(mlp.parameterCount().total); // 3072 * 16384 + 8192 * 3072
   * mlp.dispose();
   * ```
   */
  static create(hidden: number, intermediate: number, options: { activation?: Activation; bias?: boolean; seed?: number } = {}): FusedGatedMLP {
    const bias = options.bias ?? false;
    const seed = options.seed;
    return new FusedGatedMLP({
      gateUpProj: new Linear(hidden, 2 * intermediate, { bias, seed }),
      downProj: new Linear(intermediate, hidden, { bias, seed: seed == null ? undefined : seed + 2 }),
      activation: options.activation ?? 'silu',
    });
  }

  /**
   * @param x - float32 `[..., hidden]`.
   * @returns `[..., hidden]`; the caller owns it.
   */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const gateUp = this.gateUpProj.forward(x); // [..., 2·I]
      const [gate, up] = tf.split(gateUp, 2, -1); // [..., I] each
      return this.downProj.forward(tf.mul(this.act(gate), up)); // [..., hidden]
    });
  }
}
