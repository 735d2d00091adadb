/**
 * Text to token ids and back, for checkpoints that ship a Hugging Face `tokenizer.json`. The tokenization itself
 * (BPE, WordPiece, Unigram, normalizers, pre-tokenizers, decoders) is `@huggingface/tokenizers`; this module finds
 * and reads the files (a Node folder or a URL), resolves the special tokens from `tokenizer_config.json`, and
 * offers a small, typed surface: {@link Tokenizer.encode}, {@link Tokenizer.decode} and an
 * {@link IncrementalDecoder} for streaming text.
 *
 * @module
 */
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { ConfigError } from '@slmkit/core';

const TOKENIZER_FILE = 'tokenizer.json';
const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

const isNode = typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

/**
 * One special token: its text and its id.
 *
 * @example
 * ```ts
 * import type { SpecialToken } from '@slmkit/models';
 * const eos: SpecialToken = { token: '</s>', id: 2 };
 * ```
 */
export interface SpecialToken {
  /** The token's text (`<s>`, `<|endoftext|>`). */
  token: string;
  /** Its id in the vocabulary. */
  id: number;
}

/**
 * The special tokens of a tokenizer. `bos`, `eos`, `pad` and `unk` come from `tokenizer_config.json` where it names
 * them; without it, `bos` is the special token the post-processor puts before the text (Llama's `<s>`), `eos` the
 * one it puts after, and `unk` the model's `unk_token`. Any of them may be null.
 *
 * @example
 * ```ts
 * import { tokenizerFromJSON, type SpecialTokens } from '@slmkit/models';
 * declare const tokenizerJson: Record<string, unknown>;
 * const special: SpecialTokens = tokenizerFromJSON(tokenizerJson).specialTokens;
 * console.log(special.eos?.id, special.all.map((t) => t.token));
 * ```
 */
export interface SpecialTokens {
  /** Beginning of sequence. */
  bos: SpecialToken | null;
  /** End of sequence (a model's config may name more stop tokens). */
  eos: SpecialToken | null;
  /** Padding. */
  pad: SpecialToken | null;
  /** Unknown token. */
  unk: SpecialToken | null;
  /** Every added token marked `special` in `tokenizer.json`, by id. */
  all: SpecialToken[];
}

/**
 * Options of {@link Tokenizer.encode}.
 *
 * @example
 * ```ts
 * import type { EncodeOptions } from '@slmkit/models';
 * const raw: EncodeOptions = { addSpecialTokens: false };
 * ```
 */
export interface EncodeOptions {
  /** Run the post-processor (which adds bos and the like, as `tokenizer(text)` does in Python). Default true. */
  addSpecialTokens?: boolean;
}

/**
 * Options of {@link Tokenizer.decode}.
 *
 * @example
 * ```ts
 * import type { DecodeOptions } from '@slmkit/models';
 * const forDisplay: DecodeOptions = { skipSpecialTokens: true };
 * ```
 */
export interface DecodeOptions {
  /** Leave out special tokens (bos, eos, chat markers). Default false. */
  skipSpecialTokens?: boolean;
  /**
   * Remove the space before punctuation and contractions (`"a ."` -> `"a."`), as `transformers` does. Default: the
   * `clean_up_tokenization_spaces` of `tokenizer_config.json`, true when it is absent.
   */
  cleanUpTokenizationSpaces?: boolean;
}

/**
 * Options of {@link loadTokenizer} and {@link hasTokenizer}.
 *
 * @example
 * ```ts
 * import { loadTokenizer, type LoadTokenizerOptions } from '@slmkit/models';
 * const options: LoadTokenizerOptions = {
 *   fetch: (input, init) => fetch(input, { ...init, headers: { Authorization: 'Bearer hf_...' } }),
 * };
 * const tokenizer = await loadTokenizer('https://huggingface.co/HuggingFaceTB/SmolLM-135M/resolve/main/', options);
 * ```
 */
export interface LoadTokenizerOptions {
  /** Replaces the global `fetch` for URL locations (to add headers, or in tests). */
  fetch?: typeof fetch;
}

/** A parsed JSON object, or a ConfigError naming the file. */
function parseObject(text: string, label: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${label} is not valid JSON: ${(e as Error).message}`, { field: label, expected: 'JSON', found: text.slice(0, 60) });
  }
  return asObject(json, label);
}

function asObject(json: unknown, label: string): Record<string, unknown> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    const found = json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json;
    throw new ConfigError(`${label} must hold a JSON object, found ${found}`, { field: label, expected: 'an object', found });
  }
  return json as Record<string, unknown>;
}

/** The text of a special-token entry: a string, or an AddedToken object `{ content }` (older configs). */
function tokenText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value != null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

/**
 * A Hugging Face tokenizer (`tokenizer.json`, plus `tokenizer_config.json` when there is one), wrapped: ids are
 * plain `number[]`, the special tokens are resolved once, and decoding skips ids the vocabulary does not have
 * (a model's embedding is often padded beyond the tokenizer's vocabulary), as the Rust `tokenizers` does.
 *
 * Make one with {@link loadTokenizer} (files) or {@link tokenizerFromJSON} (parsed JSON).
 *
 * @example
 * ```ts
 * import { loadTokenizer } from '@slmkit/models';
 * const tokenizer = await loadTokenizer('/models/smollm-135m');
 * if (tokenizer != null) {
 *   const ids = tokenizer.encode('Hello world');
 *   console.log(ids, tokenizer.decode(ids)); // [...] "Hello world"
 * }
 * ```
 */
export class Tokenizer {
  /** bos, eos, pad, unk and every special added token. */
  readonly specialTokens: SpecialTokens;
  /** Number of entries in the vocabulary, added tokens included (a model's `vocabSize` may be larger). */
  readonly vocabSize: number;
  private readonly inner: HFTokenizer;
  private readonly specialIds: ReadonlySet<number>;

  /**
   * @param tokenizerJson - the parsed `tokenizer.json`.
   * @param tokenizerConfig - the parsed `tokenizer_config.json`, or `{}`.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} if the JSON is not a tokenizer `@huggingface/tokenizers` can build, or
   *   `tokenizer_config.json` names a special token that is not in the vocabulary.
   */
  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown> = {}) {
    const json = asObject(tokenizerJson, TOKENIZER_FILE);
    const config = asObject(tokenizerConfig, TOKENIZER_CONFIG_FILE);
    const model = json.model;
    if (model == null || typeof model !== 'object' || Array.isArray(model)) {
      throw new ConfigError(`${TOKENIZER_FILE}: model must be an object (BPE, WordPiece or Unigram), found ${JSON.stringify(model) ?? 'nothing'}`, {
        field: 'model',
        expected: 'a tokenizer model object',
        found: model,
      });
    }
    if (json.added_tokens != null && !Array.isArray(json.added_tokens)) {
      throw new ConfigError(`${TOKENIZER_FILE}: added_tokens must be a list`, { field: 'added_tokens', expected: 'a list', found: json.added_tokens });
    }
    // The library requires every pipeline key to be present; `tokenizer.json` files write absent stages as null.
    const filled: Record<string, unknown> = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json, added_tokens: json.added_tokens ?? [] };
    try {
      this.inner = new HFTokenizer(filled, config);
    } catch (e) {
      throw new ConfigError(`${TOKENIZER_FILE}: @huggingface/tokenizers cannot build this tokenizer: ${(e as Error).message}`, {
        field: TOKENIZER_FILE,
        expected: 'a tokenizer.json that @huggingface/tokenizers supports',
        found: (e as Error).message,
      });
    }
    this.vocabSize = this.inner.get_vocab(true).size;

    const all: SpecialToken[] = [];
    for (const [id, added] of this.inner.get_added_tokens_decoder()) if (added.special) all.push({ token: added.content, id });
    all.sort((a, b) => a.id - b.id);
    this.specialIds = new Set(all.map((t) => t.id));

    const named = (key: 'bos' | 'eos' | 'pad' | 'unk'): SpecialToken | null => {
      const field = `${key}_token`;
      const text = tokenText(config[field]);
      if (text == null) return null;
      const id = this.inner.token_to_id(text);
      if (id === undefined) {
        throw new ConfigError(`${TOKENIZER_CONFIG_FILE}: ${field} "${text}" is not in the vocabulary of ${TOKENIZER_FILE}`, {
          field,
          expected: `a token of ${TOKENIZER_FILE}`,
          found: text,
        });
      }
      return { token: text, id };
    };
    const byText = (text: unknown): SpecialToken | null => {
      if (typeof text !== 'string') return null;
      const id = this.inner.token_to_id(text);
      return id === undefined ? null : { token: text, id };
    };
    const [before, after] = templateSpecials(json.post_processor);
    this.specialTokens = {
      bos: named('bos') ?? byText(before),
      eos: named('eos') ?? byText(after),
      pad: named('pad'),
      unk: named('unk') ?? byText((model as Record<string, unknown>).unk_token),
      all,
    };
  }

  /** The bos id, or null. */
  get bosTokenId(): number | null {
    return this.specialTokens.bos?.id ?? null;
  }

  /** The eos id, or null. */
  get eosTokenId(): number | null {
    return this.specialTokens.eos?.id ?? null;
  }

  /** The padding id, or null. */
  get padTokenId(): number | null {
    return this.specialTokens.pad?.id ?? null;
  }

  /**
   * Token ids of `text`, with the post-processor's special tokens (bos) unless `addSpecialTokens` is false.
   *
   * @example
   * ```ts
   * import type { Tokenizer } from '@slmkit/models';
   * declare const tokenizer: Tokenizer;
   * const prompt = tokenizer.encode('Once upon a time');
   * const continuation = tokenizer.encode(' there was', { addSpecialTokens: false });
   * ```
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new ConfigError(`Tokenizer.encode: text must be a string, found ${typeof text}`, { field: 'text', expected: 'a string', found: text });
    }
    return this.inner.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /**
   * The text of `ids`. Ids the vocabulary does not have are skipped; an empty list gives `''`.
   *
   * @throws {@link @slmkit/core!ConfigError | ConfigError} if an id is not an integer.
   *
   * @example
   * ```ts
   * import type { Tokenizer } from '@slmkit/models';
   * declare const tokenizer: Tokenizer;
   * console.log(tokenizer.decode([1, 15043, 3186, 2], { skipSpecialTokens: true }));
   * ```
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const known: number[] = [];
    for (const id of ids) {
      if (!Number.isInteger(id)) {
        throw new ConfigError(`Tokenizer.decode: ids must be integers, found ${String(id)}`, { field: 'ids', expected: 'integers', found: id });
      }
      if (this.inner.id_to_token(id) !== undefined) known.push(id);
    }
    if (known.length === 0) return '';
    const decodeOptions: { skip_special_tokens: boolean; clean_up_tokenization_spaces?: boolean } = {
      skip_special_tokens: options.skipSpecialTokens ?? false,
    };
    if (options.cleanUpTokenizationSpaces !== undefined) decodeOptions.clean_up_tokenization_spaces = options.cleanUpTokenizationSpaces;
    return this.inner.decode(known, decodeOptions);
  }

  /**
   * The token strings of `text` (no special tokens added), as the model sees them (`['Hello', 'Ġworld']`).
   *
   * @example
   * ```ts
   * import type { Tokenizer } from '@slmkit/models';
   * declare const tokenizer: Tokenizer;
   * console.log(tokenizer.tokenize('Hello world'));
   * ```
   */
  tokenize(text: string): string[] {
    return this.inner.tokenize(text);
  }

  /**
   * The id of one token string, or null when the vocabulary has no such token.
   *
   * @example
   * ```ts
   * import type { Tokenizer } from '@slmkit/models';
   * declare const tokenizer: Tokenizer;
   * const imEnd = tokenizer.tokenToId('<|im_end|>'); // a chat model's end-of-turn stop token
   * ```
   */
  tokenToId(token: string): number | null {
    return this.inner.token_to_id(token) ?? null;
  }

  /**
   * The token string of one id, or null when the vocabulary has no such id.
   *
   * @example
   * ```ts
   * import type { Tokenizer } from '@slmkit/models';
   * declare const tokenizer: Tokenizer;
   * console.log(tokenizer.idToToken(0));
   * ```
   */
  idToToken(id: number): string | null {
    return this.inner.id_to_token(id) ?? null;
  }

  /**
   * Whether `id` is a special added token (bos, eos, chat markers...).
   *
   * @example
   * ```ts
   * import type { Tokenizer } from '@slmkit/models';
   * declare const tokenizer: Tokenizer;
   * const visible = [5, 6, 2].filter((id) => !tokenizer.isSpecial(id));
   * ```
   */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
}

/** The special tokens a TemplateProcessing post-processor puts before and after the text (`$A`), if any. */
function templateSpecials(postProcessor: unknown): [string | undefined, string | undefined] {
  const pp = postProcessor as { type?: unknown; single?: unknown; processors?: unknown } | null;
  if (pp == null || typeof pp !== 'object') return [undefined, undefined];
  if (pp.type === 'Sequence' && Array.isArray(pp.processors)) {
    for (const inner of pp.processors) {
      const found = templateSpecials(inner);
      if (found[0] !== undefined || found[1] !== undefined) return found;
    }
    return [undefined, undefined];
  }
  if (pp.type !== 'TemplateProcessing' || !Array.isArray(pp.single)) return [undefined, undefined];
  let before: string | undefined;
  let after: string | undefined;
  let seenSequence = false;
  for (const piece of pp.single as Array<Record<string, { id?: unknown }>>) {
    if (piece?.Sequence != null) seenSequence = true;
    const special = piece?.SpecialToken?.id;
    if (typeof special !== 'string') continue;
    if (!seenSequence) before ??= special;
    else after = special;
  }
  return [before, after];
}

/**
 * Builds a {@link Tokenizer} from a parsed (or string) `tokenizer.json` and, optionally, `tokenizer_config.json`.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for JSON that is not a supported tokenizer.
 *
 * @example
 * ```ts
 * import { readFileSync } from 'node:fs';
 * import { tokenizerFromJSON } from '@slmkit/models';
 * const tokenizer = tokenizerFromJSON(readFileSync('/models/phi-2/tokenizer.json', 'utf8'));
 * console.log(tokenizer.encode('def f(x):'));
 * ```
 */
export function tokenizerFromJSON(
  tokenizerJson: string | Record<string, unknown>,
  tokenizerConfig: string | Record<string, unknown> = {},
): Tokenizer {
  const json = typeof tokenizerJson === 'string' ? parseObject(tokenizerJson, TOKENIZER_FILE) : tokenizerJson;
  const config = typeof tokenizerConfig === 'string' ? parseObject(tokenizerConfig, TOKENIZER_CONFIG_FILE) : tokenizerConfig;
  return new Tokenizer(json, config);
}

/** Where the two files are: Node paths or URLs. */
type Files = { kind: 'path'; tokenizer: string; config: string } | { kind: 'url'; tokenizer: URL; config: URL };

const isUrlLike = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s);

async function locate(location: string | URL): Promise<Files> {
  let url: URL | undefined;
  if (location instanceof URL) url = location;
  else if (typeof location === 'string' && isUrlLike(location)) url = new URL(location);
  else if (typeof location !== 'string') {
    throw new ConfigError(`loadTokenizer: location must be a path or a URL, found ${typeof location}`, {
      field: 'location',
      expected: 'a folder path, a tokenizer.json path, or a URL',
      found: location,
    });
  }
  if (url?.protocol === 'file:' && isNode) {
    const { fileURLToPath } = await import('node:url');
    location = fileURLToPath(url);
    url = undefined;
  }
  if (url != null) {
    const folder = url.pathname.endsWith('.json') ? new URL('.', url) : new URL(url.pathname.endsWith('/') ? url.href : `${url.href}/`);
    const tokenizer = url.pathname.endsWith('.json') ? url : new URL(TOKENIZER_FILE, folder);
    return { kind: 'url', tokenizer, config: new URL(TOKENIZER_CONFIG_FILE, folder) };
  }
  if (!isNode) {
    throw new ConfigError(`loadTokenizer: a file path (${String(location)}) needs Node; pass a URL in the browser`, {
      field: 'location',
      expected: 'a URL outside Node',
      found: location,
    });
  }
  const path = location as string;
  const { join, dirname } = await import('node:path');
  const { stat } = await import('node:fs/promises');
  const isDir = (await stat(path).catch(() => undefined))?.isDirectory() === true;
  const folder = isDir ? path : /\.json$/i.test(path) ? dirname(path) : path;
  const tokenizer = isDir || !/\.json$/i.test(path) ? join(folder, TOKENIZER_FILE) : path;
  return { kind: 'path', tokenizer, config: join(folder, TOKENIZER_CONFIG_FILE) };
}

/** The text of a file, or null when it does not exist (404 for URLs). Other failures throw. */
async function readOptional(files: Files, which: 'tokenizer' | 'config', fetchFn: typeof fetch | undefined): Promise<string | null> {
  if (files.kind === 'path') {
    const { readFile } = await import('node:fs/promises');
    const path = files[which];
    try {
      return await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`, { field: path, expected: 'a readable file', found: (e as Error).message });
    }
  }
  const url = files[which];
  let response: Response;
  try {
    response = await (fetchFn ?? fetch)(url);
  } catch (e) {
    throw new ConfigError(`cannot fetch ${url.href}: ${(e as Error).message}`, { field: url.href, expected: 'a reachable URL', found: (e as Error).message });
  }
  if (response.status === 404) return null;
  if (!response.ok) {
    throw new ConfigError(`cannot fetch ${url.href}: HTTP ${response.status}`, { field: url.href, expected: 'HTTP 200 or 404', found: response.status });
  }
  return response.text();
}

/**
 * Loads the tokenizer of a checkpoint: `tokenizer.json` (and `tokenizer_config.json` beside it, when present) from
 * a Node folder, the path of the `tokenizer.json` itself, or a URL (a folder URL, `file:` included). Returns null
 * when there is no `tokenizer.json` (no file, or HTTP 404), so a loader can call it on any checkpoint folder.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when a file exists but cannot be read or fetched, is not valid JSON, or is not a
 *   tokenizer `@huggingface/tokenizers` supports; the message names the file.
 *
 * @example
 * ```ts
 * import { loadTokenizer } from '@slmkit/models';
 * const tokenizer = await loadTokenizer('/models/tinyllama');
 * if (tokenizer == null) console.log('no tokenizer.json: generate from token ids');
 * else console.log(tokenizer.bosTokenId, tokenizer.eosTokenId); // 1 2
 * ```
 */
export async function loadTokenizer(location: string | URL, options: LoadTokenizerOptions = {}): Promise<Tokenizer | null> {
  const files = await locate(location);
  const text = await readOptional(files, 'tokenizer', options.fetch);
  if (text == null) return null;
  const label = String(files.tokenizer);
  const json = parseObject(text, label);
  const configText = await readOptional(files, 'config', options.fetch);
  const config = configText == null ? {} : parseObject(configText, String(files.config));
  return new Tokenizer(json, config);
}

/**
 * Whether a checkpoint location has a `tokenizer.json` (a file check in Node, a `HEAD` request for URLs), without
 * reading it.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when a URL answers neither 2xx nor 404, or cannot be reached.
 *
 * @example
 * ```ts
 * import { hasTokenizer, loadTokenizer } from '@slmkit/models';
 * const dir = '/models/smollm-135m';
 * const tokenizer = (await hasTokenizer(dir)) ? await loadTokenizer(dir) : null;
 * ```
 */
export async function hasTokenizer(location: string | URL, options: LoadTokenizerOptions = {}): Promise<boolean> {
  const files = await locate(location);
  if (files.kind === 'path') {
    const { stat } = await import('node:fs/promises');
    return (await stat(files.tokenizer).catch(() => undefined))?.isFile() === true;
  }
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(files.tokenizer, { method: 'HEAD' });
  } catch (e) {
    throw new ConfigError(`cannot fetch ${files.tokenizer.href}: ${(e as Error).message}`, {
      field: files.tokenizer.href,
      expected: 'a reachable URL',
      found: (e as Error).message,
    });
  }
  if (response.status === 404) return false;
  if (!response.ok) {
    throw new ConfigError(`cannot fetch ${files.tokenizer.href}: HTTP ${response.status}`, {
      field: files.tokenizer.href,
      expected: 'HTTP 200 or 404',
      found: response.status,
    });
  }
  return true;
}

/**
 * Turns a stream of token ids into a stream of text, one chunk per id, for printing a generation as it happens.
 * A byte-level token can hold half a UTF-8 character, and some decoders change a token's text depending on its
 * neighbours; so each push decodes a short window ending at the new id and returns only text that is complete
 * (not ending in U+FFFD), holding the rest back until a later id completes it. This is the window scheme of
 * Hugging Face's text-generation-inference.
 *
 * Joined, the chunks equal `tokenizer.decode(allIds, options)` (clean-up of spaces before punctuation is judged
 * per window, so with `cleanUpTokenizationSpaces` a space that ends one chunk may stay).
 *
 * @example
 * ```ts
 * import { IncrementalDecoder, type Tokenizer } from '@slmkit/models';
 * declare const tokenizer: Tokenizer;
 * declare const ids: number[];
 * const decoder = new IncrementalDecoder(tokenizer, { skipSpecialTokens: true });
 * for (const id of ids) process.stdout.write(decoder.push(id));
 * process.stdout.write(decoder.flush());
 * ```
 */
export class IncrementalDecoder {
  private readonly ids: number[] = [];
  private prefixOffset = 0; // start of the context window
  private readOffset = 0; // ids before this have been emitted

  constructor(
    readonly tokenizer: Tokenizer,
    readonly options: DecodeOptions = {},
  ) {}

  /** Adds one id; returns the text it completed (possibly `''`). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), this.options);
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset), this.options);
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return full.slice(prefix.length);
    }
    return '';
  }

  /** The text still held back (an incomplete character at the very end), once no more ids will come. */
  flush(): string {
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), this.options);
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset), this.options);
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}
