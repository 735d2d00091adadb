/**
 * `ModuleList`: modules registered under their index, as Hugging Face names an `nn.ModuleList`.
 *
 * @module
 */
import { Module } from '@slmkit/core';

/**
 * An ordered list of modules registered as `0`, `1`, …: how Hugging Face names the entries of an `nn.ModuleList`
 * (`model.layers.0`, `norms.1`).
 *
 * @example
 * ```ts
 * import { Linear } from '@slmkit/core';
 * import { ModuleList } from '@slmkit/models';
 * const list = new ModuleList([new Linear(2, 2), new Linear(2, 2)]);
 * console.log(list.length, list.namedParameters().map(([n]) => n)); // 2 ["0.weight", "0.bias", "1.weight", "1.bias"]
 * list.dispose();
 * ```
 */
export class ModuleList<M extends Module = Module> extends Module {
  /** The modules, in order. */
  readonly items: readonly M[];

  constructor(modules: readonly M[]) {
    super();
    modules.forEach((m, i) => this.registerModule(String(i), m));
    this.items = Object.freeze(modules.slice());
  }

  /** How many modules. */
  get length(): number {
    return this.items.length;
  }

  /** The module at `index`. */
  at(index: number): M {
    return this.items[index];
  }
}
