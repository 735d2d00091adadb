/**
 * Adapter policies: which linear layers of a built model get an adapter, of which kind and rank, with per-layer
 * overrides (PEFT's `target_modules`, `rank_pattern`, `alpha_pattern`).
 *
 * @module
 */
import { ConfigError, Linear, type Module } from '@slmkit/core';
import { LoRALinear, type LoRAOptions } from './lora-linear.js';

/**
 * Which linear layers an adapter goes on, by their dotted (Hugging Face) module names:
 *
 * - a string without `*`: the layer of that name, or every layer whose name ends in `.` + it (`"q_proj"` matches
 *   `model.layers.0.self_attn.q_proj`), as PEFT's `target_modules` list does;
 * - a string with `*`: a glob over the whole name (`"model.layers.*.mlp.*_proj"`; `*` matches any characters);
 * - a `RegExp`: the whole name must match (as PEFT's `target_modules` given as one string);
 * - an array of those: any of them;
 * - a predicate on the name and the layer.
 *
 * Each string or `RegExp` must select at least one layer, and only `Linear` layers: otherwise adding the adapter
 * fails with a {@link @slmkit/core!ConfigError | ConfigError} naming it.
 *
 * @example
 * ```ts
 * import { Linear } from '@slmkit/core';
 * import type { AdapterTarget } from '@slmkit/adapters';
 * const attention: AdapterTarget = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
 * const firstLayers: AdapterTarget = /model\.layers\.[01]\..*_proj/;
 * const wide: AdapterTarget = (name: string, layer: Linear) => layer.outFeatures >= 1024;
 * ```
 */
export type AdapterTarget = string | RegExp | readonly (string | RegExp)[] | ((name: string, layer: Linear) => boolean);

/**
 * An adapter policy: the target layers, the adapter's options, and per-layer overrides of rank and alpha.
 *
 * @example
 * ```ts
 * import type { AdapterPolicy } from '@slmkit/adapters';
 * const policy: AdapterPolicy = {
 *   target: ['q_proj', 'v_proj', 'down_proj'],
 *   rank: 8,
 *   alpha: 16,
 *   dora: true,
 *   rankPattern: { 'layers.0.mlp.down_proj': 16 }, // this layer gets rank 16
 * };
 * ```
 */
export interface AdapterPolicy extends LoRAOptions {
  /** The layers to adapt; see {@link AdapterTarget}. */
  target: AdapterTarget;
  /**
   * Ranks by layer, overriding `rank` (PEFT's `rank_pattern`): a key applies to a layer whose full name equals
   * it, or (a regular expression) matches the end of the name after a `.`.
   */
  rankPattern?: Record<string, number>;
  /** Alphas by layer, overriding `alpha` (PEFT's `alpha_pattern`); keys as in `rankPattern`. */
  alphaPattern?: Record<string, number>;
}

/** Every linear layer of `model` with its dotted names (a shared layer has several), adapted ones included. */
export function linearLayers(model: Module): Map<Linear, string[]> {
  const out = new Map<Linear, string[]>();
  for (const [name, module] of model.namedModules()) {
    const linear = module instanceof LoRALinear ? module.base : module instanceof Linear ? module : undefined;
    if (linear == null) continue;
    const names = out.get(linear);
    if (names == null) out.set(linear, [name]);
    else names.push(name);
  }
  return out;
}

/** Whether one string or RegExp target selects `name`. */
function matchesOne(target: string | RegExp, name: string): boolean {
  if (target instanceof RegExp) return new RegExp(`^(?:${target.source})$`, target.flags.replace('g', '')).test(name);
  if (target.includes('*')) {
    const glob = target.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
    return new RegExp(`^${glob}$`).test(name);
  }
  return name === target || name.endsWith(`.${target}`);
}

/**
 * The linear layers `target` selects in `model`, each with its first name, in model order.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when a string or RegExp target selects nothing, or selects a module that
 *   is not a `Linear`.
 */
export function selectLinears(model: Module, target: AdapterTarget, owner: string): [string, Linear][] {
  const linears = linearLayers(model);
  if (typeof target === 'function') {
    return [...linears].filter(([layer, names]) => names.some((n) => target(n, layer))).map(([layer, names]) => [names[0]!, layer]);
  }
  const list = typeof target === 'string' || target instanceof RegExp ? [target] : target;
  if (!Array.isArray(list) || list.length === 0 || list.some((t) => typeof t !== 'string' && !(t instanceof RegExp))) {
    throw new ConfigError(`${owner}: target must be a name, a glob, a RegExp, a non-empty array of those, or a predicate, found ${JSON.stringify(target)}`, {
      field: 'target',
      expected: 'string | RegExp | (string | RegExp)[] | (name, layer) => boolean',
      found: target,
    });
  }
  const modules = model.namedModules().filter(([name]) => name !== '');
  for (const t of list as (string | RegExp)[]) {
    const hits = modules.filter(([name]) => matchesOne(t, name));
    if (hits.length === 0) {
      const suffixes = [...new Set([...linears.values()].flat().map((n) => n.slice(n.lastIndexOf('.') + 1)))];
      throw new ConfigError(`${owner}: target ${String(t instanceof RegExp ? t : JSON.stringify(t))} matches no module of the model (its linear layers are named ${suffixes.join(', ')})`, {
        field: 'target',
        expected: `one of ${suffixes.join(', ')} (or a full name, glob or RegExp)`,
        found: String(t),
      });
    }
    const other = hits.find(([, m]) => !(m instanceof Linear) && !(m instanceof LoRALinear));
    if (other != null) {
      throw new ConfigError(`${owner}: target ${String(t instanceof RegExp ? t : JSON.stringify(t))} matches ${other[0]}, a ${other[1].constructor.name}; adapters go on Linear layers only`, {
        field: 'target',
        expected: 'names of Linear layers',
        found: `${other[0]} (${other[1].constructor.name})`,
      });
    }
  }
  return [...linears].filter(([, names]) => names.some((n) => list.some((t) => matchesOne(t, n)))).map(([layer, names]) => [names[0]!, layer]);
}

/**
 * The value of a per-layer pattern (`rank_pattern` / `alpha_pattern`) for the layer `name`, or `fallback`: the
 * first key that, as a regular expression, matches the end of the name after a `.`, else the key equal to the name.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for a key that is not a valid regular expression.
 */
export function patternValue(patterns: Record<string, number> | undefined, name: string, fallback: number, field: string): number {
  if (patterns == null) return fallback;
  for (const [key, value] of Object.entries(patterns)) {
    let re: RegExp;
    try {
      re = new RegExp(`^.*\\.(?:${key})$`);
    } catch (e) {
      throw new ConfigError(`${field}: key ${JSON.stringify(key)} is not a valid regular expression (${(e as Error).message})`, { field, expected: 'a regular expression', found: key });
    }
    if (re.test(name)) return value;
  }
  return Object.hasOwn(patterns, name) ? patterns[name]! : fallback;
}

/** Checks a pattern record: an object of finite positive numbers (integers for ranks). */
export function checkPattern(owner: string, field: string, patterns: unknown, integer: boolean): void {
  if (patterns == null) return;
  if (typeof patterns !== 'object' || Array.isArray(patterns)) {
    throw new ConfigError(`${owner}: ${field} must be an object of layer name -> number, found ${JSON.stringify(patterns)}`, { field, expected: 'an object', found: patterns });
  }
  for (const [key, value] of Object.entries(patterns)) {
    const ok = typeof value === 'number' && Number.isFinite(value) && value > 0 && (!integer || Number.isInteger(value));
    if (!ok) {
      const expected = integer ? 'a positive integer' : 'a finite number > 0';
      throw new ConfigError(`${owner}: ${field}[${JSON.stringify(key)}] must be ${expected}, found ${JSON.stringify(value)}`, { field: `${field}.${key}`, expected, found: value });
    }
  }
}
