/**
 * Opening a Hugging Face checkpoint folder: one `model.safetensors`, or shards listed by
 * `model.safetensors.index.json`, on disk (Node) or over HTTP (browser), as one {@link WeightSource}.
 *
 * @module
 */
import type * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ConfigError, type CheckpointProblem } from '../errors.js';
import type { WeightSource } from '../module.js';
import { SafetensorsFile, type SafetensorsDtype } from './safetensors.js';

/** The file name of a single-file checkpoint. */
const SINGLE_FILE = 'model.safetensors';
/** The file name of the index of a sharded checkpoint. */
const INDEX_FILE = 'model.safetensors.index.json';
/** The file name of the model configuration. */
const CONFIG_FILE = 'config.json';

const isNode = typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

/**
 * Options of {@link openCheckpoint} and {@link readConfigJson}.
 *
 * @example
 * ```ts
 * import { openCheckpoint, type OpenCheckpointOptions } from '@slmkit/core';
 * const options: OpenCheckpointOptions = {
 *   fetch: (input, init) => fetch(input, { ...init, headers: { Authorization: 'Bearer hf_...' } }),
 * };
 * const ckpt = await openCheckpoint('https://example.com/models/tiny/', options);
 * ```
 */
export interface OpenCheckpointOptions {
  /** Replaces the global `fetch` for URL locations (to add headers, or in tests). */
  fetch?: typeof fetch;
}

/** Every tensor name of each file, and the problems of names stored in two files. */
function indexTensors(files: readonly SafetensorsFile[]): { byName: Map<string, SafetensorsFile>; problems: CheckpointProblem[] } {
  const byName = new Map<string, SafetensorsFile>();
  const problems: CheckpointProblem[] = [];
  for (const file of files) {
    for (const name of file.names()) {
      const first = byName.get(name);
      if (first != null) {
        const message = `tensor "${name}" is stored in two files: ${first.label} and ${file.label}`;
        problems.push({ kind: 'format', name, message });
      } else {
        byName.set(name, file);
      }
    }
  }
  return { byName, problems };
}

/** One CheckpointError listing `problems` (at most 20 in the message). */
function checkpointError(what: string, problems: CheckpointProblem[]): CheckpointError {
  const first = problems[0]!;
  if (problems.length === 1) return new CheckpointError(`${what}: ${first.message}`, problems, { field: first.name });
  const shown = problems.slice(0, 20).map((p) => `  - ${p.message}`);
  if (problems.length > 20) shown.push(`  ... and ${problems.length - 20} more (see .problems)`);
  return new CheckpointError(`${what}: ${problems.length} problems:\n${shown.join('\n')}`, problems, { field: first.name });
}

/**
 * One or more open safetensors files seen as a single {@link WeightSource}: every tensor name of every file,
 * each stored in exactly one file. {@link openCheckpoint} makes one from a folder, an index or a file.
 *
 * @example
 * ```ts
 * import { Checkpoint, SafetensorsFile } from '@slmkit/core';
 * const ckpt = new Checkpoint([
 *   await SafetensorsFile.fromFile('model-00001-of-00002.safetensors'),
 *   await SafetensorsFile.fromFile('model-00002-of-00002.safetensors'),
 * ]);
 * console.log(ckpt.names().length);
 * await ckpt.close();
 * ```
 */
export class Checkpoint implements WeightSource {
  /** The open files, in the order given. */
  readonly files: readonly SafetensorsFile[];
  private readonly byName: Map<string, SafetensorsFile>;

  /**
   * Combines open files (it takes them over: {@link Checkpoint.close} closes them).
   *
   * @throws {@link CheckpointError} (kind `format`) listing every tensor name stored in two files.
   */
  constructor(files: readonly SafetensorsFile[]) {
    const { byName, problems } = indexTensors(files);
    if (problems.length > 0) throw checkpointError('invalid checkpoint', problems);
    this.files = files.slice();
    this.byName = byName;
  }

  /** Every tensor name, file by file, in data order within each file. */
  names(): string[] {
    return [...this.byName.keys()];
  }

  /** Whether some file holds a tensor of this name. */
  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The shape of a tensor, without reading its data. */
  shape(name: string): number[] {
    return this.fileOf(name).shape(name);
  }

  /** The dtype a tensor is stored in (read as float32 or int32; see {@link SafetensorsDtype}). */
  dtype(name: string): SafetensorsDtype {
    return this.fileOf(name).dtype(name);
  }

  /** Reads one tensor from the file that stores it; the caller owns (and disposes) the result. */
  read(name: string): Promise<tf.Tensor> {
    return this.fileOf(name).read(name);
  }

  /** Closes every file. Safe to call twice. */
  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }

  private fileOf(name: string): SafetensorsFile {
    const file = this.byName.get(name);
    if (file == null) {
      const message = `tensor "${name}" is not in the checkpoint (${this.files.map((f) => f.label).join(', ')})`;
      throw new CheckpointError(message, [{ kind: 'missing', name, message }], {
        field: name,
        expected: 'a tensor name of the checkpoint',
        found: name,
      });
    }
    return file;
  }
}

/**
 * Reads `weight_map` (tensor name -> shard file name) from the text of a `model.safetensors.index.json`.
 * Shard names must be plain file names in the same folder.
 */
function parseIndex(text: string, label: string): Map<string, string> {
  const fail = (name: string, message: string, expected: unknown, found: unknown): never => {
    throw new CheckpointError(`invalid checkpoint index ${label}: ${message}`, [{ kind: 'format', name, message }], {
      field: name,
      expected,
      found,
    });
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail('index', `not valid JSON (${(e as Error).message})`, 'JSON', text.slice(0, 60));
  }
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    return fail('weight_map', `"weight_map" must be an object mapping tensor names to shard files, found ${JSON.stringify(weightMap) ?? 'nothing'}`, 'an object', weightMap);
  }
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard === '' || shard === '.' || shard === '..' || /[/\\]/.test(shard)) {
      fail(name, `weight_map["${name}"] must be a file name in the checkpoint folder, found ${JSON.stringify(shard)}`, 'a file name', shard);
    }
    out.set(name, shard as string);
  }
  return out;
}

/**
 * Opens every shard an index lists (each once) and checks the index against them: every tensor it lists is in
 * its shard, and no tensor is in two shards. Tensors a shard holds beyond the index are kept.
 */
async function openSharded(
  indexText: string,
  indexLabel: string,
  openShard: (file: string) => Promise<SafetensorsFile>,
): Promise<Checkpoint> {
  const weightMap = parseIndex(indexText, indexLabel);
  const shards = new Map<string, SafetensorsFile>();
  try {
    for (const shard of new Set(weightMap.values())) {
      try {
        shards.set(shard, await openShard(shard));
      } catch (e) {
        if (!(e instanceof CheckpointError) || !e.problems.every((p) => p.kind === 'missing')) throw e;
        const message = `shard file "${shard}" listed in ${indexLabel} cannot be opened (${e.message})`;
        throw new CheckpointError(message, [{ kind: 'missing', name: shard, message }], {
          field: 'weight_map',
          expected: `a file ${shard}`,
          found: 'nothing',
        });
      }
    }
    const problems: CheckpointProblem[] = [];
    for (const [name, shard] of weightMap) {
      if (!shards.get(shard)!.has(name)) {
        const message = `tensor "${name}" is listed in the index under "${shard}" but that file does not hold it`;
        problems.push({ kind: 'missing', name, message });
      }
    }
    problems.push(...indexTensors([...shards.values()]).problems);
    if (problems.length > 0) throw checkpointError(`invalid sharded checkpoint ${indexLabel}`, problems);
    return new Checkpoint([...shards.values()]);
  } catch (e) {
    await Promise.all([...shards.values()].map((f) => f.close()));
    throw e;
  }
}

/** Whether a string names a URL rather than a local path (any string does in a browser). */
function isUrlLocation(location: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(location) || !isNode;
}

/** A URL location, resolved against the page in a browser; `file:` URLs become paths in Node. */
async function resolveLocation(location: string | URL): Promise<{ url: URL } | { path: string }> {
  if (typeof location === 'string' && !isUrlLocation(location)) return { path: location };
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  const url = new URL(location, base);
  if (url.protocol === 'file:' && isNode) {
    const { fileURLToPath } = await import('node:url');
    return { path: fileURLToPath(url) };
  }
  return { url };
}

/** `fetch`, with network failures and non-OK answers (except 404 when `allow404`) as CheckpointErrors. */
async function fetchChecked(url: URL, fetchFn: typeof fetch, allow404 = false): Promise<Response> {
  let response: Response;
  try {
    response = await fetchFn(url);
  } catch (e) {
    const message = `cannot fetch ${url.href}: ${(e as Error).message}`;
    throw new CheckpointError(message, [{ kind: 'missing', name: url.href, message }], { field: 'url', found: url.href });
  }
  if (!response.ok && !(allow404 && response.status === 404)) {
    const message = `cannot fetch ${url.href}: HTTP ${response.status}`;
    throw new CheckpointError(message, [{ kind: 'missing', name: url.href, message }], {
      field: 'url',
      expected: 'HTTP 200',
      found: response.status,
    });
  }
  return response;
}

/** The folder URL a location names: itself with a trailing `/`, or the folder of a file URL. */
function folderUrl(url: URL): URL {
  if (/\.(safetensors|json)$/i.test(url.pathname)) return new URL('.', url);
  const folder = new URL(url.href);
  if (!folder.pathname.endsWith('/')) folder.pathname += '/';
  return folder;
}

async function openRemote(url: URL, fetchFn: typeof fetch): Promise<Checkpoint> {
  const open = async (file: URL) => SafetensorsFile.fromResponse(await fetchChecked(file, fetchFn), { name: file.href });
  const openIndex = async (indexUrl: URL, response: Response) =>
    openSharded(await response.text(), indexUrl.href, (shard) => open(new URL(shard, indexUrl)));
  if (/\.safetensors$/i.test(url.pathname)) return new Checkpoint([await open(url)]);
  if (/\.json$/i.test(url.pathname)) return openIndex(url, await fetchChecked(url, fetchFn));
  const folder = folderUrl(url);
  const indexUrl = new URL(INDEX_FILE, folder);
  const response = await fetchChecked(indexUrl, fetchFn, true);
  if (response.status === 404) return new Checkpoint([await open(new URL(SINGLE_FILE, folder))]);
  return openIndex(indexUrl, response);
}

async function openLocal(location: string): Promise<Checkpoint> {
  const fs = await import('node:fs/promises');
  const { join, dirname } = await import('node:path');
  const isFile = async (p: string) => (await fs.stat(p).catch(() => undefined))?.isFile() === true;
  const stat = await fs.stat(location).catch(() => undefined);
  if (stat == null) {
    const message = `no checkpoint at ${location}: no such file or folder`;
    throw new CheckpointError(message, [{ kind: 'missing', name: location, message }], {
      field: 'location',
      expected: 'a folder, a .safetensors file or an index',
      found: location,
    });
  }
  const openIndex = async (indexPath: string) =>
    openSharded(await fs.readFile(indexPath, 'utf8'), indexPath, (shard) => SafetensorsFile.fromFile(join(dirname(indexPath), shard)));
  if (!stat.isDirectory()) {
    if (/\.json$/i.test(location)) return openIndex(location);
    return new Checkpoint([await SafetensorsFile.fromFile(location)]);
  }
  if (await isFile(join(location, INDEX_FILE))) return openIndex(join(location, INDEX_FILE));
  if (await isFile(join(location, SINGLE_FILE))) return new Checkpoint([await SafetensorsFile.fromFile(join(location, SINGLE_FILE))]);
  const present = (await fs.readdir(location)).filter((f) => f.endsWith('.safetensors'));
  const hint = present.length > 0 ? `; it has ${present.join(', ')} (open one by its path)` : '';
  const message = `folder ${location} has neither ${INDEX_FILE} nor ${SINGLE_FILE}${hint}`;
  throw new CheckpointError(message, [{ kind: 'missing', name: SINGLE_FILE, message }], {
    field: 'location',
    expected: `${INDEX_FILE} or ${SINGLE_FILE}`,
    found: present,
  });
}

/**
 * Opens a checkpoint as one {@link WeightSource}. `location` is, in Node, a folder (its
 * `model.safetensors.index.json`, else its `model.safetensors`), a `.safetensors` file or an index file; or an
 * http(s) URL of any of these (the only kind in a browser, where relative URLs resolve against the page). A
 * folder URL tries the index first and falls back to `model.safetensors` on 404.
 *
 * Files on disk are read lazily (only headers at open time); files over HTTP are downloaded whole. Every header is
 * validated at open time, and a sharded checkpoint is checked against its index. Close it when done.
 *
 * @throws {@link CheckpointError} for a missing file or shard, a malformed file or index, a tensor listed in the
 * index but absent from its shard, or a tensor stored in two shards.
 * @example
 * ```ts
 * import { openCheckpoint } from '@slmkit/core';
 * const ckpt = await openCheckpoint('/models/qwen2-0.5b'); // a folder with config.json and safetensors
 * try {
 *   console.log(ckpt.names().length, ckpt.shape('model.embed_tokens.weight')); // [vocab, hidden]
 * } finally {
 *   await ckpt.close();
 * }
 * ```
 */
export async function openCheckpoint(location: string | URL, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
  const resolved = await resolveLocation(location);
  if ('path' in resolved) return openLocal(resolved.path);
  return openRemote(resolved.url, options.fetch ?? fetch);
}

/**
 * Reads the `config.json` next to a checkpoint: `location` is what {@link openCheckpoint} takes (a folder, a
 * file in it, or a URL), or the path or URL of the JSON file itself.
 *
 * @throws {@link ConfigError} if the file is missing, is not valid JSON, or is not a JSON object.
 * @example
 * ```ts
 * import { readConfigJson } from '@slmkit/core';
 * const config = await readConfigJson('/models/qwen2-0.5b');
 * console.log(config.model_type, config.hidden_size); // "qwen2" 896
 * ```
 */
export async function readConfigJson(location: string | URL, options: OpenCheckpointOptions = {}): Promise<Record<string, unknown>> {
  const resolved = await resolveLocation(location);
  let label: string;
  let text: string | undefined;
  if ('path' in resolved) {
    const fs = await import('node:fs/promises');
    const { join, dirname } = await import('node:path');
    const stat = await fs.stat(resolved.path).catch(() => undefined);
    label = resolved.path;
    if (stat?.isDirectory() === true) label = join(resolved.path, CONFIG_FILE);
    else if (/\.safetensors$|\.index\.json$/i.test(resolved.path)) label = join(dirname(resolved.path), CONFIG_FILE);
    text = await fs.readFile(label, 'utf8').catch(() => undefined);
  } else {
    const url = /\.json$/i.test(resolved.url.pathname) && !/\.index\.json$/i.test(resolved.url.pathname)
      ? resolved.url
      : new URL(CONFIG_FILE, folderUrl(resolved.url));
    label = url.href;
    const response = await (options.fetch ?? fetch)(url).catch(() => undefined);
    if (response?.ok === true) text = await response.text();
  }
  if (text == null) {
    throw new ConfigError(`cannot read ${label}: no such file (or it could not be fetched)`, {
      field: CONFIG_FILE,
      expected: 'a readable config.json',
      found: label,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${label} is not valid JSON: ${(e as Error).message}`, { field: CONFIG_FILE, expected: 'JSON', found: text.slice(0, 60) });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    const found = json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json;
    throw new ConfigError(`${label} must hold a JSON object, found ${found}`, { field: CONFIG_FILE, expected: 'an object', found });
  }
  return json as Record<string, unknown>;
}
