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
   */
  protected registerParameter(name: string, value: tf.Tensor | tf.Variable, options: ParameterOptions = {}): tf.Variable {
    this.checkName(name);
    let variable: tf.Variable;
    if (value instanceof tf.Variable) {
      variable = value;
    } else {
      variable = tf.variable(value, options.trainable ?? true);
      value.dispose();
    }
    if (options.trainable != null) variable.trainable = options.trainable;
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
   * loads). A variable reachable under several names is listed once, under the first.
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
   * The parameters by dotted name: the live variables, not copies. Each shared variable appears once.
   */
  stateDict(): Record<string, tf.Variable> {
    return Object.fromEntries(this.namedParameters());
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
      if (shape.length !== v.shape.length || shape.some((d, i) => d !== v.shape[i])) {
        problems.push({
          kind: 'shape',
          name,
          message: `${name}: expected shape [${v.shape.join(', ')}], found [${shape.join(', ')}]`,
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
        if (t.dtype !== v.dtype) {
          const cast = tf.cast(t, v.dtype);
          v.assign(cast);
          cast.dispose();
        } else {
          v.assign(t);
        }
      } finally {
        t.dispose();
      }
      loaded.push(name);
    }
    return { loaded, missing, unexpected };
  }

  /** Disposes every parameter of this module and its children (shared variables once). Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    for (const v of this.parameters()) {
      if (!v.isDisposed) v.dispose();
    }
    this.disposed = true;
  }
}
