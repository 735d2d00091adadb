import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { main, type RunResult } from '../src/main.js';

/** Runs the example and keeps what it printed. */
async function run(argv: string[]): Promise<{ result: RunResult; out: string }> {
  let out = '';
  const result = await main(argv, { write: (s) => void (out += s) });
  return { result, out };
}

const temporary: string[] = [];
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

describe.each(['llama', 'mistral'])('hf-checkpoint example on the %s fixture', (name) => {
  const fixture = loadCase(name);
  // llama is also the default checkpoint: run it without naming the folder.
  const where = name === 'llama' ? [] : [caseDir(name)];

  it('generates greedily the tokens Hugging Face recorded, streamed as they come, leak-free', async () => {
    const { result, out } = await run([...where, '--greedy', '--ignore-eos', '--max-new-tokens', '8', '--backend', 'cpu']);
    expect(result.checkpoint).toBe(caseDir(name));
    expect(result.backend).toBe('cpu');
    expect(result.prompt).toEqual(fixture.inputIds); // the folder's input_ids.json
    expect(result.tokens).toEqual(fixture.expected.generation.new_token_ids);
    // Two rows: one printed line per step, each with both rows' tokens.
    const steps = out.split('\n').filter((l) => l.startsWith('step '));
    expect(steps).toHaveLength(8);
    expect(steps[0].split(':')[1].trim().split(/\s+/).map(Number)).toEqual(result.tokens.map((r) => r[0]));
    expect(result.numTensors.after).toBe(result.numTensors.before);
  });

  it('samples reproducibly with a seed (temperature, top-p)', async () => {
    const argv = (seed: number) => [
      ...where, '--temperature', '0.9', '--top-p', '0.8', '--seed', String(seed), '--ignore-eos', '--max-new-tokens', '12',
      '--ids', '5,6,7,8', '--backend', 'wasm',
    ];
    const a = await run(argv(7));
    const b = await run(argv(7));
    expect(a.result.sampling).toEqual({ greedy: false, temperature: 0.9, topP: 0.8, topK: undefined, seed: 7 });
    expect(a.result.tokens[0]).toHaveLength(12);
    expect(b.result.tokens).toEqual(a.result.tokens);
    // One row streams inline: "[5 6 7 8] -> t0 t1 ...".
    expect(a.out).toContain(`[5 6 7 8] -> ${a.result.tokens[0].join(' ')}\n`);
    // Another seed draws other tokens (deterministically so: both seeds are fixed).
    const other = await run(argv(8));
    expect(other.result.tokens).not.toEqual(a.result.tokens);
  });
});

describe('hf-checkpoint example with a tokenizer', () => {
  it('takes a text prompt and streams text that decodes the same tokens as an id prompt', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'slmkit-hf-example-'));
    temporary.push(dir);
    cpSync(caseDir('llama'), dir, { recursive: true });
    rmSync(join(dir, 'input_ids.json'));
    // A word-level tokenizer over the fixture's 128 ids: "w0" ... "w127".
    const vocab = Object.fromEntries(Array.from({ length: 128 }, (_, i) => [`w${i}`, i]));
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({
      version: '1.0', truncation: null, padding: null, normalizer: null, post_processor: null, decoder: null,
      added_tokens: [], pre_tokenizer: { type: 'Whitespace' },
      model: { type: 'WordLevel', vocab, unk_token: 'w0' },
    }));
    const common = ['--seed', '3', '--max-new-tokens', '6', '--ignore-eos', '--backend', 'cpu', dir];
    const byText = await run(['--prompt', 'w5 w6 w7 w8', ...common]);
    const byIds = await run(['--ids', '5,6,7,8', ...common]);
    expect(byText.result.prompt).toEqual([[5, 6, 7, 8]]);
    expect(byText.result.tokens).toEqual(byIds.result.tokens);
    expect(byText.result.text!.trim().split(/\s+/)).toEqual(byIds.result.tokens[0].map((id) => `w${id}`));
    expect(byText.out).toContain(`w5 w6 w7 w8${byText.result.text}\n`);
    expect(byIds.result.text).toBe(byText.result.text); // an id prompt streams text too when there is a tokenizer
    expect(tf.memory().numTensors).toBe(byText.result.numTensors.before);
  });

  it('explains bad arguments', async () => {
    const quiet = { write: () => {} };
    await expect(main(['--top-p', '1.5'], quiet)).rejects.toThrow(/--top-p must be a number in \(0, 1\], found "1.5"/);
    await expect(main(['--prompt', 'hello', '--backend', 'cpu'], quiet)).rejects.toThrow(/--prompt needs a tokenizer.json/);
  });
});
