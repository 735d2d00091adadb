// generate and stream: greedy by default, stop tokens per row, left padding, sampling through the sampler,
// streaming, the tokenizer hook, option errors, and no tensor left behind.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { ConfigError, ShapeError } from '@slmkit/core';
import { CausalLM, fromPretrained, type GenerateStep, type PromptTokenizer } from '../src/index.js';
import { maxAbsDiff, useBackend } from './helpers.js';

const fixture = loadCase('llama');
const prompts = fixture.inputIds as number[][];
const expected = fixture.expected.generation.new_token_ids as number[][];

describe('generate', () => {
  let model: CausalLM;
  let baseline: number;

  beforeAll(async () => {
    await useBackend('wasm');
    model = (await fromPretrained(caseDir('llama'))) as CausalLM;
    baseline = tf.memory().numTensors;
  });
  afterAll(() => {
    expect(tf.memory().numTensors).toBe(baseline); // nothing any test below leaked
    model.dispose();
  });

  it('decodes greedily by default, from nested arrays as from a tensor', async () => {
    const out = await model.generate(prompts, { maxNewTokens: 8 });
    expect(out.tokens).toEqual(expected);
    expect(out.finishReasons).toEqual(['length', 'length']);
    expect(out.sequences[0]).toEqual([...prompts[0], ...expected[0]]);
  });

  it('stops each row at its own stop token and keeps decoding the others', async () => {
    const stop = expected[0][2];
    expect(expected[1]).not.toContain(stop);
    const out = await model.generate(prompts, { maxNewTokens: 8, stopTokens: [stop] });
    expect(out.tokens[0]).toEqual(expected[0].slice(0, 3));
    expect(out.tokens[1]).toEqual(expected[1]);
    expect(out.finishReasons).toEqual(['stop', 'length']);
  });

  it('stops at the config eos by default and ends when every row has stopped', async () => {
    const eosModel = await fromPretrained(caseDir('llama'), { config: (c) => ({ ...c, eosTokenId: [expected[0][1], expected[1][0]] }) });
    const steps: GenerateStep[] = [];
    const out = await eosModel.generate(prompts, { maxNewTokens: 8, onToken: (s) => void steps.push(s) });
    eosModel.dispose();
    expect(out.tokens).toEqual([expected[0].slice(0, 2), expected[1].slice(0, 1)]);
    expect(steps).toEqual([
      { step: 0, tokens: [expected[0][0], expected[1][0]] },
      { step: 1, tokens: [expected[0][1], null] },
    ]);
  });

  it('gives a left-padded row the tokens and logits it gets alone', async () => {
    const pad = 3;
    const short = prompts[1].slice(pad);
    const alone = await model.generate([short], { maxNewTokens: 6, stopTokens: [], returnLogits: true });
    const batch = await model.generate([prompts[0], [0, 0, 0, ...short]], {
      maxNewTokens: 6,
      stopTokens: [],
      returnLogits: true,
      attentionMask: [prompts[0].map(() => 1), [0, 0, 0, ...short.map(() => 1)]],
    });
    expect(batch.tokens[0]).toEqual(expected[0].slice(0, 6));
    expect(batch.tokens[1]).toEqual(alone.tokens[0]);
    expect(batch.sequences[1]).toEqual([...short, ...alone.tokens[0]]);
    const V = model.config.vocabSize;
    const worst = Math.max(...batch.stepLogits!.map((s, i) => maxAbsDiff(s.subarray(V, 2 * V), alone.stepLogits![i])));
    expect(worst).toBeLessThan(1e-4);
  });

  it('samples reproducibly with a seed, and topK 1 is greedy', async () => {
    const a = await model.generate(prompts, { maxNewTokens: 8, temperature: 1.5, topP: 0.95, seed: 11, stopTokens: [] });
    const b = await model.generate(prompts, { maxNewTokens: 8, temperature: 1.5, topP: 0.95, seed: 11, stopTokens: [] });
    expect(a.tokens).toEqual(b.tokens);
    const topOne = await model.generate(prompts, { maxNewTokens: 8, topK: 1, seed: 3, stopTokens: [] });
    expect(topOne.tokens).toEqual(expected);
    const penalised = await model.generate(prompts, { maxNewTokens: 8, repetitionPenalty: 100, stopTokens: [] });
    for (const row of penalised.tokens) expect(new Set(row).size).toBe(row.length); // no token twice
  });

  it('streams the same steps, and stops when the reader leaves', async () => {
    const steps: GenerateStep[] = [];
    for await (const step of model.stream(prompts, { maxNewTokens: 8, stopTokens: [] })) steps.push(step);
    expect(steps.map((s) => s.tokens)).toEqual(expected[0].map((t, i) => [t, expected[1][i]]));
    let seen = 0;
    for await (const step of model.stream(prompts, { maxNewTokens: 8 })) {
      seen = step.step + 1;
      if (step.step === 2) break;
    }
    expect(seen).toBe(3);
    await new Promise((r) => setTimeout(r, 50)); // let the abandoned generation reach its end and free its cache
  });

  it('ends early when onToken returns false', async () => {
    const out = await model.generate(prompts, { maxNewTokens: 8, onToken: ({ step }) => step < 1 });
    expect(out.tokens.map((r) => r.length)).toEqual([2, 2]);
    expect(out.finishReasons).toEqual(['cancelled', 'cancelled']);
  });

  it('accepts text through the tokenizer hook, and refuses it without one', async () => {
    await expect(model.generate('hello', { maxNewTokens: 2 })).rejects.toBeInstanceOf(ConfigError);
    const chars: PromptTokenizer = {
      encode: (text) => Array.from(text, (ch) => ch.charCodeAt(0) % 128),
      decode: (ids) => String.fromCharCode(...ids),
    };
    model.tokenizer = chars;
    try {
      const out = await model.generate(['a longer prompt', 'short'], { maxNewTokens: 3, stopTokens: [] });
      const alone = await model.generate([chars.encode('short')], { maxNewTokens: 3, stopTokens: [] });
      expect(out.tokens[1]).toEqual(alone.tokens[0]);
      expect(out.text).toEqual(out.tokens.map((r) => chars.decode(r)));
    } finally {
      model.tokenizer = undefined;
    }
  });

  it('rejects bad options and ids with typed errors', async () => {
    await expect(model.generate(prompts, { maxNewTokens: 0 })).rejects.toBeInstanceOf(ConfigError);
    await expect(model.generate(prompts, { maxNewTokens: 2, temperature: -1 })).rejects.toBeInstanceOf(ConfigError);
    await expect(model.generate(prompts, { maxNewTokens: 2, stopTokens: [-3] })).rejects.toBeInstanceOf(ConfigError);
    await expect(model.generate([[1, 2], [3]], { maxNewTokens: 2 })).rejects.toBeInstanceOf(ShapeError);
    await expect(model.generate([[1, 999]], { maxNewTokens: 2 })).rejects.toThrow(/token id 999 at \[0, 1\]/);
    await expect(model.generate([[1, 2]], { maxNewTokens: 2, attentionMask: [[1, 0]] })).rejects.toBeInstanceOf(ConfigError);
    const floats = tf.tensor2d([[1, 2]]);
    await expect(model.generate(floats, { maxNewTokens: 2 })).rejects.toBeInstanceOf(ShapeError);
    floats.dispose();
  });
});

describe('forward', () => {
  let model: CausalLM;
  beforeAll(async () => {
    await useBackend('cpu');
    model = (await fromPretrained(caseDir('qwen2'))) as CausalLM;
    return () => model.dispose();
  });

  it('equals a full forward when run in pieces through a cache, and forwardLast is its last row', async () => {
    const ids = tf.tensor2d(prompts, undefined, 'int32');
    const before = tf.memory().numTensors;
    const full = model.forward(ids); // [2, 16, V]
    const cache = model.createCache();
    const a = model.forward(tf.slice(ids, [0, 0], [2, 10]) as tf.Tensor2D, { cache });
    const b = model.forward(tf.slice(ids, [0, 10], [2, 6]) as tf.Tensor2D, { cache });
    const pieces = tf.concat([a, b], 1);
    expect(maxAbsDiff(await pieces.data(), await full.data())).toBeLessThan(1e-5);
    const last = model.forwardLast(ids);
    const fullLast = tf.slice(full, [0, 15, 0], [2, 1, -1]);
    expect(maxAbsDiff(await last.data(), await fullLast.data())).toBe(0);
    tf.dispose([full, a, b, pieces, last, fullLast]);
    cache.dispose();
    // the two slices of ids were made outside any tidy; everything else is gone
    expect(tf.memory().numTensors - before).toBe(2);
    ids.dispose();
  });

  it('rejects ids of the wrong dtype, out-of-range ids, and a cache of another depth or already disposed', () => {
    const floats = tf.tensor2d([[1, 2]]);
    expect(() => model.forward(floats as tf.Tensor2D)).toThrow(ShapeError);
    const bad = tf.tensor2d([[1, 500]], undefined, 'int32');
    expect(() => model.forward(bad)).toThrow(/out of range/);
    const ids = tf.tensor2d([[1, 2]], undefined, 'int32');
    const deeper = new CausalLM({ ...model.config, numLayers: 3 });
    const theirs = deeper.createCache();
    expect(() => model.forward(ids, { cache: theirs })).toThrow(/ModelCache of 2 layers/);
    const disposed = model.createCache();
    disposed.dispose();
    expect(() => model.forward(ids, { cache: disposed })).toThrow(ConfigError);
    tf.dispose([floats, bad, ids]);
    theirs.dispose();
    deeper.dispose();
  });
});
