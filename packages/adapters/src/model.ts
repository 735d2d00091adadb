/**
 * Adapters on a whole model: add one by policy, switch between named adapters, disable, merge and unmerge.
 *
 * @module
 */
import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, type Linear, type Module } from '@slmkit/core';
import { checkAdapterName, checkLoRAOptions, LoRALinear } from './lora-linear.js';
import { checkPattern, linearLayers, patternValue, selectLinears, type AdapterPolicy } from './policy.js';

/**
 * Every adapted layer of `model` ({@link LoRALinear}), each once, with its first dotted name, in model order.
 *
 * @example
 * ```ts
 * import { CausalLM, configFromHF } from '@slmkit/models';
 * import { addAdapter, adaptedLayers } from '@slmkit/adapters';
 * const model = new CausalLM(configFromHF({
 *   model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
 *   num_attention_heads: 4, num_key_value_heads: 2,
 * }));
 * addAdapter(model, 'default', { target: ['q_proj', 'v_proj'], rank: 4 });
 * console.log(adaptedLayers(model).map(([name]) => name)); // ["model.layers.0.self_attn.q_proj", ...] (4 layers)
 * model.dispose();
 * ```
 */
export function adaptedLayers(model: Module): [string, LoRALinear][] {
  const seen = new Set<LoRALinear>();
  const out: [string, LoRALinear][] = [];
  for (const [name, module] of model.namedModules()) {
    if (module instanceof LoRALinear && !seen.has(module)) {
      seen.add(module);
      out.push([name, module]);
    }
  }
  return out;
}

/**
 * The {@link LoRALinear} in the place of `linear` in `model`: the one already there, or a new one put in every
 * place the layer is registered (a shared layer has several) and made the layer's delegate, so that the blocks
 * holding the `Linear` run the adapter.
 */
function wrap(model: Module, linear: Linear, names: readonly string[]): LoRALinear {
  if (linear.delegate instanceof LoRALinear) return linear.delegate;
  const modules = new Map(model.namedModules());
  const lora = new LoRALinear(linear); // becomes the Linear's delegate
  for (const name of names) {
    const dot = name.lastIndexOf('.');
    const parent = modules.get(dot < 0 ? '' : name.slice(0, dot))!;
    parent.replaceModule(name.slice(dot + 1), lora);
  }
  return lora;
}

/** The adapted layers, or a ConfigError when there are none. */
function requireAdapted(model: Module, what: string): [string, LoRALinear][] {
  const layers = adaptedLayers(model);
  if (layers.length === 0) {
    throw new ConfigError(`${what}: the model has no adapters (add one with addAdapter or loadAdapter)`, {
      field: 'model',
      expected: 'a model with adapters',
      found: 'no LoRALinear layer',
    });
  }
  return layers;
}

/** Throws when some layer has an adapter merged (the operation would need it unmerged). */
function checkNothingMerged(layers: [string, LoRALinear][], what: string): void {
  const merged = layers.find(([, l]) => l.mergedAdapter != null);
  if (merged != null) {
    throw new ConfigError(`${what}: adapter "${merged[1].mergedAdapter}" is merged into ${merged[0]}; call unmergeAdapters first`, {
      field: 'merged',
      expected: 'no merged adapter',
      found: `${merged[0]}: ${merged[1].mergedAdapter}`,
    });
  }
}

/**
 * Adds an adapter named `name` to the linear layers `policy.target` selects, with the policy's rank, alpha, kind
 * and per-layer overrides, and makes it the active adapter (on layers without it, none is active). New adapters
 * start with `B = 0`, so the model's output does not change until they are trained. The new adapter's parameters
 * are trainable and every parameter of the model that belongs to no adapter is frozen, as PEFT does.
 *
 * @returns the adapted layers' names.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for an invalid option, a target that selects no `Linear`, a name some
 *   selected layer already has, or while an adapter is merged. Nothing changes when it throws.
 *
 * @example
 * ```ts
 * import { CausalLM, configFromHF } from '@slmkit/models';
 * import { addAdapter } from '@slmkit/adapters';
 * const model = new CausalLM(configFromHF({
 *   model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
 *   num_attention_heads: 4, num_key_value_heads: 2,
 * }));
 * const names = addAdapter(model, 'chat', { target: ['q_proj', 'v_proj'], rank: 8, alpha: 16, rsLoRA: true });
 * console.log(names.length, model.parameterCount().trainable); // 4 1792: rank 8 · ((32 + 32) + (32 + 16)) · 2 layers
 * model.dispose();
 * ```
 */
export function addAdapter(model: Module, name: string, policy: AdapterPolicy): string[] {
  const owner = 'addAdapter';
  checkAdapterName(owner, name);
  if (policy == null || typeof policy !== 'object') {
    throw new ConfigError(`${owner}: policy must be an object with target and rank, found ${String(policy)}`, { field: 'policy', expected: '{ target, rank }', found: policy });
  }
  checkPattern(owner, 'rankPattern', policy.rankPattern, true);
  checkPattern(owner, 'alphaPattern', policy.alphaPattern, false);
  checkNothingMerged(adaptedLayers(model), owner);
  const selected = selectLinears(model, policy.target, owner);
  if (selected.length === 0) {
    throw new ConfigError(`${owner}: the target selects no linear layer of the model`, { field: 'target', expected: 'at least one Linear', found: 'none' });
  }
  const taken = selected.find(([, l]) => l.delegate instanceof LoRALinear && l.delegate.adapter(name) != null);
  if (taken != null) {
    throw new ConfigError(`${owner}: ${taken[0]} already has an adapter named "${name}"`, { field: 'name', expected: 'a new adapter name', found: name });
  }
  const { target: _target, rankPattern, alphaPattern, ...options } = policy;
  // Validate every layer's options before changing anything.
  const plans = selected.map(([layerName, linear]) => {
    const rank = patternValue(rankPattern, layerName, options.rank, 'rankPattern');
    const alpha = patternValue(alphaPattern, layerName, options.alpha ?? options.rank, 'alphaPattern');
    return { layerName, linear, options: { ...options, rank, alpha } };
  });
  for (const p of plans) checkLoRAOptions(owner, p.options);
  const all = linearLayers(model);
  for (const [i, p] of plans.entries()) {
    const layer = wrap(model, p.linear, all.get(p.linear)!);
    layer.addAdapter(name, { ...p.options, seed: p.options.seed == null ? undefined : p.options.seed + i });
  }
  // Freeze everything but the adapters (earlier adapters keep whatever trainability they have).
  const adapterVars = new Set(adaptedLayers(model).flatMap(([, l]) => l.adapterNames().flatMap((n) => l.adapter(n)!.parameters())));
  for (const v of model.parameters()) if (!adapterVars.has(v)) v.trainable = false;
  setAdapter(model, name);
  return plans.map((p) => p.layerName);
}

/**
 * Makes `name` the active adapter of every layer that has it (and enables adapters); layers without it run their
 * base weights. With `undefined`, no adapter is active.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when no layer has that adapter, or while an adapter is merged.
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { setAdapter } from '@slmkit/adapters';
 * declare const model: Module; // with adapters "french" and "code" loaded
 * setAdapter(model, 'code'); // switch, no reload
 * setAdapter(model, 'french');
 * ```
 */
export function setAdapter(model: Module, name: string | undefined): void {
  const layers = requireAdapted(model, 'setAdapter');
  if (name !== undefined && !layers.some(([, l]) => l.adapter(name) != null)) {
    const names = adapterNames(model);
    throw new ConfigError(`setAdapter: no adapter named ${JSON.stringify(name)} (adapters: ${names.join(', ')})`, { field: 'name', expected: names, found: name });
  }
  const changes = layers.some(([, l]) => !l.isEnabled || l.activeAdapter !== (name !== undefined && l.adapter(name) != null ? name : undefined));
  if (changes) checkNothingMerged(layers, 'setAdapter');
  for (const [, l] of layers) l.setAdapter(name !== undefined && l.adapter(name) != null ? name : undefined);
}

/**
 * The names of the adapters on `model`, in the order they were added.
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { adapterNames } from '@slmkit/adapters';
 * declare const model: Module;
 * console.log(adapterNames(model)); // e.g. ["default", "code"]
 * ```
 */
export function adapterNames(model: Module): string[] {
  const names = new Set<string>();
  for (const [, l] of adaptedLayers(model)) for (const n of l.adapterNames()) names.add(n);
  return [...names];
}

/**
 * The active adapter's name (the first adapted layer's), or undefined when none is active or adapters are
 * disabled.
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { activeAdapter } from '@slmkit/adapters';
 * declare const model: Module;
 * console.log(activeAdapter(model)); // "default"
 * ```
 */
export function activeAdapter(model: Module): string | undefined {
  const layer = adaptedLayers(model).find(([, l]) => l.activeAdapter != null);
  return layer != null && layer[1].isEnabled ? layer[1].activeAdapter : undefined;
}

/**
 * Turns every adapter off: the model computes with its base weights (and gives the base model's logits) until
 * {@link enableAdapters}.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when the model has no adapters, or while one is merged.
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { disableAdapters, enableAdapters } from '@slmkit/adapters';
 * declare const model: Module;
 * disableAdapters(model); // the base model
 * enableAdapters(model); // the active adapter again
 * ```
 */
export function disableAdapters(model: Module): void {
  const layers = requireAdapted(model, 'disableAdapters');
  if (layers.some(([, l]) => l.isEnabled)) checkNothingMerged(layers, 'disableAdapters');
  for (const [, l] of layers) l.disable();
}

/**
 * Turns adapters back on after {@link disableAdapters}.
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { enableAdapters } from '@slmkit/adapters';
 * declare const model: Module;
 * enableAdapters(model);
 * ```
 */
export function enableAdapters(model: Module): void {
  for (const [, l] of requireAdapted(model, 'enableAdapters')) l.enable();
}

/**
 * Folds the active adapter into the base weights of every adapted layer (LoRA `W + s B A`, DoRA
 * `(m / n) ⊙ (W + s B A)`), so that inference costs what the base model costs. The previous weights are kept, and
 * {@link unmergeAdapters} puts them back exactly.
 *
 * @returns how many layers were merged.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when the model has no adapters, or one is merged already.
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { mergeAdapters, unmergeAdapters } from '@slmkit/adapters';
 * declare const model: Module;
 * mergeAdapters(model); // as fast as the base model
 * unmergeAdapters(model); // the base weights again, bit for bit
 * ```
 */
export function mergeAdapters(model: Module): number {
  const layers = requireAdapted(model, 'mergeAdapters');
  checkNothingMerged(layers, 'mergeAdapters');
  let merged = 0;
  for (const [, l] of layers) if (l.merge()) merged++;
  return merged;
}

/**
 * Undoes {@link mergeAdapters}: every merged layer gets back the weight it had, bit for bit.
 *
 * @returns how many layers were unmerged.
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { unmergeAdapters } from '@slmkit/adapters';
 * declare const model: Module;
 * console.log(unmergeAdapters(model)); // e.g. 14
 * ```
 */
export function unmergeAdapters(model: Module): number {
  let unmerged = 0;
  for (const [, l] of requireAdapted(model, 'unmergeAdapters')) if (l.unmerge()) unmerged++;
  return unmerged;
}

/**
 * Removes the adapter `name` from every layer that has it and frees its parameters.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when no layer has it, or while it is merged.
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { deleteAdapter } from '@slmkit/adapters';
 * declare const model: Module;
 * deleteAdapter(model, 'old');
 * ```
 */
export function deleteAdapter(model: Module, name: string): void {
  const layers = requireAdapted(model, 'deleteAdapter').filter(([, l]) => l.adapter(name) != null);
  if (layers.length === 0) {
    const names = adapterNames(model);
    throw new ConfigError(`deleteAdapter: no adapter named ${JSON.stringify(name)} (adapters: ${names.join(', ')})`, { field: 'name', expected: names, found: name });
  }
  checkNothingMerged(layers.filter(([, l]) => l.mergedAdapter === name), 'deleteAdapter');
  for (const [, l] of layers) l.deleteAdapter(name);
}

/**
 * The parameters of one adapter (default: the active one) across the model: what an optimiser trains.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when no layer has that adapter (or none is active).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { Module } from '@slmkit/core';
 * import { adapterParameters } from '@slmkit/adapters';
 * declare const model: Module;
 * const vars = adapterParameters(model); // lora_A, lora_B (and DoRA magnitudes) of the active adapter
 * const optimizer = tf.train.adam(1e-3);
 * console.log(vars.length);
 * ```
 */
export function adapterParameters(model: Module, name?: string): tf.Variable[] {
  const wanted = name ?? activeAdapter(model);
  const out: tf.Variable[] = [];
  for (const [, l] of adaptedLayers(model)) {
    const adapter = wanted == null ? undefined : l.adapter(wanted);
    if (adapter != null) out.push(...adapter.parameters());
  }
  if (out.length === 0) {
    throw new ConfigError(`adapterParameters: no adapter named ${JSON.stringify(wanted)} on the model`, {
      field: 'name',
      expected: adapterNames(model),
      found: wanted,
    });
  }
  return out;
}
