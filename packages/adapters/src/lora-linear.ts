/**
 * `LoRALinear` and `DoRALinear`: a `Linear` with named low-rank adapters (LoRA, rsLoRA, DoRA), switched, disabled,
 * merged into the base weight and unmerged back exactly.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Linear, Module, checkFlag, checkLastDim, checkPositiveInt } from '@slmkit/core';

/**
 * One adapter's hyper-parameters.
 *
 * @example
 * ```ts
 * import type { LoRAOptions } from '@slmkit/adapters';
 * const lora: LoRAOptions = { rank: 8, alpha: 16 }; // scaling 2
 * const rslora: LoRAOptions = { rank: 64, alpha: 16, rsLoRA: true }; // scaling 16 / √64 = 2
 * const dora: LoRAOptions = { rank: 4, alpha: 8, dora: true, dropout: 0.05 };
 * ```
 */
export interface LoRAOptions {
  /** `r`, the inner width of `B A` (a positive integer). */
  rank: number;
  /** `lora_alpha` (default: `rank`, so that the scaling is 1). */
  alpha?: number;
  /** rsLoRA: scale by `alpha / √rank` instead of `alpha / rank` (default false). */
  rsLoRA?: boolean;
  /** DoRA: rescale each output row by a learned magnitude (default false); see {@link LoRALinear}. */
  dora?: boolean;
  /** Dropout on the adapter's input while training (default 0); never applied in inference. */
  dropout?: number;
  /** Seed of `A`'s initial values (uniform in `±1/√in`, as PEFT's); `B` starts at zero either way. */
  seed?: number;
}

const NAME_PATTERN = /^[A-Za-z0-9_]+$/;

/** Throws a ConfigError unless `name` can name an adapter (it becomes part of parameter names). */
export function checkAdapterName(owner: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new ConfigError(`${owner}: adapter name must match ${NAME_PATTERN}, found ${JSON.stringify(name)}`, {
      field: 'name',
      expected: String(NAME_PATTERN),
      found: name,
    });
  }
}

/** Validated options with their defaults; throws a ConfigError naming the first invalid one. */
export function checkLoRAOptions(owner: string, o: LoRAOptions): Required<Omit<LoRAOptions, 'seed'>> & { seed: number | undefined } {
  if (o == null || typeof o !== 'object') {
    throw new ConfigError(`${owner}: options must be an object with a rank, found ${String(o)}`, { field: 'options', expected: '{ rank }', found: o });
  }
  checkPositiveInt(owner, 'rank', o.rank);
  const alpha = o.alpha ?? o.rank;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha <= 0) {
    throw new ConfigError(`${owner}: alpha must be a finite number > 0, found ${String(alpha)}`, { field: 'alpha', expected: 'a finite number > 0', found: alpha });
  }
  const dropout = o.dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) {
    throw new ConfigError(`${owner}: dropout must be in [0, 1), found ${String(dropout)}`, { field: 'dropout', expected: '[0, 1)', found: dropout });
  }
  if (o.seed != null && !Number.isFinite(o.seed)) {
    throw new ConfigError(`${owner}: seed must be a finite number, found ${String(o.seed)}`, { field: 'seed', expected: 'a finite number', found: o.seed });
  }
  return {
    rank: o.rank,
    alpha,
    rsLoRA: checkFlag(owner, 'rsLoRA', o.rsLoRA, false),
    dora: checkFlag(owner, 'dora', o.dora, false),
    dropout,
    seed: o.seed,
  };
}

/** Identity in the forward pass, no gradient in the backward pass (PEFT `.detach()`s DoRA's norm). */
const stopGradient = tf.customGrad((x: tf.Tensor | tf.GradSaveFunc) => ({
  value: tf.clone(x as tf.Tensor),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as (x: tf.Tensor) => tf.Tensor;

/**
 * The parameters of one adapter on one linear layer: `A` (`lora_A`, `[rank, in]` in a checkpoint), `B`
 * (`lora_B`, `[out, rank]`) and, for DoRA, the magnitude `m` (`lora_magnitude_vector`, `[out]`). Like
 * `Linear`'s weight, `A` and `B` are stored transposed (`[in, rank]`, `[rank, out]`) so that the forward is two
 * plain matmuls; loading and `stateDict()` speak PEFT's layout. {@link LoRALinear} creates these.
 *
 * @example
 * ```ts
 * import { Linear } from '@slmkit/core';
 * import { LoRALinear } from '@slmkit/adapters';
 * const layer = new LoRALinear(new Linear(16, 32), { rank: 4, alpha: 8 });
 * const adapter = layer.adapter('default')!;
 * console.log(adapter.checkpointShapes(), adapter.scaling); // { lora_A: [4, 16], lora_B: [32, 4] } 2
 * layer.dispose();
 * ```
 */
export class LoRAAdapter extends Module {
  /** `r`. */
  readonly rank: number;
  /** `lora_alpha`. */
  readonly alpha: number;
  /** Whether the scaling is `alpha / √rank` (rsLoRA) rather than `alpha / rank`. */
  readonly rsLoRA: boolean;
  /** Whether this is a DoRA adapter (with a magnitude vector). */
  readonly dora: boolean;
  /** Dropout on the adapter's input while training. */
  readonly dropout: number;
  /** `s`: `alpha / rank`, or `alpha / √rank` with rsLoRA. */
  readonly scaling: number;
  /** `Aᵀ`, `[in, rank]` (a checkpoint's `lora_A.weight` is `[rank, in]`). */
  readonly loraA: tf.Variable;
  /** `Bᵀ`, `[rank, out]` (a checkpoint's `lora_B.weight` is `[out, rank]`). */
  readonly loraB: tf.Variable;
  /** DoRA's `m`, `[out]`; undefined for LoRA. */
  readonly magnitude: tf.Variable | undefined;

  /**
   * @param base - the layer adapted (its widths; for DoRA, its weight gives `m`'s initial value `‖W‖` per row).
   * @param options - see {@link LoRAOptions}.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the first invalid option.
   */
  constructor(base: Linear, options: LoRAOptions) {
    super();
    const o = checkLoRAOptions('LoRAAdapter', options);
    this.rank = o.rank;
    this.alpha = o.alpha;
    this.rsLoRA = o.rsLoRA;
    this.dora = o.dora;
    this.dropout = o.dropout;
    this.scaling = o.rsLoRA ? o.alpha / Math.sqrt(o.rank) : o.alpha / o.rank;
    const { inFeatures: I, outFeatures: O } = base;
    const bound = 1 / Math.sqrt(I);
    this.loraA = this.registerParameter(
      'lora_A',
      tf.tidy(() => tf.transpose(tf.randomUniform([o.rank, I], -bound, bound, 'float32', o.seed))), // [in, r]
      { transposed: true },
    );
    this.loraB = this.registerParameter('lora_B', tf.zeros([o.rank, O]), { transposed: true }); // [r, out]
    // With B = 0, m = ‖W‖ makes the adapted layer start equal to the base.
    this.magnitude = o.dora ? this.registerParameter('lora_magnitude_vector', tf.tidy(() => tf.sqrt(tf.sum(tf.square(base.weight), 0)))) : undefined; // [out]
  }

  /** `s · B A` in the compute layout, `[in, out]`: what merging adds to the base weight `Wᵀ`. */
  delta(): tf.Tensor2D {
    return tf.tidy(() => tf.mul(tf.matMul(this.loraA, this.loraB), this.scaling)) as tf.Tensor2D; // [in, r] · [r, out] -> [in, out]
  }

  /**
   * DoRA's `m / ‖W + s B A‖`, one factor per output row of the `[out, in]` weight (`[out]`), with the norm a
   * constant for gradients, as PEFT computes it. Undefined for LoRA.
   */
  magnitudeScale(weight: tf.Tensor2D): tf.Tensor1D | undefined {
    if (this.magnitude == null) return undefined;
    return tf.tidy(() => {
      const adapted = tf.add(weight, this.delta()); // [in, out]: (W + s B A)ᵀ
      // sqrt(Σ v²) rather than tf.norm, which is about 3x slower on wasm here (benchmarks: adapters/dora-*).
      const norm = stopGradient(tf.sqrt(tf.sum(tf.square(adapted), 0))) as tf.Tensor1D; // [out]: one norm per output row of W
      return tf.div(this.magnitude!, norm) as tf.Tensor1D; // [out]
    });
  }
}

/**
 * A `Linear` with any number of named adapters, one of them active at a time:
 *
 * - **LoRA** (Hu et al., 2021): `y = x Wᵀ + b + s · (x Aᵀ) Bᵀ` with `s = alpha / rank`;
 * - **rsLoRA** (Kalajdzievski, 2023): the same with `s = alpha / √rank`;
 * - **DoRA** (Liu et al., 2024): `V = W + s B A`, `n = ‖V‖₂` per output row (across the input features),
 *   `y = (m / n) ⊙ (x Vᵀ) + b`, with `n` computed from the current weights at every call and treated as a constant
 *   for gradients, exactly as Hugging Face PEFT does (its "column-wise" norm is this one, in the `[in, out]` view).
 *
 * The base layer's variables are shared, under their own names (`weight`, `bias`), so a model's parameter names
 * do not change; the adapters' are `adapters.<name>.lora_A` and so on. The base is frozen (not trainable) when a
 * `LoRALinear` is made. {@link LoRALinear.merge} folds the active adapter into the base weight (a DoRA merge is
 * `W' = (m / n) ⊙ V`), and {@link LoRALinear.unmerge} restores the weight it had, bit for bit.
 *
 * Blocks take it as a part in place of a `Linear` (it is a `Projection`); `addAdapter` and `loadAdapter` attach
 * it to a model that is already built, as the base layer's delegate (see `Linear.setDelegate`).
 *
 * Unlike PEFT, which wraps the base module (`q_proj.base_layer.weight`), the base weights keep their Hugging Face
 * names, and an unmerge is exact rather than a subtraction.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Linear } from '@slmkit/core';
 * import { LoRALinear } from '@slmkit/adapters';
 * const layer = new LoRALinear(new Linear(16, 32), { rank: 4, alpha: 8 });
 * layer.addAdapter('second', { rank: 2, dora: true }); // now active
 * layer.setAdapter('default');
 * const x = tf.randomNormal([2, 5, 16]);
 * const y = layer.forward(x); // [2, 5, 32]
 * layer.merge(); // W += 2 · B A; forward is now one matmul
 * layer.unmerge(); // W back, exactly
 * console.log(y.shape, layer.adapterNames(), layer.namedParameters().map(([n]) => n));
 * // [2, 5, 32] ["default", "second"] ["weight", "bias", "adapters.default.lora_A", ...]
 * tf.dispose([x, y]);
 * layer.dispose();
 * ```
 */
export class LoRALinear extends Module {
  /** The layer adapted; its variables are this module's `weight` and `bias`. */
  readonly base: Linear;
  /** Input width. */
  readonly inFeatures: number;
  /** Output width. */
  readonly outFeatures: number;
  /**
   * Whether the adapter's dropout is applied (default false). `trainAdapters` sets it for the duration of a
   * step.
   */
  training = false;
  private adapterSet: AdapterSet;
  private active: string | undefined = undefined;
  private enabled = true;
  private mergedState: { name: string; weight: tf.Tensor } | undefined = undefined;

  /**
   * @param base - the `Linear` to adapt: frozen, and from now on its `forward` hands the input to this layer
   *   (`Linear.setDelegate`).
   * @param adapter - a first adapter (named `adapter.name`, default `"default"`), or none.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} for a base that is not a `Linear` or is already wrapped,
   *   or an invalid adapter option.
   */
  constructor(base: Linear, adapter?: LoRAOptions & { name?: string }) {
    super();
    if (!(base instanceof Linear)) {
      throw new ConfigError(`LoRALinear: base must be a Linear, found ${base == null ? String(base) : (base as object).constructor.name}`, {
        field: 'base',
        expected: 'Linear',
        found: base == null ? base : (base as object).constructor.name,
      });
    }
    if (base.delegate != null) {
      throw new ConfigError(`LoRALinear: this Linear already hands its forward to a ${base.delegate.constructor.name}; add adapters to that one`, {
        field: 'base',
        expected: 'a Linear without a delegate',
        found: base.delegate.constructor.name,
      });
    }
    this.base = base;
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    base.freeze();
    this.registerParameter('weight', base.weight, { transposed: true, trainable: false });
    if (base.bias != null) this.registerParameter('bias', base.bias, { trainable: false });
    this.adapterSet = this.registerModule('adapters', new AdapterSet(new Map()));
    if (adapter != null) this.addAdapter(adapter.name ?? 'default', adapter);
    // Whoever still calls the Linear (a block built with it, a model it was attached to) gets the adapted output.
    base.setDelegate(this);
  }

  /** The names of the adapters, in the order they were added. */
  adapterNames(): string[] {
    return [...this.adapterSet.adapters.keys()];
  }

  /** The adapter of that name, if any. */
  adapter(name: string): LoRAAdapter | undefined {
    return this.adapterSet.adapters.get(name);
  }

  /** The active adapter's name (undefined when there is none). It applies unless disabled or merged. */
  get activeAdapter(): string | undefined {
    return this.active;
  }

  /** Whether adapters apply at all (see {@link LoRALinear.disable}). */
  get isEnabled(): boolean {
    return this.enabled;
  }

  /** The adapter merged into the base weight, if any. */
  get mergedAdapter(): string | undefined {
    return this.mergedState?.name;
  }

  /**
   * Adds a new adapter (trainable, `B = 0`, so the output does not change until it is trained or loaded) and
   * makes it the active one.
   *
   * @throws {@link @slmkit/core!ConfigError | ConfigError} for a taken or malformed name, an invalid option, or
   *   while an adapter is merged.
   */
  addAdapter(name: string, options: LoRAOptions): LoRAAdapter {
    checkAdapterName('LoRALinear.addAdapter', name);
    if (this.adapterSet.adapters.has(name)) {
      throw new ConfigError(`LoRALinear.addAdapter: an adapter named "${name}" already exists (${this.adapterNames().join(', ')})`, {
        field: 'name',
        expected: 'a new adapter name',
        found: name,
      });
    }
    this.checkNotMerged('addAdapter');
    const adapter = new LoRAAdapter(this.base, options);
    const adapters = new Map(this.adapterSet.adapters).set(name, adapter);
    this.replaceAdapterSet(adapters);
    this.active = name;
    return adapter;
  }

  /**
   * Removes an adapter and disposes its parameters. If it was the active one, none is active afterwards.
   *
   * @throws {@link @slmkit/core!ConfigError | ConfigError} for an unknown name, or while that adapter is merged.
   */
  deleteAdapter(name: string): void {
    const adapter = this.requireAdapter('deleteAdapter', name);
    if (this.mergedState?.name === name) {
      throw new ConfigError(`LoRALinear.deleteAdapter: adapter "${name}" is merged; unmerge it first`, { field: 'name', expected: 'an unmerged adapter', found: name });
    }
    const adapters = new Map(this.adapterSet.adapters);
    adapters.delete(name);
    this.replaceAdapterSet(adapters);
    adapter.dispose();
    if (this.active === name) this.active = undefined;
  }

  /**
   * Makes `name` the active adapter (and enables adapters), or, with `undefined`, leaves none active.
   *
   * @throws {@link @slmkit/core!ConfigError | ConfigError} for an unknown name, or while an adapter is merged.
   */
  setAdapter(name: string | undefined): void {
    if (name !== undefined) this.requireAdapter('setAdapter', name);
    if (name !== this.active || !this.enabled) this.checkNotMerged('setAdapter');
    this.active = name;
    this.enabled = true;
  }

  /**
   * Turns adapters off: the layer computes its base `x Wᵀ + b` until {@link LoRALinear.enable}.
   *
   * @throws {@link @slmkit/core!ConfigError | ConfigError} while an adapter is merged (its change is in the weight).
   */
  disable(): void {
    if (this.enabled) this.checkNotMerged('disable');
    this.enabled = false;
  }

  /** Turns adapters back on (the active one applies again). */
  enable(): void {
    this.enabled = true;
  }

  /**
   * Folds the active adapter into the base weight, so that the forward is one matmul: LoRA `W' = W + s B A`,
   * DoRA `W' = (m / n) ⊙ (W + s B A)`. The previous weight is kept for an exact {@link LoRALinear.unmerge}.
   *
   * @returns whether anything was merged (false when no adapter is active or adapters are disabled).
   * @throws {@link @slmkit/core!ConfigError | ConfigError} when an adapter is merged already.
   */
  merge(): boolean {
    this.checkNotMerged('merge');
    const adapter = this.current();
    if (adapter == null) return false;
    const weight = this.base.weight;
    const merged = tf.tidy(() => {
      const adapted = tf.add(weight, adapter.delta()); // [in, out]
      const scale = adapter.magnitudeScale(weight as tf.Tensor2D); // [out] or undefined
      return scale == null ? adapted : tf.mul(adapted, scale); // [in, out]
    });
    this.mergedState = { name: this.active!, weight: tf.clone(weight) };
    weight.assign(merged);
    merged.dispose();
    return true;
  }

  /**
   * Puts back the base weight as it was before {@link LoRALinear.merge}, bit for bit.
   *
   * @returns whether anything was unmerged (false when nothing was merged).
   */
  unmerge(): boolean {
    const state = this.mergedState;
    if (state == null) return false;
    this.base.weight.assign(state.weight);
    state.weight.dispose();
    this.mergedState = undefined;
    return true;
  }

  /**
   * `x Wᵀ + b` plus the active adapter's change (none when disabled, merged or no adapter is active).
   *
   * @param x - float32 `[..., inFeatures]`.
   * @returns `[..., outFeatures]`; the caller owns it.
   * @throws {@link @slmkit/core!ShapeError | ShapeError} for an input of another width or dtype.
   */
  forward(x: tf.Tensor): tf.Tensor {
    const adapter = this.current();
    if (adapter == null) return this.base.affine(x);
    checkLastDim('LoRALinear', x, this.inFeatures, 'inFeatures');
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const x2d = tf.reshape(x, [-1, this.inFeatures]); // [N, in]
      const dropped = this.training && adapter.dropout > 0 ? tf.dropout(x2d, adapter.dropout) : x2d; // [N, in]
      const low = tf.matMul(tf.matMul(dropped, adapter.loraA), adapter.loraB); // [N, in] · [in, r] · [r, out] -> [N, out]
      const scale = adapter.magnitudeScale(this.base.weight as tf.Tensor2D); // [out] or undefined
      let y: tf.Tensor;
      if (scale == null) {
        y = tf.add(this.base.affine(x2d), tf.mul(low, adapter.scaling)); // [N, out]
      } else {
        // (m / n) ⊙ (x Wᵀ + s x Aᵀ Bᵀ), then the bias, which DoRA does not rescale.
        y = tf.mul(tf.add(tf.matMul(x2d, this.base.weight), tf.mul(low, adapter.scaling)), scale); // [N, out]
        if (this.base.bias != null) y = tf.add(y, this.base.bias);
      }
      return tf.reshape(y, [...lead, this.outFeatures]); // [..., out]
    });
  }

  /** Disposes the parameters (the base layer's included) and the weight kept for an unmerge. */
  override dispose(): void {
    this.mergedState?.weight.dispose();
    this.mergedState = undefined;
    super.dispose();
  }

  private replaceAdapterSet(adapters: ReadonlyMap<string, LoRAAdapter>): void {
    const set = new AdapterSet(adapters);
    this.replaceModule('adapters', set);
    this.adapterSet = set;
  }

  /** The adapter that applies now, if any. */
  private current(): LoRAAdapter | undefined {
    if (!this.enabled || this.mergedState != null || this.active == null) return undefined;
    return this.adapterSet.adapters.get(this.active);
  }

  private requireAdapter(method: string, name: string): LoRAAdapter {
    const adapter = this.adapterSet.adapters.get(name);
    if (adapter == null) {
      throw new ConfigError(`LoRALinear.${method}: no adapter named ${JSON.stringify(name)} (adapters: ${this.adapterNames().join(', ') || 'none'})`, {
        field: 'name',
        expected: this.adapterNames(),
        found: name,
      });
    }
    return adapter;
  }

  private checkNotMerged(method: string): void {
    if (this.mergedState != null) {
      throw new ConfigError(`LoRALinear.${method}: adapter "${this.mergedState.name}" is merged into the weight; unmerge first`, {
        field: 'merged',
        expected: 'no merged adapter',
        found: this.mergedState.name,
      });
    }
  }
}

/** The adapters of one layer, registered by name (`adapters.<name>.lora_A`). Rebuilt when one is added or removed. */
class AdapterSet extends Module {
  constructor(readonly adapters: ReadonlyMap<string, LoRAAdapter>) {
    super();
    for (const [name, adapter] of adapters) this.registerModule(name, adapter);
  }
}

/**
 * A {@link LoRALinear} whose first adapter is a DoRA adapter (weight-decomposed low-rank adaptation): the same
 * class with `dora: true` by default. See {@link LoRALinear} for the maths.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Linear } from '@slmkit/core';
 * import { DoRALinear } from '@slmkit/adapters';
 * const layer = new DoRALinear(new Linear(16, 32), { rank: 4, alpha: 8 });
 * const x = tf.randomNormal([3, 16]);
 * const y = layer.forward(x); // [3, 32]; equals the base until B or m move
 * console.log(layer.adapter('default')!.magnitude!.shape); // [32]
 * tf.dispose([x, y]);
 * layer.dispose();
 * ```
 */
export class DoRALinear extends LoRALinear {
  /**
   * @param base - the `Linear` to adapt (frozen by this call).
   * @param adapter - the first adapter; `dora` defaults to true.
   */
  constructor(base: Linear, adapter: LoRAOptions & { name?: string }) {
    super(base, { ...adapter, dora: adapter?.dora ?? true });
  }
}
