/**
 * The hf-checkpoint example: load a Hugging Face checkpoint folder (`config.json` + `model.safetensors`, and
 * `tokenizer.json` when it has one) with `fromPretrained`, then generate with sampling (temperature, top-p, a seed)
 * or greedily, printing each token as it comes: its text when the folder has a tokenizer, its id otherwise.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@slmkit/core';
import { caseDir, FIXTURES_DIR } from '@slmkit/fixtures';
import { CausalLM, IncrementalDecoder, Tokenizer, fromPretrained, type GenerateInput, type GenerateOptions } from '@slmkit/models';

export const USAGE = `usage: npm start -- [checkpoint] [options]

  checkpoint             a Hugging Face folder (config.json + model.safetensors), or an http(s) URL of one;
                         default: the llama test fixture (${join(FIXTURES_DIR, 'llama')})
  --prompt TEXT          the prompt, when the folder has a tokenizer.json
  --ids 1,2,3[/4,5,6]    prompt token ids, rows separated by '/' (default: the folder's input_ids.json if it has
                         one, else the beginning-of-sequence token)
  --max-new-tokens N     tokens to generate per row (default 16)
  --temperature T        sampling temperature (default 0.8)
  --top-p P              nucleus sampling threshold (default 0.9)
  --top-k K              keep only the K most likely tokens (default: off)
  --seed S               sampler seed (default 42): the same seed gives the same tokens
  --greedy               pick the most likely token instead of sampling
  --ignore-eos           keep going after an end-of-sequence token
  --backend NAME         wasm (Node's default), cpu or webgpu`;

export interface Io {
  /** Where the output goes, piece by piece (default: process.stdout). */
  write(text: string): void;
}

export interface RunResult {
  backend: string;
  checkpoint: string;
  /** The prompt rows, as token ids. */
  prompt: number[][];
  /** The new tokens of each row, as they were streamed. */
  tokens: number[][];
  /** The decoded new tokens, when the folder has a tokenizer (and there is one prompt row). */
  text?: string;
  sampling: { greedy: boolean; temperature?: number; topP?: number; topK?: number; seed?: number };
  numTensors: { before: number; after: number };
}

function parseNumber(name: string, value: string | undefined, check: (n: number) => boolean, expected: string): number | undefined {
  if (value == null) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || !check(n)) throw new Error(`--${name} must be ${expected}, found "${value}"\n\n${USAGE}`);
  return n;
}

function parseIds(value: string): number[][] {
  const rows = value.split('/').map((row) => row.split(',').map((s) => Number(s.trim())));
  if (rows.some((r) => r.some((id) => !Number.isInteger(id) || id < 0))) {
    throw new Error(`--ids must be non-negative integers separated by ',' (rows by '/'), found "${value}"\n\n${USAGE}`);
  }
  return rows;
}

/** Runs the example with command-line arguments (without `node` and the script). */
export async function main(argv: string[], io: Io = { write: (s) => void process.stdout.write(s) }): Promise<RunResult> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      prompt: { type: 'string' },
      ids: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      greedy: { type: 'boolean', default: false },
      'ignore-eos': { type: 'boolean', default: false },
      backend: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const say = (line = '') => io.write(`${line}\n`);
  if (positionals.length > 1) throw new Error(`expected at most one checkpoint, found ${positionals.length}\n\n${USAGE}`);
  const checkpoint = positionals[0] ?? caseDir('llama');
  const maxNewTokens = parseNumber('max-new-tokens', values['max-new-tokens'], (n) => Number.isInteger(n) && n > 0, 'a positive integer') ?? 16;
  const greedy = values.greedy === true;
  const sampling = greedy
    ? { greedy }
    : {
        greedy,
        temperature: parseNumber('temperature', values.temperature, (n) => n > 0, 'a number > 0') ?? 0.8,
        topP: parseNumber('top-p', values['top-p'], (n) => n > 0 && n <= 1, 'a number in (0, 1]') ?? 0.9,
        topK: parseNumber('top-k', values['top-k'], (n) => Number.isInteger(n) && n > 0, 'a positive integer'),
        seed: parseNumber('seed', values.seed, Number.isSafeInteger, 'an integer') ?? 42,
      };

  const info = await initBackend(values.backend as BackendName | undefined);
  const before = tf.memory().numTensors;

  const started = performance.now();
  const model = await fromPretrained(checkpoint);
  let result: RunResult;
  try {
    const loadMs = performance.now() - started;
    const c = model.config;
    const params = model.parameterCount().total;
    const heads = model instanceof CausalLM ? `, ${model.config.numHeads} heads / ${model.config.numKVHeads} KV heads` : '';
    say(`${checkpoint}`);
    const layers = 'layers' in c ? c.layers.length : c.numLayers; // a hybrid's config lists its layers
    say(`  ${c.family}: ${layers} layers, d=${c.hiddenSize}${heads}, vocab ${c.vocabSize}, ` +
      `${params.toLocaleString('en-US')} parameters; loaded in ${loadMs.toFixed(0)} ms on ${info.name}`);
    const tokenizer = model.tokenizer instanceof Tokenizer ? model.tokenizer : undefined;

    // The prompt: text through the tokenizer, explicit ids, the folder's input_ids.json, or one BOS token.
    let prompt: number[][];
    let input: GenerateInput;
    if (values.prompt != null) {
      if (tokenizer == null) throw new Error(`--prompt needs a tokenizer.json in ${checkpoint}; give --ids instead`);
      input = values.prompt;
      prompt = [tokenizer.encode(values.prompt)];
    } else {
      const idsFile = join(checkpoint, 'input_ids.json');
      const bos = c.bosTokenId ?? 0;
      prompt = values.ids != null
        ? parseIds(values.ids)
        : existsSync(idsFile)
          ? (JSON.parse(readFileSync(idsFile, 'utf8')) as { input_ids: number[][] }).input_ids
          : [[bos]];
      input = prompt;
    }
    const how = greedy ? 'greedy' : `sampling: temperature ${sampling.temperature}, top-p ${sampling.topP}` +
      `${sampling.topK != null ? `, top-k ${sampling.topK}` : ''}, seed ${sampling.seed}`;
    say(`  ${prompt.length} prompt row(s) of ${prompt[0].length} tokens; ${maxNewTokens} new tokens, ${how}`);
    say();

    const options: Omit<GenerateOptions, 'onToken'> = {
      maxNewTokens,
      temperature: sampling.temperature,
      topP: sampling.topP,
      topK: sampling.topK,
      seed: sampling.seed,
      ...(values['ignore-eos'] === true ? { stopTokens: [] } : {}),
    };
    const tokens: number[][] = prompt.map(() => []);
    // With a tokenizer, one row streams as text; otherwise (or for several rows) as ids.
    const decoder = tokenizer != null && prompt.length === 1 ? new IncrementalDecoder(tokenizer, { skipSpecialTokens: true }) : undefined;
    let text: string | undefined;
    const t0 = performance.now();
    if (decoder != null) {
      io.write(typeof input === 'string' ? input : tokenizer!.decode(prompt[0], { skipSpecialTokens: true }));
      text = '';
    } else if (prompt.length === 1) {
      io.write(`[${prompt[0].join(' ')}] ->`);
    }
    // Each step arrives as soon as its token is chosen.
    for await (const step of model.stream(input, options)) {
      step.tokens.forEach((id, b) => {
        if (id != null) tokens[b].push(id);
      });
      if (decoder != null && text != null) {
        const piece = decoder.push(step.tokens[0]!);
        text += piece;
        io.write(piece);
      } else if (prompt.length === 1) {
        io.write(` ${step.tokens[0]}`);
      } else {
        say(`step ${String(step.step).padStart(3)}: ${step.tokens.map((id) => String(id ?? '-').padStart(6)).join(' ')}`);
      }
    }
    if (decoder != null && text != null) {
      const rest = decoder.flush();
      text += rest;
      io.write(rest);
    }
    const ms = performance.now() - t0;
    const produced = tokens.reduce((s, r) => s + r.length, 0);
    if (text != null || prompt.length === 1) say(); // end the streamed line
    say(`\n${produced} tokens in ${ms.toFixed(0)} ms (${((produced / ms) * 1000).toFixed(1)} tokens/s)`);
    if (prompt.length > 1) tokens.forEach((r, b) => say(`  row ${b}: ${r.join(' ')}`));
    result = { backend: info.name, checkpoint, prompt, tokens, text, sampling, numTensors: { before, after: before } };
  } finally {
    model.dispose();
  }
  result.numTensors.after = tf.memory().numTensors;
  return result;
}
