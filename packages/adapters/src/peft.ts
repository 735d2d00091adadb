/**
 * Hugging Face PEFT's adapter format, both ways: `adapter_config.json` + `adapter_model.safetensors`.
 *
 * @module
 */
import type * as tf from '@tensorflow/tfjs-core';
import {
  CheckpointError,
  ConfigError,
  openCheckpoint,
  readConfigJson,
  serializeSafetensors,
  type CheckpointProblem,
  type Linear,
  type Module,
  type WeightSource,
} from '@slmkit/core';
import { checkAdapterName, LoRALinear } from './lora-linear.js';
import { activeAdapter, adaptedLayers, adapterNames, addAdapter, deleteAdapter } from './model.js';
import { checkPattern, linearLayers, patternValue, selectLinears, type AdapterPolicy } from './policy.js';

/** PEFT's file names. */
const CONFIG_FILE = 'adapter_config.json';
const WEIGHTS_FILE = 'adapter_model.safetensors';
/** What PEFT's `get_peft_model_state_dict` puts before a base module's name. */
const KEY_PREFIX = 'base_model.model.';

/** The tensors of one adapted module, by what they are. */
const SUFFIXES = [
  ['.lora_A.weight', 'lora_A'],
  ['.lora_B.weight', 'lora_B'],
  ['.lora_magnitude_vector', 'lora_magnitude_vector'],
  ['.lora_magnitude_vector.weight', 'lora_magnitude_vector'], // older PEFT releases
] as const;
type Part = (typeof SUFFIXES)[number][1];

/**
 * `adapter_config.json` fields that only describe how an adapter was initialised or where it came from; they do
 * not change what a trained adapter computes.
 */
const IGNORED_FIELDS = new Set([
  'init_lora_weights', 'loftq_config', 'eva_config', 'task_type', 'revision', 'base_model_name_or_path',
  'inference_mode', 'auto_mapping', 'megatron_core', 'layers_pattern', 'corda_config', 'lora_ga_config',
]);
/** Fields read (and validated) here. */
const READ_FIELDS = new Set([
  'peft_type', 'r', 'lora_alpha', 'lora_dropout', 'use_rslora', 'use_dora', 'target_modules', 'rank_pattern', 'alpha_pattern',
]);

/** Whether a config value is its feature's "off" value (null, false, "none", an empty list or object). */
function isOff(value: unknown): boolean {
  if (value == null || value === false || value === 'none') return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && Object.keys(value as object).length === 0;
}

function fail(field: string, message: string, expected: unknown, found: unknown): never {
  throw new ConfigError(`${CONFIG_FILE}: ${message}`, { field, expected, found });
}

/**
 * Maps a PEFT `adapter_config.json` (a LoRA / rsLoRA / DoRA `LoraConfig`) to an {@link AdapterPolicy}.
 * `target_modules` as a list matches names and name suffixes, as a string a full-name regular expression, as in
 * PEFT. Options that change what an adapter computes and that slmkit does not implement (`fan_in_fan_out`, a
 * trained `bias`, `modules_to_save`, `layers_to_transform`, `layer_replication`, `exclude_modules`, ...) are
 * errors rather than ignored; fields that only describe the initialisation or provenance are ignored.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the field, the expected and the found value.
 *
 * @example
 * ```ts
 * import { policyFromPeftConfig } from '@slmkit/adapters';
 * const policy = policyFromPeftConfig({
 *   peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'], use_rslora: false, use_dora: false,
 * });
 * console.log(policy.rank, policy.alpha, policy.target); // 8 16 ["q_proj", "v_proj"]
 * ```
 */
export function policyFromPeftConfig(json: Record<string, unknown>): AdapterPolicy {
  if (json == null || typeof json !== 'object' || Array.isArray(json)) fail('adapter_config', 'must be a JSON object', 'an object', json);
  if (json.peft_type !== 'LORA') fail('peft_type', `peft_type must be "LORA" (LoRA, rsLoRA, DoRA), found ${JSON.stringify(json.peft_type)}`, 'LORA', json.peft_type);
  const r = json.r;
  if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0) fail('r', `r must be a positive integer, found ${JSON.stringify(r)}`, 'a positive integer', r);
  const alpha = json.lora_alpha ?? 8; // PEFT's default
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha <= 0) fail('lora_alpha', `lora_alpha must be a number > 0, found ${JSON.stringify(alpha)}`, 'a number > 0', alpha);
  const dropout = json.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) fail('lora_dropout', `lora_dropout must be in [0, 1), found ${JSON.stringify(dropout)}`, '[0, 1)', dropout);
  const flag = (field: string): boolean => {
    const v = json[field] ?? false;
    if (typeof v !== 'boolean') fail(field, `${field} must be a boolean, found ${JSON.stringify(v)}`, 'a boolean', v);
    return v as boolean;
  };
  const targets = json.target_modules;
  let target: AdapterPolicy['target'];
  if (typeof targets === 'string' && targets !== '') {
    try {
      target = new RegExp(targets);
    } catch (e) {
      return fail('target_modules', `target_modules ${JSON.stringify(targets)} is not a valid regular expression (${(e as Error).message})`, 'a regular expression', targets);
    }
  } else if (Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === 'string' && t !== '')) {
    target = targets as string[];
  } else {
    const hint = targets == null ? ' (PEFT then picks defaults per architecture; list the modules instead)' : '';
    return fail('target_modules', `target_modules must be a non-empty list of module names or a regular expression, found ${JSON.stringify(targets)}${hint}`, 'a list of names or a regex', targets);
  }
  for (const [field, value] of Object.entries(json)) {
    if (READ_FIELDS.has(field) || IGNORED_FIELDS.has(field) || isOff(value)) continue;
    fail(field, `${field} = ${JSON.stringify(value)} is not supported (slmkit reads plain LoRA, rsLoRA and DoRA on linear layers; expected it off: null, false, "none" or empty)`, 'off (null, false, "none" or empty)', value);
  }
  checkPattern(CONFIG_FILE, 'rank_pattern', json.rank_pattern, true);
  checkPattern(CONFIG_FILE, 'alpha_pattern', json.alpha_pattern, false);
  return {
    target,
    rank: r as number,
    alpha: alpha as number,
    rsLoRA: flag('use_rslora'),
    dora: flag('use_dora'),
    dropout: dropout as number,
    rankPattern: isOff(json.rank_pattern) ? undefined : (json.rank_pattern as Record<string, number>),
    alphaPattern: isOff(json.alpha_pattern) ? undefined : (json.alpha_pattern as Record<string, number>),
  };
}

/** `file` inside the folder `location` names (a path, or a URL of the folder). */
function fileIn(location: string | URL, file: string): string | URL {
  if (location instanceof URL) return new URL(file, location.href.endsWith('/') ? location : `${location.href}/`);
  return `${location.replace(/\/+$/, '')}/${file}`;
}

/**
 * Options of {@link loadAdapter}.
 *
 * @example
 * ```ts
 * import type { LoadAdapterOptions } from '@slmkit/adapters';
 * const options: LoadAdapterOptions = { name: 'french' };
 * ```
 */
export interface LoadAdapterOptions {
  /** The name the adapter gets on the model (default `"default"`, PEFT's). */
  name?: string;
  /** Replaces the global `fetch` for URL locations (to add headers, or in tests). */
  fetch?: typeof fetch;
}

/**
 * Loads a PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`, as `save_pretrained` writes them) onto
 * a model, typically one from `fromPretrained`, and makes it the active adapter. Tensors are matched by PEFT's
 * names (`base_model.model.<module>.lora_A.weight`, `.lora_B.weight`, `.lora_magnitude_vector`) to the model's
 * Hugging Face module names. Every problem of the file is collected first; nothing changes when it fails.
 *
 * @param dirOrUrl - the adapter's folder (Node), or an http(s) URL of it (also the only kind in a browser).
 * @returns the adapted layers' names.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for a missing or unsupported `adapter_config.json` field, a
 *   target module the model does not have, or a name already in use; {@link @slmkit/core!CheckpointError | CheckpointError} listing every
 *   missing, unexpected and mis-shaped tensor (a rank that disagrees with `r` / `rank_pattern` among them).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { initBackend } from '@slmkit/core';
 * import { fromPretrained } from '@slmkit/models';
 * import { loadAdapter, setAdapter } from '@slmkit/adapters';
 * await initBackend('wasm');
 * const model = await fromPretrained('./checkpoints/SmolLM-135M');
 * await loadAdapter(model, './adapters/smollm-french', { name: 'french' });
 * await loadAdapter(model, './adapters/smollm-code', { name: 'code' }); // now active
 * setAdapter(model, 'french');
 * const out = await model.generate([[1, 504, 3458]], { maxNewTokens: 8 });
 * console.log(out.tokens);
 * model.dispose();
 * ```
 */
export async function loadAdapter(model: Module, dirOrUrl: string | URL, options: LoadAdapterOptions = {}): Promise<string[]> {
  const name = options.name ?? 'default';
  checkAdapterName('loadAdapter', name);
  const configLocation = fileIn(dirOrUrl, CONFIG_FILE);
  let json: Record<string, unknown>;
  try {
    json = await readConfigJson(configLocation, { fetch: options.fetch });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw new ConfigError(`loadAdapter: ${e.message}`, { field: CONFIG_FILE, expected: e.details.expected, found: e.details.found });
  }
  const policy = policyFromPeftConfig(json);
  const selected = selectLinears(model, policy.target, `loadAdapter (${CONFIG_FILE} target_modules)`);
  const taken = selected.find(([, l]) => l.delegate instanceof LoRALinear && l.delegate.adapter(name) != null);
  if (taken != null) {
    throw new ConfigError(`loadAdapter: ${taken[0]} already has an adapter named "${name}"; pass another { name }`, { field: 'name', expected: 'a new adapter name', found: name });
  }
  const checkpoint = await openCheckpoint(fileIn(dirOrUrl, WEIGHTS_FILE), { fetch: options.fetch });
  try {
    const plan = planTensors(checkpoint, selected, policy);
    const selectedLayers = new Set(selected.map(([, l]) => l));
    const layerNames = addAdapter(model, name, { ...policy, target: (_n, layer) => selectedLayers.has(layer) });
    try {
      for (const [, layer] of adaptedLayers(model)) {
        const keys = plan.get(layer.base);
        if (keys == null) continue;
        await layer.adapter(name)!.loadWeights(renamed(checkpoint, keys), { strict: true });
      }
    } catch (e) {
      deleteAdapter(model, name);
      throw e;
    }
    return layerNames;
  } finally {
    await checkpoint.close();
  }
}

/** A view of `source` in which the tensor `keys[part]` is called `part`. */
function renamed(source: WeightSource, keys: Partial<Record<Part, string>>): WeightSource {
  const entries = Object.entries(keys) as [Part, string][];
  const byPart = new Map(entries);
  return {
    names: () => entries.map(([part]) => part),
    shape: (part) => source.shape(byPart.get(part as Part)!),
    read: (part) => source.read(byPart.get(part as Part)!),
  };
}

/**
 * Matches the file's tensors to the selected layers and checks names and shapes against the config. Returns,
 * per layer, its tensors' keys; throws one CheckpointError with every problem.
 */
function planTensors(source: WeightSource, selected: [string, Linear][], policy: AdapterPolicy): Map<Linear, Partial<Record<Part, string>>> {
  const byName = new Map(selected);
  const plan = new Map<Linear, Partial<Record<Part, string>>>();
  const problems: CheckpointProblem[] = [];
  for (const key of source.names()) {
    const suffix = SUFFIXES.find(([s]) => key.endsWith(s));
    if (!key.startsWith(KEY_PREFIX) || suffix == null) {
      problems.push({ kind: 'unexpected', name: key, message: `${key}: not a LoRA tensor name (expected ${KEY_PREFIX}<module>.lora_A.weight, .lora_B.weight or .lora_magnitude_vector)` });
      continue;
    }
    const module = key.slice(KEY_PREFIX.length, key.length - suffix[0].length);
    const layer = byName.get(module);
    if (layer == null) {
      problems.push({ kind: 'unexpected', name: key, message: `${key}: ${module} is not a layer that ${CONFIG_FILE} target_modules selects in this model` });
      continue;
    }
    const part = suffix[1];
    if (part === 'lora_magnitude_vector' && policy.dora !== true) {
      problems.push({ kind: 'unexpected', name: key, message: `${key}: a DoRA magnitude, but ${CONFIG_FILE} has use_dora false` });
      continue;
    }
    const keys = plan.get(layer) ?? {};
    keys[part] = key;
    plan.set(layer, keys);
  }
  for (const [module, layer] of selected) {
    const keys = plan.get(layer) ?? {};
    const rank = patternValue(policy.rankPattern, module, policy.rank, 'rank_pattern');
    const expected: Record<Part, number[] | undefined> = {
      lora_A: [rank, layer.inFeatures],
      lora_B: [layer.outFeatures, rank],
      lora_magnitude_vector: policy.dora === true ? [layer.outFeatures] : undefined,
    };
    const suffixOf = { lora_A: '.lora_A.weight', lora_B: '.lora_B.weight', lora_magnitude_vector: '.lora_magnitude_vector' };
    for (const part of ['lora_A', 'lora_B', 'lora_magnitude_vector'] as const) {
      const want = expected[part];
      if (want == null) continue;
      const key = keys[part];
      if (key == null) {
        const name = KEY_PREFIX + module + suffixOf[part];
        problems.push({ kind: 'missing', name, message: `${name}: not in the adapter file (${CONFIG_FILE} targets ${module})` });
        continue;
      }
      const found = source.shape(key);
      if (found.length !== want.length || found.some((d, i) => d !== want[i])) {
        const why = part === 'lora_magnitude_vector' ? `out = ${layer.outFeatures}` : `r = ${rank} from ${CONFIG_FILE}, ${module} maps ${layer.inFeatures} -> ${layer.outFeatures}`;
        problems.push({ kind: 'shape', name: key, message: `${key}: expected shape [${want.join(', ')}] (${why}), found [${found.join(', ')}]` });
      }
    }
  }
  if (problems.length > 0) {
    const order = ['missing', 'unexpected', 'shape'];
    problems.sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind));
    const shown = problems.slice(0, 20).map((p) => `  - ${p.message}`);
    if (problems.length > 20) shown.push(`  ... and ${problems.length - 20} more (see .problems)`);
    throw new CheckpointError(`loadAdapter: ${WEIGHTS_FILE} does not fit ${CONFIG_FILE} and the model (${problems.length} problems):\n${shown.join('\n')}`, problems, {
      field: problems[0]!.name,
    });
  }
  return plan;
}

/**
 * Options of {@link saveAdapter} and {@link serializeAdapter}.
 *
 * @example
 * ```ts
 * import type { SaveAdapterOptions } from '@slmkit/adapters';
 * const options: SaveAdapterOptions = { name: 'french', baseModelNameOrPath: 'HuggingFaceTB/SmolLM-135M' };
 * ```
 */
export interface SaveAdapterOptions {
  /** Which adapter (default: the active one, or the only one). */
  name?: string;
  /** `base_model_name_or_path` in `adapter_config.json` (default `""`). */
  baseModelNameOrPath?: string;
}

/**
 * A PEFT adapter in memory: the `adapter_config.json` object and the bytes of `adapter_model.safetensors`.
 *
 * @example
 * ```ts
 * import type { SerializedAdapter } from '@slmkit/adapters';
 * function describe(a: SerializedAdapter): string {
 *   return `r ${a.config.r}, ${a.safetensors.byteLength} bytes`;
 * }
 * ```
 */
export interface SerializedAdapter {
  /** The `adapter_config.json` content. */
  config: Record<string, unknown>;
  /** The `adapter_model.safetensors` bytes. */
  safetensors: Uint8Array;
}

/** The most frequent value (the first of the most frequent, in order). */
function mostCommon(values: number[]): number {
  const counts = new Map<number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = values[0]!;
  for (const [v, n] of counts) if (n > counts.get(best)!) best = v;
  return best;
}

/**
 * An adapter as PEFT's `save_pretrained` writes it, in memory (for a browser, where there is no folder to
 * write): `adapter_config.json` with every field PEFT reads (`peft_type`, `r`, `lora_alpha`, `use_rslora`,
 * `use_dora`, `target_modules`, `rank_pattern`, `alpha_pattern`, `lora_dropout`, `bias`, `task_type`, ...), and
 * the tensors under PEFT's names in PEFT's layout (`lora_A` `[r, in]`, `lora_B` `[out, r]`,
 * `lora_magnitude_vector` `[out]`). Layers whose rank or alpha differ from the most common one go in
 * `rank_pattern` / `alpha_pattern` under their full names.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when there is no such adapter, or its layers disagree on
 *   rsLoRA, DoRA or dropout (one PEFT config holds one of each).
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { serializeAdapter } from '@slmkit/adapters';
 * declare const model: Module;
 * const { config, safetensors } = await serializeAdapter(model, { name: 'default' });
 * const blob = new Blob([new Uint8Array(safetensors)]); // offer it as a download in a page
 * console.log(config.r, blob.size);
 * ```
 */
export async function serializeAdapter(model: Module, options: SaveAdapterOptions = {}): Promise<SerializedAdapter> {
  const names = adapterNames(model);
  const name = options.name ?? activeAdapter(model) ?? (names.length === 1 ? names[0] : undefined);
  const layers = adaptedLayers(model)
    .map(([layerName, l]) => [layerName, name == null ? undefined : l.adapter(name)] as const)
    .filter((e): e is readonly [string, NonNullable<(typeof e)[1]>] => e[1] != null);
  if (layers.length === 0) {
    throw new ConfigError(`saveAdapter: no adapter named ${JSON.stringify(name)} on the model (adapters: ${names.join(', ') || 'none'})`, {
      field: 'name',
      expected: names,
      found: name,
    });
  }
  const uniform = <K extends 'rsLoRA' | 'dora' | 'dropout'>(key: K): (typeof layers)[number][1][K] => {
    const first = layers[0]![1][key];
    const other = layers.find(([, a]) => a[key] !== first);
    if (other != null) {
      throw new ConfigError(`saveAdapter: adapter "${name}" has ${key} ${String(first)} on ${layers[0]![0]} but ${String(other[1][key])} on ${other[0]}; one PEFT config holds one value`, {
        field: key,
        expected: first,
        found: other[1][key],
      });
    }
    return first;
  };
  const rsLoRA = uniform('rsLoRA');
  const dora = uniform('dora');
  const dropout = uniform('dropout');
  const r = mostCommon(layers.map(([, a]) => a.rank));
  const alpha = mostCommon(layers.map(([, a]) => a.alpha));
  const rankPattern = Object.fromEntries(layers.filter(([, a]) => a.rank !== r).map(([n, a]) => [n, a.rank]));
  const alphaPattern = Object.fromEntries(layers.filter(([, a]) => a.alpha !== alpha).map(([n, a]) => [n, a.alpha]));
  // target_modules: the layers' last names when they select exactly these layers, else their full names.
  const adapted = new Set(layers.map(([n]) => n));
  const suffixes = [...new Set(layers.map(([n]) => n.slice(n.lastIndexOf('.') + 1)))].sort();
  const bySuffix = [...linearLayers(model).values()].map((ns) => ns[0]!).filter((n) => suffixes.some((s) => n === s || n.endsWith(`.${s}`)));
  const exact = bySuffix.length === adapted.size && bySuffix.every((n) => adapted.has(n));
  const config: Record<string, unknown> = {
    alpha_pattern: alphaPattern,
    auto_mapping: null,
    base_model_name_or_path: options.baseModelNameOrPath ?? '',
    bias: 'none',
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: alpha,
    lora_bias: false,
    lora_dropout: dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r,
    rank_pattern: rankPattern,
    revision: null,
    target_modules: exact ? suffixes : [...adapted].sort(),
    task_type: 'CAUSAL_LM',
    use_dora: dora,
    use_rslora: rsLoRA,
  };
  const tensors: Record<string, tf.Tensor> = {};
  try {
    for (const [layerName, adapter] of layers) {
      const state = adapter.stateDict(); // PEFT's layout: lora_A [r, in], lora_B [out, r], lora_magnitude_vector [out]
      tensors[`${KEY_PREFIX}${layerName}.lora_A.weight`] = state.lora_A!;
      tensors[`${KEY_PREFIX}${layerName}.lora_B.weight`] = state.lora_B!;
      if (state.lora_magnitude_vector != null) tensors[`${KEY_PREFIX}${layerName}.lora_magnitude_vector`] = state.lora_magnitude_vector;
    }
    const safetensors = await serializeSafetensors(tensors, { metadata: { format: 'pt' } });
    return { config, safetensors };
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

/**
 * Saves an adapter in PEFT's format to a folder (created if needed): `adapter_config.json` and
 * `adapter_model.safetensors`, which PEFT's `PeftModel.from_pretrained(base, dir)` loads (see
 * {@link serializeAdapter} for what they hold). Node only; in a browser, use {@link serializeAdapter}.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} as {@link serializeAdapter} does.
 *
 * @example
 * ```ts
 * import type { Module } from '@slmkit/core';
 * import { saveAdapter } from '@slmkit/adapters';
 * declare const model: Module;
 * await saveAdapter(model, './out/my-adapter', { name: 'default' });
 * // Python: PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), './out/my-adapter')
 * ```
 */
export async function saveAdapter(model: Module, dir: string, options: SaveAdapterOptions = {}): Promise<void> {
  const { config, safetensors } = await serializeAdapter(model, options);
  const fs = await import('node:fs/promises');
  const { join } = await import('node:path');
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(join(dir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  await fs.writeFile(join(dir, WEIGHTS_FILE), safetensors);
}
