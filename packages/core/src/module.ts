/**
 * `Module`: the base class of every block. Parameters are `tf.Variable`s registered under names; children are
 * registered modules; dotted names equal Hugging Face `state_dict` names.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ConfigError, type CheckpointProblem } from './errors.js';

/**
 * Anything weights can be loaded from: names, shapes, and a way to read one tensor. A safetensors checkpoint
 * ({@link SafetensorsFile}, {@link openCheckpoint}) is one; so is a plain record of tensors.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { WeightSource } from '@slmkit/core';
 * const t = tf.ones([2, 3]);
 * const source: WeightSource = {
 *   names: () => ['weight'],
 *   shape: () => [2, 3],
 *   read: async () => t.clone(),
 * };
 * ```
 */
export interface WeightSource {
  /** Every tensor name in the source. */
  names(): string[];
  /** The shape of a tensor, without reading its data. */
  shape(name: string): number[];
  /** Reads one tensor; the caller owns (and disposes) the result. */
  read(name: string): Promise<tf.Tensor>;
}

/**
 * What {@link Module.loadWeights} accepts: a {@link WeightSource}, or tensors by name.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { WeightInput } from '@slmkit/core';
 * const weights: WeightInput = { weight: tf.zeros([4, 2]), bias: tf.zeros([4]) };
 * ```
 */
export type WeightInput = WeightSource | Record<string, tf.Tensor> | Map<string, tf.Tensor>;

/**
 * Options of {@link Module.loadWeights}.
 *
 * @example
 * ```ts
 * import type { LoadWeightsOptions } from '@slmkit/core';
 * const lenient: LoadWeightsOptions = { strict: false };
 * ```
 */
export interface LoadWeightsOptions {
  /**
   * When true (the default), any missing, unexpected or mis-shaped tensor fails the load with one
   * {@link CheckpointError} listing them all, and no parameter is changed. When false, only mis-shaped tensors
   * fail; missing and unexpected ones are reported in the result.
   */
  strict?: boolean;
}

/**
 * What {@link Module.loadWeights} did.
 *
 * @example
 * ```ts
 * import type { LoadReport } from '@slmkit/core';
 * function summary(r: LoadReport): string {
 *   return `${r.loaded.length} loaded, ${r.missing.length} missing, ${r.unexpected.length} unexpected`;
 * }
 * ```
 */
export interface LoadReport {
  /** Parameter names that received a value. */
  loaded: string[];
  /** Parameter names the source did not have (empty in strict mode). */
  missing: string[];
  /** Source names no parameter matched (empty in strict mode). */
  unexpected: string[];
}

/**
 * Options of {@link Module.registerParameter}.
 *
 * @example
 * ```ts
 * import type { ParameterOptions } from '@slmkit/core';
 * const frozen: ParameterOptions = { trainable: false };
 * ```
 */
export interface ParameterOptions {
  /** Whether optimisers update it (default true). */
  trainable?: boolean;
  /**
   * Whether the variable holds the transpose of the checkpoint tensor (2-D parameters only; default false). A
   * layer picks the layout its forward computes fastest with: `Linear` keeps its weight `[in, out]` so that it
   * multiplies with a plain `matMul(x, W)`, while the checkpoint (a Hugging Face `state_dict`) stores it
   * `[out, in]`. {@link Module.loadWeights} transposes such tensors as it loads them and checks the checkpoint's
   * shape, {@link Module.stateDict} transposes them back, and {@link Module.checkpointShapes} gives the shapes a
   * checkpoint holds. A variable shared between modules must be registered with the same layout everywhere.
   */
  transposed?: boolean;
}

/**
 * The layout every registered variable was registered with (true: transposed). A variable registered in several
 * modules (tied or shared weights) has one layout, checked when it is registered again.
 */
const transposedLayout = new WeakMap<tf.Variable, boolean>();

/** The shape a checkpoint stores `v` in: its own, or reversed for a transposed parameter. */
function checkpointShapeOf(v: tf.Variable): number[] {
  return transposedLayout.get(v) === true ? v.shape.slice().reverse() : v.shape.slice();
}

/** Adapts a record or map of tensors to a {@link WeightSource} (reads return clones the caller owns). */
function asWeightSource(input: WeightInput): WeightSource {
  if (typeof (input as WeightSource).names === 'function' && typeof (input as WeightSource).read === 'function') {
    return input as WeightSource;
  }
  const map = input instanceof Map ? input : new Map(Object.entries(input as Record<string, tf.Tensor>));
  return {
    names: () => [...map.keys()],
    shape: (name) => map.get(name)!.shape.slice(),
    read: async (name) => map.get(name)!.clone(),
  };
}

const NAME_PATTERN = /^[A-Za-z0-9_]+$/;

/**
 * Base class of every block: owns named parameters (`tf.Variable`s) and named child modules, and gives dotted
 * names, weight loading with a full report, parameter counts, freezing and disposal.
 *
 * A child registered under two names (a shared block), or a parameter registered in two places (tied
 * embeddings), is one set of variables: {@link Module.namedParameters} yields it once, under its first name, and
 * {@link Module.loadWeights} accepts it under any of its names.
 *
 * A parameter may be kept in a compute layout other than the checkpoint's: a 2-D one registered with
 * `transposed: true` holds the transpose of its checkpoint tensor (`Linear`'s weight is `[in, out]`, Hugging
 * Face's is `[out, in]`). Loading, {@link Module.stateDict} and {@link Module.checkpointShapes} speak the
 * checkpoint's layout; the variables, and {@link Module.namedParameters}, the compute layout.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Module, Linear } from '@slmkit/core';
 *
 * class TwoLayer extends Module {
 *   readonly up = this.registerModule('up', new Linear(4, 8));
 *   readonly down = this.registerModule('down', new Linear(8, 4));
 *   forward(x: tf.Tensor): tf.Tensor {
 *     return tf.tidy(() => this.down.forward(tf.relu(this.up.forward(x))));
 *   }
 * }
 * const m = new TwoLayer();
 * console.log(m.namedParameters().map(([n]) => n)); // ["up.weight", "up.bias", "down.weight", "down.bias"]
 * console.log(m.parameterCount()); // { total: 76, trainable: 76 }
 * m.dispose();
 * ```
 */
export abstract class Module {
  private readonly ownParameters = new Map<string, tf.Variable>();
  private readonly ownChildren = new Map<string, Module>();
  private disposed = false;

  /**
   * Registers a parameter under `name` (letters, digits and `_`). A tensor is wrapped in a new `tf.Variable`
   * (the module takes ownership of the tensor); a `tf.Variable` is registered as is, so two modules can share one.
   * With `transposed: true` the value is the transpose of what a checkpoint stores under this name; see
   * {@link ParameterOptions.transposed}.
   *
   * @throws {@link ConfigError} when the name is taken or malformed, when a transposed value is not 2-D, or when
   *   a shared variable is registered with another layout than before.
   */
  protected registerParameter(name: string, value: tf.Tensor | tf.Variable, options: ParameterOptions = {}): tf.Variable {
    this.checkName(name);
    const transposed = options.transposed ?? false;
    if (typeof transposed !== 'boolean') {
      throw new ConfigError(`registerParameter("${name}"): transposed must be a boolean, found ${typeof transposed}`, {
        field: 'transposed',
        expected: 'a boolean',
        found: transposed,
      });
    }
    if (transposed && value.rank !== 2) {
      throw new ConfigError(
        `registerParameter("${name}"): only a 2-D parameter can be stored transposed, found shape [${value.shape.join(', ')}]`,
        { field: 'transposed', expected: 'a 2-D value', found: value.shape.slice() },
      );
    }
    if (value instanceof tf.Variable) {
      const known = transposedLayout.get(value);
      if (known != null && known !== transposed) {
        const layout = (t: boolean) => (t ? 'transposed' : 'untransposed');
        throw new ConfigError(
          `registerParameter("${name}"): variable ${value.name} is already registered ${layout(known)} elsewhere, ` +
            `found ${layout(transposed)}; a shared variable must have one layout`,
          { field: 'transposed', expected: known, found: transposed },
        );
      }
    }
    let variable: tf.Variable;
    if (value instanceof tf.Variable) {
      variable = value;
    } else {
      variable = tf.variable(value, options.trainable ?? true);
      value.dispose();
    }
    if (options.trainable != null) variable.trainable = options.trainable;
    transposedLayout.set(variable, transposed);
    this.ownParameters.set(name, variable);
    return variable;
  }

  /** Registers a child module under `name`; its parameters appear as `name.<param>`. Returns the child. */
  protected registerModule<M extends Module>(name: string, module: M): M {
    this.checkName(name);
    if (!(module instanceof Module)) {
      throw new ConfigError(`registerModule("${name}"): expected a Module, found ${typeof module}`, {
        field: name,
        expected: 'Module',
        found: typeof module,
      });
    }
    this.ownChildren.set(name, module);
    return module;
  }

  private checkName(name: string): void {
    if (!NAME_PATTERN.test(name)) {
      throw new ConfigError(`parameter or module name "${name}" must match ${NAME_PATTERN}`, {
        field: 'name',
        expected: String(NAME_PATTERN),
        found: name,
      });
    }
    if (this.ownParameters.has(name) || this.ownChildren.has(name)) {
      throw new ConfigError(`name "${name}" is already registered on ${this.constructor.name}`, {
        field: 'name',
        expected: 'a new name',
        found: name,
      });
    }
  }

  /** Every (dotted name, variable) pair, shared variables included once per name they are reachable under. */
  private *allNamedParameters(prefix = ''): Generator<[string, tf.Variable]> {
    for (const [name, v] of this.ownParameters) yield [prefix + name, v];
    for (const [name, child] of this.ownChildren) yield* child.allNamedParameters(`${prefix}${name}.`);
  }

  /**
   * The parameters with their dotted names (equal to Hugging Face `state_dict` names for the families slmkit
   * loads). A variable reachable under several names is listed once, under the first. These are the live
   * variables, in their compute layout: a transposed parameter's shape is the reverse of its checkpoint shape
   * (see {@link Module.checkpointShapes}).
   */
  namedParameters(): [string, tf.Variable][] {
    const seen = new Set<tf.Variable>();
    const out: [string, tf.Variable][] = [];
    for (const [name, v] of this.allNamedParameters()) {
      if (seen.has(v)) continue;
      seen.add(v);
      out.push([name, v]);
    }
    return out;
  }

  /** The parameters, each once. */
  parameters(): tf.Variable[] {
    return this.namedParameters().map(([, v]) => v);
  }

  /** The trainable parameters, each once: what an optimiser's `minimize` should be given as `varList`. */
  trainableParameters(): tf.Variable[] {
    return this.parameters().filter((v) => v.trainable);
  }

  /** Child modules with their dotted names, this module first (name `''`), depth first. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.ownChildren) {
      out.push(...child.namedModules(prefix === '' ? name : `${prefix}.${name}`));
    }
    return out;
  }

  /** The direct child registered under `name`, if any. */
  child(name: string): Module | undefined {
    return this.ownChildren.get(name);
  }

  /**
   * Puts `replacement` in the place of the direct child registered under `name`, so that dotted names, weight
   * loading, counting, freezing and disposal see it there from now on (the old child keeps its variables and is
   * returned; it is not disposed). It changes the registry only: a block that kept a reference to its part (most
   * do: `this.qProj`) still calls the old one. That is how an adapter attached to a built model works: the
   * replacement (a `LoRALinear`) shares the old `Linear`'s variables and takes over its forward through
   * {@link Linear.setDelegate}.
   *
   * @returns the child that was registered under `name`.
   * @throws {@link ConfigError} when no child is registered under `name`, or `replacement` is not a {@link Module}.
   *
   * @example
   * ```ts
   * import { Module, Linear } from '@slmkit/core';
   * class Block extends Module {
   *   readonly proj = this.registerModule('proj', new Linear(8, 8));
   * }
   * const block = new Block();
   * const replacement = new Linear(8, 8, { bias: false });
   * const old = block.replaceModule('proj', replacement);
   * console.log(block.namedParameters().map(([n]) => n)); // ["proj.weight"]
   * console.log(old === block.proj); // true: the field still holds the old child
   * old.dispose();
   * block.dispose();
   * ```
   */
  replaceModule(name: string, replacement: Module): Module {
    const old = this.ownChildren.get(name);
    if (old == null) {
      throw new ConfigError(`replaceModule("${name}"): ${this.constructor.name} has no child "${name}" (children: ${[...this.ownChildren.keys()].join(', ') || 'none'})`, {
        field: 'name',
        expected: [...this.ownChildren.keys()],
        found: name,
      });
    }
    if (!(replacement instanceof Module)) {
      throw new ConfigError(`replaceModule("${name}"): expected a Module, found ${typeof replacement}`, {
        field: name,
        expected: 'Module',
        found: typeof replacement,
      });
    }
    this.ownChildren.set(name, replacement);
    return old;
  }

  /**
   * The parameters as a checkpoint stores them: Hugging Face `state_dict` names and shapes, each shared variable
   * once (under its first name). Parameters kept in their checkpoint layout come as clones, which cost nothing
   * (they share the variable's data, and keep today's values if the variable is assigned later); transposed ones
   * (see {@link ParameterOptions.transposed}) come as transposed copies. Either way the caller owns the tensors
   * and disposes them; to use the live variables, see {@link Module.namedParameters}.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { Linear, serializeSafetensors } from '@slmkit/core';
   * const proj = new Linear(4, 8);
   * const state = proj.stateDict();
   * console.log(state.weight.shape, proj.weight.shape); // [8, 4] (Hugging Face's [out, in]) [4, 8]
   * const bytes = await serializeSafetensors(state);
   * tf.dispose(Object.values(state));
   * proj.dispose();
   * ```
   */
  stateDict(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [name, v] of this.namedParameters()) {
      out[name] = transposedLayout.get(v) === true ? tf.transpose(v) : tf.clone(v);
    }
    return out;
  }

  /**
   * The shape of every parameter as a checkpoint stores it, by dotted name, each shared variable once: the
   * variable's shape, reversed for a transposed parameter (see {@link ParameterOptions.transposed}). Reads no
   * tensor data.
   *
   * @example
   * ```ts
   * import { Linear } from '@slmkit/core';
   * const proj = new Linear(4, 8);
   * console.log(proj.checkpointShapes()); // { weight: [8, 4], bias: [8] }
   * proj.dispose();
   * ```
   */
  checkpointShapes(): Record<string, number[]> {
    return Object.fromEntries(this.namedParameters().map(([name, v]) => [name, checkpointShapeOf(v)]));
  }

  /** Number of scalar parameters, total and trainable; shared variables are counted once. */
  parameterCount(): { total: number; trainable: number } {
    let total = 0;
    let trainable = 0;
    for (const v of this.parameters()) {
      total += v.size;
      if (v.trainable) trainable += v.size;
    }
    return { total, trainable };
  }

  /** Marks every parameter as not trainable. Returns `this`. */
  freeze(): this {
    for (const v of this.parameters()) v.trainable = false;
    return this;
  }

  /** Marks every parameter as trainable. Returns `this`. */
  unfreeze(): this {
    for (const v of this.parameters()) v.trainable = true;
    return this;
  }

  /**
   * Loads parameters from a checkpoint or a record of tensors, matching by dotted name. Every problem is
   * collected first; if any is fatal, one {@link CheckpointError} lists them all and no parameter changes. Source
   * tensors of another float dtype (F16, BF16 already widened by the reader) are cast to the parameter's dtype.
   * Tensors are given, and shapes checked and reported, in the checkpoint's layout (see
   * {@link Module.checkpointShapes}); a parameter stored transposed ({@link ParameterOptions.transposed}) is
   * transposed as it is loaded.
   *
   * @throws {@link CheckpointError} listing every missing, unexpected and mis-shaped tensor.
   */
  async loadWeights(source: WeightInput, options: LoadWeightsOptions = {}): Promise<LoadReport> {
    const strict = options.strict ?? true;
    const src = asWeightSource(source);
    const byName = new Map<string, tf.Variable>(this.allNamedParameters());
    const sourceNames = src.names();

    const problems: CheckpointProblem[] = [];
    const loadedVars = new Set<tf.Variable>();
    const plan: [string, tf.Variable][] = [];
    for (const name of sourceNames) {
      const v = byName.get(name);
      if (v == null) {
        problems.push({ kind: 'unexpected', name, message: `${name}: in the checkpoint but not a parameter of the model` });
        continue;
      }
      if (loadedVars.has(v)) continue; // a shared variable stored under two names: the first wins
      const shape = src.shape(name);
      const expected = checkpointShapeOf(v); // what the checkpoint holds, whatever the variable's layout
      if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) {
        problems.push({
          kind: 'shape',
          name,
          message: `${name}: expected shape [${expected.join(', ')}], found [${shape.join(', ')}]`,
        });
        loadedVars.add(v);
        continue;
      }
      loadedVars.add(v);
      plan.push([name, v]);
    }
    const missing: string[] = [];
    for (const [name, v] of this.namedParameters()) {
      if (loadedVars.has(v)) continue;
      missing.push(name);
      problems.push({ kind: 'missing', name, message: `${name}: parameter not in the checkpoint` });
    }
    const unexpected = problems.filter((p) => p.kind === 'unexpected').map((p) => p.name);
    const fatal = problems.filter((p) => strict || p.kind === 'shape');
    if (fatal.length > 0) {
      const order = ['missing', 'unexpected', 'shape', 'dtype', 'format'];
      fatal.sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind));
      const counts = order
        .map((k) => [k, fatal.filter((p) => p.kind === k).length] as const)
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${n} ${k}`)
        .join(', ');
      const shown = fatal.slice(0, 20).map((p) => `  - ${p.message}`);
      if (fatal.length > 20) shown.push(`  ... and ${fatal.length - 20} more (see .problems)`);
      throw new CheckpointError(`cannot load weights into ${this.constructor.name} (${counts}):\n${shown.join('\n')}`, fatal);
    }
    // Every check passed: now read and assign.
    const loaded: string[] = [];
    for (const [name, v] of plan) {
      const t = await src.read(name);
      try {
        tf.tidy(() => {
          const value = t.dtype !== v.dtype ? tf.cast(t, v.dtype) : t;
          v.assign(transposedLayout.get(v) === true ? tf.transpose(value) : value);
        });
      } finally {
        t.dispose();
      }
      loaded.push(name);
    }
    return { loaded, missing, unexpected };
  }

  /**
   * Disposes every parameter of this module and its children (shared variables once), calling each child's own
   * `dispose` so that a subclass that holds more than its parameters (a weight kept for an unmerge) frees it too.
   * Safe to call twice.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const child of this.ownChildren.values()) child.dispose();
    for (const v of this.parameters()) {
      if (!v.isDisposed) v.dispose();
    }
  }
}
