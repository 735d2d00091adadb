/**
 * Generation with a {@link CausalLM}: a prefill through a fresh cache, then one token at a time, choosing each
 * token with the sampler of `generation/sampling.ts` (greedy by default), stopping rows at their stop tokens, and
 * streaming each step to a callback or an async iterator.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '@slmkit/core';
import type { CausalLM } from './causal-lm.js';
import { createRng, createSampler, isGreedy, stopTokenSet, streamFromCallbacks, validateSamplingOptions, type SamplingOptions } from './generation/sampling.js';
import { speculativeDecode, type SpeculativeLM, type SpeculativeStats } from './generation/speculative.js';

/**
 * Turns text into ids and back: what {@link CausalLM.generate} needs to accept a string prompt. Any tokenizer with
 * these two methods fits.
 *
 * @example
 * ```ts
 * import type { PromptTokenizer } from '@slmkit/models';
 * // A toy byte-level tokenizer.
 * const bytes: PromptTokenizer = {
 *   encode: (text) => Array.from(new TextEncoder().encode(text)),
 *   decode: (ids) => new TextDecoder().decode(new Uint8Array(ids)),
 * };
 * ```
 */
export interface PromptTokenizer {
  /** The ids of `text` (with whatever special tokens the model expects at the start). */
  encode(text: string): number[];
  /** The text of `ids`. */
  decode(ids: number[]): string;
}

/**
 * What {@link CausalLM.generate} accepts: ids `[B, T]` as an int32 tensor or nested arrays, or (when the model has
 * a {@link PromptTokenizer}) a prompt or a list of prompts.
 *
 * @example
 * ```ts
 * import type { GenerateInput } from '@slmkit/models';
 * const ids: GenerateInput = [[1, 15043, 29892]];
 * const prompts: GenerateInput = ['Once upon a time', 'The capital of France is'];
 * ```
 */
export type GenerateInput = tf.Tensor2D | number[][] | string | string[];

/**
 * One step of a generation, as {@link GenerateOptions.onToken} and {@link CausalLM.stream} report it.
 *
 * @example
 * ```ts
 * import type { GenerateStep } from '@slmkit/models';
 * const step: GenerateStep = { step: 0, tokens: [42, null] }; // row 1 had already stopped
 * ```
 */
export interface GenerateStep {
  /** 0 for the first new token. */
  step: number;
  /** The new token of each row, or null for a row that stopped at an earlier step. */
  tokens: (number | null)[];
}

/**
 * Options of {@link CausalLM.generate}: how many tokens, how to choose them (the `SamplingOptions`: greedy when
 * none of temperature, topK and topP is given), when to stop, and where to stream them.
 *
 * @example
 * ```ts
 * import type { GenerateOptions } from '@slmkit/models';
 * const options: GenerateOptions = {
 *   maxNewTokens: 64, temperature: 0.7, topP: 0.9, repetitionPenalty: 1.1, seed: 42, stopTokens: [2],
 *   onToken: ({ tokens }) => { console.log(tokens[0]); },
 * };
 * ```
 */
export interface GenerateOptions extends SamplingOptions {
  /** The most tokens to add to each row (a positive integer). */
  maxNewTokens: number;
  /**
   * A row stops after producing one of these (it is kept as that row's last token). Default: the config's
   * `eosTokenId`; `[]` never stops early.
   */
  stopTokens?: readonly number[];
  /** Called after each step with every row's new token; returning `false` stops the generation there. */
  onToken?: (step: GenerateStep) => void | boolean;
  /**
   * For id input: `[B][T]` of 1 (real token) and 0 (left padding), so rows of different lengths can share a batch.
   * Rotary positions then count real tokens only, as Hugging Face's `generate` does.
   */
  attentionMask?: number[][];
  /** Also return the raw logits of every step (before any processor) in {@link GenerateOutput.stepLogits}. */
  returnLogits?: boolean;
  /**
   * A draft model for speculative decoding (Leviathan et al. 2023): it proposes `numDraftTokens` tokens, this model
   * checks them in one forward and keeps the prefix it agrees with. The output is the same as without a draft
   * (greedy: identical tokens; sampling: the same distribution, not the same draws); only the speed changes, with
   * how often the draft is right ({@link GenerateOutput.speculative}). Any model with the same vocabulary size
   * fits, of any family (a Mamba draft for a transformer, a transformer draft for a hybrid). One row only: caches
   * hold one length for the whole batch, so rows that accept different numbers of drafts cannot share one.
   */
  draft?: SpeculativeLM;
  /** Tokens the draft proposes per target forward (a positive integer; default 4). Only with `draft`. */
  numDraftTokens?: number;
}

/**
 * What {@link CausalLM.generate} returns.
 *
 * @example
 * ```ts
 * import type { GenerateOutput } from '@slmkit/models';
 * function show(out: GenerateOutput): void {
 *   out.tokens.forEach((row, b) => console.log(`row ${b}: ${row.join(' ')} (${out.finishReasons[b]})`));
 * }
 * ```
 */
export interface GenerateOutput {
  /** The new tokens of each row (a row that stopped early is shorter). */
  tokens: number[][];
  /** Each row's prompt (padding removed) followed by its new tokens. */
  sequences: number[][];
  /** Why each row ended: `stop` (a stop token), `length` (maxNewTokens) or `cancelled` (`onToken` returned false). */
  finishReasons: ('stop' | 'length' | 'cancelled')[];
  /** With `returnLogits`: one `[B · vocab]` row-major array per step, the logits the step's tokens were chosen from. */
  stepLogits?: Float32Array[];
  /** With a string prompt: the decoded new tokens of each row. */
  text?: string[];
  /** With a `draft`: how many drafts were proposed and accepted, and the new tokens per target forward. */
  speculative?: SpeculativeStats;
}

function optionError(field: string, expected: string, found: unknown): never {
  const shown = typeof found === 'string' ? `"${found}"` : (JSON.stringify(found) ?? String(found));
  throw new ConfigError(`generate: ${field} must be ${expected}, found ${shown}`, { field, expected, found });
}

/**
 * What {@link generate} needs of a model: {@link CausalLM} and `MambaLM` both fit, with their own cache type.
 *
 * @example
 * ```ts
 * import { CausalLM, type GenerativeLM, type ModelCache } from '@slmkit/models';
 * const asGenerative = (m: CausalLM): GenerativeLM<ModelCache> => m;
 * ```
 */
export interface GenerativeLM<Cache extends { dispose(): void }> {
  /** The vocabulary size and the stop / padding ids. */
  readonly config: { readonly vocabSize: number; readonly eosTokenId: number | number[] | null; readonly padTokenId: number | null };
  /** Turns text into ids and back, when set. */
  tokenizer: PromptTokenizer | undefined;
  /** A new, empty decoding state. */
  createCache(): Cache;
  /** The logits `[B, vocab]` of the last position of each row, reading and extending `cache`. */
  forwardLast(ids: tf.Tensor2D, options: { cache?: Cache; attentionMask?: tf.Tensor2D; positions?: number[][] }): tf.Tensor2D;
}

/** The prompt as rectangular ids plus a padding mask (null when there is no padding). */
async function readInput<C extends { dispose(): void }>(
  model: GenerativeLM<C>,
  input: GenerateInput,
  maskOption: number[][] | undefined,
): Promise<{ rows: number[][]; mask: number[][] | null; fromText: boolean }> {
  if (typeof input === 'string' || (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === 'string'))) {
    const tokenizer = model.tokenizer;
    if (tokenizer == null) {
      optionError('input', 'ids (a tensor or number[][]) when the model has no tokenizer (set model.tokenizer)', typeof input === 'string' ? input.slice(0, 40) : 'string[]');
    }
    if (maskOption != null) optionError('attentionMask', 'absent for text input (padding is computed)', 'a mask');
    const encoded = (typeof input === 'string' ? [input] : (input as string[])).map((t) => tokenizer.encode(t));
    const T = Math.max(...encoded.map((r) => r.length));
    if (T === 0) optionError('input', 'text that encodes to at least one token', input);
    const c = model.config;
    const eos = Array.isArray(c.eosTokenId) ? c.eosTokenId[0] : c.eosTokenId;
    const pad = c.padTokenId ?? eos ?? 0;
    const rows = encoded.map((r) => [...new Array<number>(T - r.length).fill(pad), ...r]);
    const mask = encoded.map((r) => [...new Array<number>(T - r.length).fill(0), ...new Array<number>(r.length).fill(1)]);
    return { rows, mask: mask.every((r) => r.every((m) => m === 1)) ? null : mask, fromText: true };
  }
  let rows: number[][];
  if (input instanceof tf.Tensor) {
    if (input.rank !== 2 || input.dtype !== 'int32') {
      throw new ShapeError(`generate: ids must be an int32 tensor [B, T], found ${input.dtype} [${input.shape.join(', ')}]`, {
        field: 'ids',
        expected: 'int32 [B, T]',
        found: input.shape.slice(),
      });
    }
    rows = (await input.array()) as number[][];
  } else {
    rows = input as number[][];
  }
  const V = model.config.vocabSize;
  const T = Array.isArray(rows) && Array.isArray(rows[0]) ? rows[0].length : 0;
  const rectangular =
    Array.isArray(rows) && rows.length > 0 && T > 0 && rows.every((r) => Array.isArray(r) && r.length === T);
  if (!rectangular) {
    throw new ShapeError('generate: ids must be [B][T] with B >= 1, T >= 1 and every row of the same length', {
      field: 'ids',
      expected: '[B][T]',
      found: Array.isArray(rows) ? rows.map((r) => (Array.isArray(r) ? r.length : typeof r)) : typeof rows,
    });
  }
  rows.forEach((r, b) =>
    r.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new ShapeError(`generate: token id ${String(id)} at [${b}, ${t}] is outside the vocabulary [0, ${V - 1}]`, {
          field: 'ids',
          expected: `ids in [0, ${V - 1}]`,
          found: id,
        });
      }
    }),
  );
  let mask: number[][] | null = null;
  if (maskOption != null) {
    const ok =
      Array.isArray(maskOption) &&
      maskOption.length === rows.length &&
      maskOption.every((r) => Array.isArray(r) && r.length === T && r.every((m) => m === 0 || m === 1) && r[T - 1] === 1);
    if (!ok) optionError('attentionMask', `[${rows.length}][${T}] of 0 and 1, each row ending in a real token (left padding)`, maskOption);
    if (!maskOption.every((r) => r.every((m) => m === 1))) mask = maskOption.map((r) => r.slice());
  }
  return { rows: rows.map((r) => r.slice()), mask, fromText: false };
}

/** Validates `draft` and `numDraftTokens`: the draft must be a {@link SpeculativeLM} of the target's vocabulary size. */
function checkDraft<C extends { dispose(): void }>(model: GenerativeLM<C>, options: GenerateOptions): SpeculativeLM | null {
  const { draft, numDraftTokens } = options;
  if (draft == null) {
    if (numDraftTokens !== undefined) optionError('numDraftTokens', 'given only with a draft model', numDraftTokens);
    return null;
  }
  if (numDraftTokens !== undefined && !(Number.isInteger(numDraftTokens) && numDraftTokens > 0)) optionError('numDraftTokens', 'a positive integer', numDraftTokens);
  const speculative = (m: unknown): boolean =>
    m != null &&
    typeof m === 'object' &&
    ['forward', 'forwardLast', 'createCache'].every((f) => typeof (m as Record<string, unknown>)[f] === 'function') &&
    typeof (m as { config?: { vocabSize?: unknown } }).config?.vocabSize === 'number';
  if (!speculative(draft)) optionError('draft', 'a model with forward, forwardLast and createCache (CausalLM, MambaLM, Mamba2LM, HybridLM)', typeof draft);
  if (!speculative(model)) optionError('draft', 'used with a target that has forward and createCache', 'a target without them');
  if (draft.config.vocabSize !== model.config.vocabSize) {
    optionError('draft', `a model with the target's vocabulary size (${model.config.vocabSize})`, `vocabSize ${draft.config.vocabSize}`);
  }
  return draft;
}

/**
 * The generation loop behind {@link CausalLM.generate}; see there. Every tensor it makes is freed, the cache
 * included, whether it ends normally or by an error.
 *
 * @example
 * ```ts
 * import { CausalLM, configFromHF, generate } from '@slmkit/models';
 * const model = new CausalLM(configFromHF({
 *   model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
 *   num_attention_heads: 4,
 * }));
 * const out = await generate(model, [[1, 2, 3], [4, 5, 6]], { maxNewTokens: 3, stopTokens: [] });
 * console.log(out.tokens.map((r) => r.length)); // [3, 3]
 * model.dispose();
 * ```
 *
 * @example
 * Speculative decoding: a one-layer draft proposes 4 tokens per step, the target checks them in one forward. The
 * greedy tokens are the target's own; `speculative` says how often the draft was right.
 * ```ts
 * import { CausalLM, MambaLM, configFromHF, generate, mambaConfigFromHF } from '@slmkit/models';
 * const target = new CausalLM(configFromHF({
 *   model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
 *   num_attention_heads: 4,
 * }));
 * const draft = new MambaLM(mambaConfigFromHF({ model_type: 'mamba', vocab_size: 64, hidden_size: 16, num_hidden_layers: 1, state_size: 4 }));
 * const out = await generate(target, [[1, 2, 3]], { maxNewTokens: 8, stopTokens: [], draft, numDraftTokens: 4 });
 * console.log(out.speculative?.acceptanceRate, out.speculative?.tokensPerTargetForward);
 * target.dispose();
 * draft.dispose();
 * ```
 */
export async function generate<C extends { dispose(): void }>(model: GenerativeLM<C>, input: GenerateInput, options: GenerateOptions): Promise<GenerateOutput> {
  if (options == null || typeof options !== 'object') optionError('options', 'an object with maxNewTokens', options);
  const { maxNewTokens, onToken, returnLogits } = options;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens <= 0) optionError('maxNewTokens', 'a positive integer', maxNewTokens);
  if (onToken != null && typeof onToken !== 'function') optionError('onToken', 'a function', typeof onToken);
  validateSamplingOptions(options);
  if (options.stopTokens !== undefined && !Array.isArray(options.stopTokens)) optionError('stopTokens', 'a list of token ids', options.stopTokens);
  const stops = options.stopTokens !== undefined ? stopTokenSet(options.stopTokens) : stopTokenSet(model.config.eosTokenId);
  const sampler = createSampler({
    temperature: options.temperature,
    topK: options.topK,
    topP: options.topP,
    repetitionPenalty: options.repetitionPenalty,
    seed: options.seed,
  });

  const draft = checkDraft(model, options);

  const { rows, mask, fromText } = await readInput(model, input, options.attentionMask);
  const B = rows.length;
  const T = rows[0].length;
  const V = model.config.vocabSize;
  if (draft != null) {
    if (B !== 1) optionError('ids', 'a single row with a draft (speculative decoding keeps one cache length per batch)', `${B} rows`);
    if (mask != null) optionError('attentionMask', 'absent or all 1 with a draft (one row needs no padding)', 'left padding');
    const run = await speculativeDecode({
      target: model as unknown as SpeculativeLM,
      draft,
      prompt: rows[0],
      maxNewTokens,
      numDraftTokens: options.numDraftTokens ?? 4,
      sampling: sampler.options,
      greedy: sampler.greedy,
      rng: createRng(options.seed ?? Math.floor(Math.random() * 0x1_0000_0000)),
      stops,
      onToken,
      returnLogits: returnLogits === true,
    });
    const out: GenerateOutput = { tokens: [run.tokens], sequences: [[...rows[0], ...run.tokens]], finishReasons: [run.reason], speculative: run.stats };
    if (returnLogits === true) out.stepLogits = run.stepLogits;
    if (fromText) out.text = [model.tokenizer!.decode(run.tokens)];
    return out;
  }
  // Real tokens of each row (the prompt without its padding), then the new tokens.
  const history = rows.map((r, b) => (mask == null ? r.slice() : r.filter((_, t) => mask[b][t] === 1)));
  const tokens: number[][] = rows.map(() => []);
  const reasons: ('stop' | 'length' | 'cancelled' | null)[] = rows.map(() => null);
  const stepLogits: Float32Array[] = [];
  // With padding: Hugging Face's position_ids = cumsum(mask) − 1, with padding at 1; and the mask grows by one 1 a step.
  let maskRows = mask;
  let positions: number[][] | undefined = mask?.map((r) => {
    let seen = 0;
    return r.map((m) => (m === 1 ? seen++ : 1));
  });
  let nextPosition = mask?.map((r) => r.reduce((s, m) => s + m, 0));

  const eos = model.config.eosTokenId;
  const filler = model.config.padTokenId ?? (Array.isArray(eos) ? eos[0] : eos) ?? 0;
  const cache = model.createCache();
  let logits: tf.Tensor2D | null = null;
  try {
    logits = tf.tidy(() => {
      const ids = tf.tensor2d(rows, [B, T], 'int32'); // [B, T]
      const attentionMask = maskRows == null ? undefined : tf.tensor2d(maskRows, [B, T], 'float32'); // [B, T]
      return model.forwardLast(ids, { cache, attentionMask, positions }); // [B, V]
    });
    for (let step = 0; step < maxNewTokens; step++) {
      const data = (await logits.data()) as Float32Array; // [B · V]
      logits.dispose();
      logits = null;
      if (returnLogits === true) stepLogits.push(data.slice());
      const chosen: (number | null)[] = rows.map((_, b) => {
        if (reasons[b] != null) return null;
        const id = sampler.sample(data.subarray(b * V, (b + 1) * V), history[b]);
        tokens[b].push(id);
        history[b].push(id);
        if (stops.has(id)) reasons[b] = 'stop';
        return id;
      });
      const keepGoing = onToken?.({ step, tokens: chosen });
      if (keepGoing === false) {
        reasons.forEach((r, b) => (reasons[b] = r ?? 'cancelled'));
        break;
      }
      if (step === maxNewTokens - 1 || reasons.every((r) => r != null)) break;

      const next = chosen.map((id) => [id ?? filler]);
      if (maskRows != null) {
        maskRows = maskRows.map((r) => [...r, 1]);
        positions = nextPosition!.map((p) => [p]);
        nextPosition = nextPosition!.map((p) => p + 1);
      }
      const stepMask = maskRows;
      const stepPositions = positions;
      logits = tf.tidy(() => {
        const ids = tf.tensor2d(next, [B, 1], 'int32'); // [B, 1]
        const attentionMask = stepMask == null ? undefined : tf.tensor2d(stepMask, [B, stepMask[0].length], 'float32'); // [B, S]
        return model.forwardLast(ids, { cache, attentionMask, positions: stepPositions }); // [B, V]
      });
    }
  } finally {
    logits?.dispose();
    cache.dispose();
  }

  const out: GenerateOutput = {
    tokens,
    sequences: history,
    finishReasons: reasons.map((r) => r ?? 'length'),
  };
  if (returnLogits === true) out.stepLogits = stepLogits;
  if (fromText) out.text = tokens.map((r) => model.tokenizer!.decode(r));
  return out;
}

/**
 * {@link generate} as an async iterator of {@link GenerateStep}s: the generation starts at the first read and stops
 * when the reader leaves the loop. Behind {@link CausalLM.stream}.
 *
 * @example
 * ```ts
 * import { CausalLM, configFromHF, stream } from '@slmkit/models';
 * const model = new CausalLM(configFromHF({
 *   model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
 *   num_attention_heads: 4,
 * }));
 * for await (const { step, tokens } of stream(model, [[1, 2, 3]], { maxNewTokens: 3 })) console.log(step, tokens);
 * model.dispose();
 * ```
 */
export function stream<C extends { dispose(): void }>(
  model: GenerativeLM<C>,
  input: GenerateInput,
  options: Omit<GenerateOptions, 'onToken'>,
): AsyncIterableIterator<GenerateStep> {
  return streamFromCallbacks<GenerateStep>((emit) => generate(model, input, { ...options, onToken: (step) => emit(step) }));
}
