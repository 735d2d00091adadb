/**
 * The custom-architecture example: build {@link TinyDecoder} from blocks, count its parameters, run a forward
 * pass, then decode greedily one token at a time through explicit KV caches, and check that the cached decode
 * picks the same tokens as a full forward over the final sequence.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@slmkit/core';
import type { AttentionCache } from '@slmkit/attention';
import { TINY_CONFIG, TinyDecoder, expectedParameterCount, type TinyDecoderConfig } from './model.js';

export interface MainOptions {
  /** Backend to run on (default: the platform default, `wasm` in Node). */
  backend?: BackendName;
  /** The model (default {@link TINY_CONFIG}). */
  config?: TinyDecoderConfig;
  /** Prompt length (default 12: longer than the windowed block's window of 8). */
  promptLength?: number;
  /** Tokens to generate (default 10). */
  newTokens?: number;
  /** Where lines go (default `console.log`). */
  log?: (line: string) => void;
}

export interface MainResult {
  backend: string;
  parameters: { total: number; expected: number; byModule: [string, number][] };
  prompt: number[];
  logitsShape: number[];
  /** The tokens chosen one at a time through the caches. */
  generated: number[];
  /** argmax of a full (uncached) forward over prompt + generated, at the positions that predicted them. */
  fullForwardArgmax: number[];
  /** Largest |cached − full| over the logits of the decoded positions. */
  maxLogitDiff: number;
  /** Per block: positions seen and positions held (a sliding window holds at most its window). */
  caches: { length: number; held: number }[];
  numTensors: { before: number; after: number };
}

/** Index of the largest value (first on ties), as greedy decoding picks. */
function argmax(values: ArrayLike<number>, from = 0, to = values.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (values[i] > values[best]) best = i;
  return best - from;
}

export async function main(options: MainOptions = {}): Promise<MainResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const config = options.config ?? TINY_CONFIG;
  const promptLength = options.promptLength ?? 12;
  const newTokens = options.newTokens ?? 10;
  const V = config.vocabSize;

  const info = await initBackend(options.backend);
  log(`backend: ${info.name} (${info.reason})`);
  const before = tf.memory().numTensors;

  // 1. Assemble and count.
  const model = new TinyDecoder(config);
  const total = model.parameterCount().total;
  const expected = expectedParameterCount(config);
  const byModule: [string, number][] = model
    .namedModules()
    .filter(([name]) => /^(embed_tokens|norm|layers\.\d+\.(self_attn|mlp|input_layernorm|post_attention_layernorm))$/.test(name))
    .map(([name, m]) => [name, m.parameterCount().total]);
  log(`\nTinyDecoder: ${config.slidingWindows.length} blocks, d=${config.hiddenSize}, ${config.numHeads} heads / ${config.numKVHeads} KV heads, ` +
    `windows [${config.slidingWindows.map((w) => w ?? 'full').join(', ')}], tied head`);
  for (const [name, n] of byModule) log(`  ${name.padEnd(36)} ${String(n).padStart(8)}`);
  log(`  ${'total'.padEnd(36)} ${String(total).padStart(8)}  (from the config: ${expected})`);

  // 2. A forward pass over a prompt. Ids are a fixed, arbitrary sequence so every run is the same.
  const prompt = Array.from({ length: promptLength }, (_, i) => (7 * i + 3) % V);
  const ids = tf.tensor2d([prompt], undefined, 'int32'); // [1, T]
  const logits = model.forward(ids); // [1, T, V]
  const logitsShape = logits.shape.slice();
  const lastRow = (await logits.data()).slice((promptLength - 1) * V, promptLength * V);
  log(`\nforward: ids [${ids.shape.join(', ')}] -> logits [${logitsShape.join(', ')}]; ` +
    `last position's top token ${argmax(lastRow)} (logit ${lastRow[argmax(lastRow)].toFixed(4)})`);
  tf.dispose([ids, logits]);

  // 3. Greedy decoding through explicit caches: one prefill, then one token per call.
  const caches: AttentionCache[] = model.createCaches();
  const generated: number[] = [];
  const cachedLogits: Float32Array[] = []; // the logits each new token was chosen from
  const started = performance.now();
  let step: tf.Tensor3D = tf.tidy(() => model.forward(tf.tensor2d([prompt], undefined, 'int32'), caches)); // [1, T, V]
  for (let n = 0; n < newTokens; n++) {
    const T = step.shape[1];
    const row = (await step.data()).slice((T - 1) * V, T * V) as Float32Array; // [V]
    step.dispose();
    const next = argmax(row);
    generated.push(next);
    cachedLogits.push(row);
    if (n === newTokens - 1) break;
    step = tf.tidy(() => model.forward(tf.tensor2d([[next]], undefined, 'int32'), caches)); // [1, 1, V]
  }
  const ms = performance.now() - started;
  const cacheState = caches.map((c) => ({ length: c.length, held: c.heldLength }));
  log(`\ngenerate (greedy, ${newTokens} tokens, ${ms.toFixed(0)} ms): ${generated.join(' ')}`);
  cacheState.forEach((c, i) => log(`  cache of block ${i}: ${caches[i].constructor.name}, seen ${c.length}, holds ${c.held}`));
  for (const c of caches) c.dispose();

  // 4. The same tokens from one full forward without caches: each position's argmax is the next token.
  const sequence = [...prompt, ...generated.slice(0, -1)];
  const full = tf.tidy(() => model.forward(tf.tensor2d([sequence], undefined, 'int32'))); // [1, T + n − 1, V]
  const fullData = await full.data();
  full.dispose();
  const fullForwardArgmax: number[] = [];
  let maxLogitDiff = 0;
  for (let n = 0; n < newTokens; n++) {
    const p = promptLength - 1 + n;
    fullForwardArgmax.push(argmax(fullData, p * V, (p + 1) * V));
    for (let v = 0; v < V; v++) maxLogitDiff = Math.max(maxLogitDiff, Math.abs(fullData[p * V + v] - cachedLogits[n][v]));
  }
  const same = fullForwardArgmax.every((t, i) => t === generated[i]);
  log(`full forward argmax:       ${fullForwardArgmax.join(' ')} (${same ? 'same tokens' : 'DIFFERENT'}; max |Δlogit| ${maxLogitDiff.toExponential(2)})`);

  model.dispose();
  const after = tf.memory().numTensors;
  log(`\ntensors: ${before} before, ${after} after`);
  return {
    backend: info.name,
    parameters: { total, expected, byModule },
    prompt,
    logitsShape,
    generated,
    fullForwardArgmax,
    maxLogitDiff,
    caches: cacheState,
    numTensors: { before, after },
  };
}
