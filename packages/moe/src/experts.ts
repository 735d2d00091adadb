/**
 * The experts of a sparse MoE layer: any module with an MLP's call shape, held in a list that Hugging Face names
 * `experts.0`, `experts.1`, ….
 *
 * @module
 */
import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Module } from '@slmkit/core';

/**
 * What a {@link SparseMoE} needs from an expert: a {@link @slmkit/core!Module | Module} whose `forward` maps
 * `[M, hidden]` to `[M, hidden]`. A `GatedMLP` (SwiGLU) is the usual one; anything with the same call shape (an
 * MLP with LoRA projections, a quantised MLP) drops in.
 *
 * @example
 * ```ts
 * import { GatedMLP } from '@slmkit/core';
 * import type { Expert } from '@slmkit/moe';
 * const expert: Expert = GatedMLP.create(16, 32, { activation: 'silu' });
 * expert.dispose();
 * ```
 */
export type Expert = Module & {
  /** Maps `[M, hidden]` to `[M, hidden]`; the caller owns the result. */
  forward(x: tf.Tensor): tf.Tensor;
};

/**
 * An ordered list of experts registered as `0`, `1`, … (Hugging Face's `nn.ModuleList` naming, so parameters are
 * `experts.3.w1.weight` under a layer's MoE block).
 *
 * @example
 * ```ts
 * import { GatedMLP } from '@slmkit/core';
 * import { ExpertList } from '@slmkit/moe';
 * const list = new ExpertList([GatedMLP.create(8, 16), GatedMLP.create(8, 16)]);
 * console.log(list.length, list.namedParameters()[0][0]); // 2 "0.gate_proj.weight"
 * list.dispose();
 * ```
 */
export class ExpertList extends Module {
  /** The experts, in order. */
  readonly items: readonly Expert[];

  /**
   * @param experts - at least one module with `forward`.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} when the list is empty or an entry has no `forward`.
   */
  constructor(experts: readonly Expert[]) {
    super();
    if (!Array.isArray(experts) || experts.length === 0) {
      throw new ConfigError(`ExpertList: experts must be a non-empty list of modules, found ${Array.isArray(experts) ? 'an empty list' : typeof experts}`, {
        field: 'experts',
        expected: 'a non-empty list of Expert modules',
        found: Array.isArray(experts) ? 0 : typeof experts,
      });
    }
    experts.forEach((e, i) => {
      if (!(e instanceof Module) || typeof (e as { forward?: unknown }).forward !== 'function') {
        const found = e instanceof Module ? `${e.constructor.name} without forward()` : e === null ? 'null' : typeof e;
        throw new ConfigError(`ExpertList: experts[${i}] must be a Module with forward(x), found ${found}`, {
          field: `experts[${i}]`,
          expected: 'an Expert (a Module with forward)',
          found,
        });
      }
      this.registerModule(String(i), e);
    });
    this.items = Object.freeze(experts.slice());
  }

  /** How many experts. */
  get length(): number {
    return this.items.length;
  }
}
