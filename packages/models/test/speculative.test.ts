// Speculative decoding: greedy output with a draft equals the target's own greedy output (and the fixtures'
// reference tokens) for transformer, sliding-window, Mamba, Mamba-2 and hybrid targets with drafts of other families;
// sampling with a draft has the target's exact distribution (chi-square against the joint law of the first three
// tokens, computed from the target's softmax); caches are rolled back (the target's KV cache ends holding exactly the
// accepted positions); the acceptance rule alone; typed errors; no tensor left behind.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseDir, loadCase, randn } from '@slmkit/fixtures';
import { ConfigError, type Module } from '@slmkit/core';
import {
  CausalLM,
  ModelCache,
  acceptDraft,
  configFromHF,
  createRng,
  fromPretrained,
  generate,
  softmax,
  type GenerateOptions,
  type GenerateOutput,
  type SpeculativeCache,
  type SpeculativeLM,
} from '../src/index.js';
import { maxAbsDiff, useBackend } from './helpers.js';

/** A fixture's first prompt and the first row of greedy tokens `transformers` generated from it. */
const fixtureRow = (family: string): { prompt: number[]; expected: number[] } => {
  const c = loadCase(family);
  return { prompt: (c.inputIds as number[][])[0], expected: (c.expected.generation.new_token_ids as number[][])[0] };
};
const { prompt, expected: expectedLlama } = fixtureRow('llama');

/** Adds Gaussian noise of `relative` times each tensor's own spread to every parameter (deterministic). */
function perturb(model: Module, relative: number, seed: number): void {
  model.namedParameters().forEach(([, v], i) => {
    const values = Array.from(v.dataSync());
    const mean = values.reduce((s, x) => s + x, 0) / values.length;
    const std = Math.sqrt(values.reduce((s, x) => s + (x - mean) ** 2, 0) / values.length) || Math.abs(mean) || 1;
    const noise = randn(values.length, seed + i, relative * std);
    v.assign(tf.tensor(values.map((x, j) => x + noise[j]), v.shape) as typeof v);
  });
}

/** Sets every parameter from seeded normals: norms near 1, the rest at `scale` (the LM head at `headScale`). */
function seedWeights(model: Module, seed: number, scale: number, headScale: number): void {
  model.namedParameters().forEach(([name, v], i) => {
    const values = randn(v.size, seed + i, name.includes('norm') ? 0.1 : name.startsWith('lm_head') ? headScale : scale);
    v.assign(tf.tensor(name.includes('norm') ? values.map((x) => 1 + x) : values, v.shape) as typeof v);
  });
}

const tinyLlama = (vocab: number, hidden: number, layers: number): CausalLM =>
  new CausalLM(
    configFromHF({
      model_type: 'llama', vocab_size: vocab, hidden_size: hidden, intermediate_size: 2 * hidden, num_hidden_layers: layers,
      num_attention_heads: 2, num_key_value_heads: 1, tie_word_embeddings: false,
    }),
  );

/** Plain greedy and speculative greedy on the same prompt; both outputs. */
async function both(target: SpeculativeLM, draft: SpeculativeLM, maxNewTokens: number, numDraftTokens: number, ids = prompt): Promise<[GenerateOutput, GenerateOutput]> {
  const options: GenerateOptions = { maxNewTokens, stopTokens: [], returnLogits: true };
  const before = tf.memory().numTensors;
  const plain = await generate(target, [ids], options);
  const fast = await generate(target, [ids], { ...options, draft, numDraftTokens });
  expect(tf.memory().numTensors).toBe(before);
  return [plain, fast];
}

function expectSameGreedy(plain: GenerateOutput, fast: GenerateOutput): void {
  expect(fast.tokens).toEqual(plain.tokens);
  expect(fast.finishReasons).toEqual(plain.finishReasons);
  // Every kept token's logits come from the verify forward; they match the one-token-at-a-time ones.
  expect(fast.stepLogits!.length).toBe(plain.stepLogits!.length);
  plain.stepLogits!.forEach((row, i) => expect(maxAbsDiff(fast.stepLogits![i], row), `step ${i}`).toBeLessThan(1e-4));
}

describe('speculative decoding, greedy', () => {
  const models: Module[] = [];
  let llama: CausalLM;
  let baseline: number;
  const load = async <M extends Module>(p: Promise<unknown>): Promise<M> => {
    const m = (await p) as M;
    models.push(m);
    return m;
  };

  beforeAll(async () => {
    await useBackend('wasm');
    llama = await load<CausalLM>(fromPretrained(caseDir('llama')));
    baseline = tf.memory().numTensors;
  });
  afterAll(() => {
    expect(tf.memory().numTensors).toBe(baseline);
    for (const m of models) m.dispose();
  });

  it('a llama target with a Mamba draft gives the fixture tokens, for every numDraftTokens', async () => {
    const mamba = await load<SpeculativeLM & Module>(fromPretrained(caseDir('mamba')));
    baseline = tf.memory().numTensors;
    for (const k of [1, 3, 5]) {
      const [plain, fast] = await both(llama, mamba, 10, k);
      expect(plain.tokens[0].slice(0, 8)).toEqual(expectedLlama);
      expectSameGreedy(plain, fast);
      expect(fast.speculative!.proposed).toBeGreaterThan(0);
    }
  });

  it('accepts a partial prefix from a close draft and rolls the target KV cache back to exactly the kept positions', async () => {
    const draft = await load<CausalLM>(fromPretrained(caseDir('llama')));
    perturb(draft, 0.35, 11);
    baseline = tf.memory().numTensors;
    // A view of the target that hands out its caches, so the test can look at them while generation runs.
    const made: SpeculativeCache[] = [];
    const target: SpeculativeLM = {
      config: llama.config,
      tokenizer: undefined,
      createCache: () => {
        const c = llama.createCache();
        made.push(c);
        return c;
      },
      forward: (ids, o) => llama.forward(ids, o as { cache?: ModelCache }),
      forwardLast: (ids, o) => llama.forwardLast(ids, o as { cache?: ModelCache }),
    };
    const N = 24;
    let atEnd: { length: number; held: number[][] } | null = null;
    const plain = await generate(llama, [prompt], { maxNewTokens: N, stopTokens: [], returnLogits: true });
    const fast = await generate(target, [prompt], {
      maxNewTokens: N,
      stopTokens: [],
      returnLogits: true,
      draft,
      numDraftTokens: 4,
      onToken: ({ step }) => {
        if (step !== N - 1) return;
        const cache = made[0] as ModelCache;
        atEnd = { length: cache.length, held: cache.layers.map((l) => l.keyPositions) };
      },
    });
    expectSameGreedy(plain, fast);
    const s = fast.speculative!;
    expect(s.accepted).toBeGreaterThan(0);
    expect(s.accepted).toBeLessThan(s.proposed);
    expect(s.acceptanceRate).toBeCloseTo(s.accepted / s.proposed, 12);
    expect(s.tokensPerTargetForward).toBeCloseTo(N / s.targetForwards, 12);
    expect(s.tokensPerTargetForward).toBeGreaterThan(1);
    // The newest token is never fed (as in plain decoding): prompt + N − 1 positions, each held once.
    const want = Array.from({ length: prompt.length + N - 1 }, (_, i) => i);
    expect(atEnd).toEqual({ length: want.length, held: llama.model.layers.items.map(() => want) });
    expect(made.length).toBe(1);
    expect((made[0] as ModelCache).isDisposed).toBe(true);
  });

  it('with the target itself as draft accepts everything: k + 1 tokens per target forward', async () => {
    const k = 3;
    const N = 13;
    const [plain, fast] = await both(llama, llama, N, k);
    expectSameGreedy(plain, fast);
    const s = fast.speculative!;
    expect(s.acceptanceRate).toBe(1);
    // The prefill gives one token, then each forward k + 1 (the last round drafts only what is left).
    expect(s.targetForwards).toBe(1 + Math.ceil((N - 1) / (k + 1)));
  });

  it('a sliding-window target (mistral, window 6 < prompt 16) rolls back through clones', async () => {
    const mistral = await load<SpeculativeLM & Module>(fromPretrained(caseDir('mistral')));
    baseline = tf.memory().numTensors;
    const cache = mistral.createCache();
    tf.dispose(mistral.forward(tf.tensor2d([prompt], undefined, 'int32'), { cache }));
    expect(cache.canTruncate(cache.length, 2)).toBe(false); // so the clone path is what runs below
    cache.dispose();
    const [plain, fast] = await both(mistral, llama, 12, 3);
    expectSameGreedy(plain, fast);
  });

  it('a Mamba target with a close Mamba draft (SSM states restored from clones)', async () => {
    const mamba = await load<SpeculativeLM & Module>(fromPretrained(caseDir('mamba')));
    const draft = await load<SpeculativeLM & Module>(fromPretrained(caseDir('mamba')));
    perturb(draft, 0.3, 5);
    baseline = tf.memory().numTensors;
    const row = fixtureRow('mamba');
    const [plain, fast] = await both(mamba, draft, 16, 4, row.prompt);
    expect(plain.tokens[0].slice(0, 8)).toEqual(row.expected);
    expectSameGreedy(plain, fast);
    expect(fast.speculative!.accepted).toBeGreaterThan(0);
    expect(fast.speculative!.accepted).toBeLessThan(fast.speculative!.proposed);
  });

  it('a Mamba-2 target with a llama draft', async () => {
    const mamba2 = await load<SpeculativeLM & Module>(fromPretrained(caseDir('mamba2')));
    baseline = tf.memory().numTensors;
    const row = fixtureRow('mamba2');
    const [plain, fast] = await both(mamba2, llama, 10, 3, row.prompt);
    expect(plain.tokens[0].slice(0, 8)).toEqual(row.expected);
    expectSameGreedy(plain, fast);
  });

  it('a hybrid target (jamba: Mamba, attention, MoE) with a close jamba draft and with a random transformer draft', async () => {
    const jamba = await load<SpeculativeLM & Module>(fromPretrained(caseDir('jamba')));
    const close = await load<SpeculativeLM & Module>(fromPretrained(caseDir('jamba')));
    perturb(close, 0.05, 21);
    const random = tinyLlama(96, 16, 1);
    models.push(random);
    baseline = tf.memory().numTensors;
    const row = fixtureRow('jamba');
    const [plain, fast] = await both(jamba, close, 14, 3, row.prompt);
    expect(plain.tokens[0].slice(0, 8)).toEqual(row.expected);
    expectSameGreedy(plain, fast);
    expect(fast.speculative!.accepted).toBeGreaterThan(0);
    expect(fast.speculative!.accepted).toBeLessThan(fast.speculative!.proposed);
    const [, againstRandom] = await both(jamba, random, 14, 3, row.prompt);
    expectSameGreedy(plain, againstRandom);
  });

  it.each(['zamba', 'hymba'])('a %s target (shared KV blocks / meta tokens and windows) with a close draft and a llama draft', async (family) => {
    const target = await load<SpeculativeLM & Module>(fromPretrained(caseDir(family)));
    const close = await load<SpeculativeLM & Module>(fromPretrained(caseDir(family)));
    perturb(close, 0.05, 31);
    baseline = tf.memory().numTensors;
    const row = fixtureRow(family);
    const [plain, fast] = await both(target, close, 12, 3, row.prompt);
    expectSameGreedy(plain, fast);
    expect(fast.speculative!.accepted).toBeGreaterThan(0);
    const [, againstLlama] = await both(target, llama, 12, 3, row.prompt);
    expectSameGreedy(plain, againstLlama);
  });

  it('stops at a stop token inside an accepted run, and streams every token once', async () => {
    const N = 12;
    const plain = await generate(llama, [prompt], { maxNewTokens: N, stopTokens: [] });
    const stop = plain.tokens[0][6];
    const first = plain.tokens[0].indexOf(stop);
    const steps: number[] = [];
    const out = await generate(llama, [prompt], { maxNewTokens: N, stopTokens: [stop], draft: llama, numDraftTokens: 4, onToken: ({ step, tokens }) => void steps.push(step, tokens[0]!) });
    expect(out.tokens[0]).toEqual(plain.tokens[0].slice(0, first + 1));
    expect(out.finishReasons).toEqual(['stop']);
    expect(steps).toEqual(out.tokens[0].flatMap((id, i) => [i, id]));
    const cancelled = await generate(llama, [prompt], { maxNewTokens: N, stopTokens: [], draft: llama, onToken: ({ step }) => step < 2 });
    expect(cancelled.tokens[0]).toEqual(plain.tokens[0].slice(0, 3));
    expect(cancelled.finishReasons).toEqual(['cancelled']);
  });

  it('rejects a draft of another vocabulary, a batch, and bad numDraftTokens with ConfigErrors naming the field', async () => {
    const other = tinyLlama(96, 16, 1);
    const before = tf.memory().numTensors;
    await expect(generate(llama, [prompt], { maxNewTokens: 2, draft: other })).rejects.toThrow(/draft must be a model with the target's vocabulary size \(128\), found "vocabSize 96"/);
    await expect(generate(llama, [prompt, prompt], { maxNewTokens: 2, draft: llama })).rejects.toThrow(/ids must be a single row with a draft/);
    await expect(generate(llama, [prompt], { maxNewTokens: 2, draft: llama, numDraftTokens: 0 })).rejects.toThrow(/numDraftTokens must be a positive integer/);
    await expect(generate(llama, [prompt], { maxNewTokens: 2, numDraftTokens: 3 })).rejects.toThrow(/numDraftTokens must be given only with a draft/);
    await expect(generate(llama, [prompt], { maxNewTokens: 2, draft: {} as SpeculativeLM })).rejects.toBeInstanceOf(ConfigError);
    await expect(generate(llama, [[1, 2, 3]], { maxNewTokens: 2, draft: llama, attentionMask: [[0, 1, 1]] })).rejects.toThrow(/attentionMask must be absent or all 1 with a draft/);
    expect(tf.memory().numTensors).toBe(before);
    other.dispose();
  });
});

describe('acceptDraft', () => {
  const row = (...l: number[]): Float32Array => new Float32Array(l);

  it('greedy: keeps drafts while they equal the target argmax; the next token is the argmax after them', () => {
    const target = [row(0, 5, 1), row(0, 0, 7), row(2, 1, 0)];
    const draft = [row(0, 1, 0), row(0, 0, 1)];
    expect(acceptDraft(target, draft, [1, 2])).toEqual({ accepted: 2, next: 0 });
    expect(acceptDraft(target, draft, [1, 0])).toEqual({ accepted: 1, next: 2 });
    expect(acceptDraft(target, draft, [2, 2])).toEqual({ accepted: 0, next: 1 });
    expect(acceptDraft([row(3, 1)], [], [])).toEqual({ accepted: 0, next: 0 });
    expect(() => acceptDraft([row(1)], [row(1)], [0])).toThrow(/target must be 2 rows/);
    expect(() => acceptDraft([row(1), row(1)], [], [0])).toThrow(/draft must be 1 rows/);
  });

  it('sampling: the first new token has the target law p whatever the draft law q (200 000 draws, TV < 0.005)', () => {
    const p = [0.5, 0.3, 0.15, 0.05];
    const q = [0.1, 0.2, 0.3, 0.4];
    const target = [new Float32Array(p.map(Math.log)), new Float32Array([0, 0, 0, 0])];
    const draft = [new Float32Array(q.map(Math.log))];
    const rng = createRng(1234);
    const counts = [0, 0, 0, 0];
    const n = 200_000;
    for (let i = 0; i < n; i++) {
      // The draft proposes x ~ q; the first token out is x if accepted, else the residual draw.
      const u = rng.next();
      let x = 0;
      for (let c = q[0]; u >= c && x < 3; c += q[++x]);
      const { accepted, next } = acceptDraft(target, draft, [x], rng);
      counts[accepted === 1 ? x : next]++;
    }
    const tv = 0.5 * counts.reduce((s, c, v) => s + Math.abs(c / n - p[v]), 0);
    expect(tv).toBeLessThan(0.005);
    // Emitting the draft's token every time would be far off: the bound means something.
    expect(0.5 * q.reduce((s, qv, v) => s + Math.abs(qv - p[v]), 0)).toBeGreaterThan(0.3);
  });
});

/** The 1 − 1e-4 quantile of chi-square with `df` degrees of freedom (Wilson–Hilferty). */
function chiSquareBound(df: number): number {
  const z = 3.719; // the standard normal's 1 − 1e-4 quantile
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

/** Pearson's chi-square of `counts` (n draws) against `probs`, pooling cells expected below 5 into one. */
function chiSquare(counts: number[], probs: number[], n: number): { stat: number; df: number } {
  let stat = 0;
  let cells = 0;
  let pooledCount = 0;
  let pooledExpected = 0;
  probs.forEach((pr, i) => {
    const e = pr * n;
    if (e < 5) {
      pooledCount += counts[i];
      pooledExpected += e;
      return;
    }
    stat += (counts[i] - e) ** 2 / e;
    cells++;
  });
  if (pooledExpected > 0) {
    stat += (pooledCount - pooledExpected) ** 2 / pooledExpected;
    cells++;
  }
  return { stat, df: cells - 1 };
}

describe('speculative decoding, sampling', () => {
  it("samples the target's exact joint law of the first three tokens (V = 4, a different draft, 1000 seeded runs)", async () => {
    await useBackend('wasm');
    const V = 4;
    const target = tinyLlama(V, 8, 1);
    const draft = tinyLlama(V, 8, 2);
    seedWeights(target, 100, 0.5, 1.2);
    seedWeights(draft, 300, 0.5, 1.2);
    const start = [1, 2, 3];

    // Exact laws from one forward over every continuation t1 t2: rows give p(t1), p(t2 | t1) and p(t3 | t1 t2).
    const pairs = Array.from({ length: V * V }, (_, i) => [...start, Math.floor(i / V), i % V]);
    const lawOf = async (model: CausalLM): Promise<(seq: number[]) => Float64Array> => {
      const logits = tf.tidy(() => model.forward(tf.tensor2d(pairs, undefined, 'int32'))); // [V², T, V]
      const data = (await logits.data()) as Float32Array;
      logits.dispose();
      const T = start.length + 2;
      return (seq) => {
        const pair = seq.length === 2 ? seq[0] * V + seq[1] : seq.length === 1 ? seq[0] * V : 0;
        const t = start.length - 1 + seq.length;
        return softmax(data.slice((pair * T + t) * V, (pair * T + t + 1) * V));
      };
    };
    const p = await lawOf(target);
    const q = await lawOf(draft);
    const joint = (second: typeof p): number[] =>
      Array.from({ length: V ** 3 }, (_, c) => {
        const [a, b, d] = [Math.floor(c / (V * V)), Math.floor(c / V) % V, c % V];
        return p([])[a] * second([a])[b] * second([a, b])[d];
      });
    const exact = joint(p);
    const draftOnly = joint(q); // what accepting every draft would give
    expect(0.5 * exact.reduce((s, e, i) => s + Math.abs(e - draftOnly[i]), 0)).toBeGreaterThan(0.2);

    const n = 1000;
    const counts = new Array<number>(V ** 3).fill(0);
    const before = tf.memory().numTensors;
    let proposed = 0;
    let accepted = 0;
    for (let seed = 0; seed < n; seed++) {
      const out = await generate(target, [start], { maxNewTokens: 4, stopTokens: [], temperature: 1, seed, draft, numDraftTokens: 2 });
      const [a, b, d] = out.tokens[0];
      counts[a * V * V + b * V + d]++;
      proposed += out.speculative!.proposed;
      accepted += out.speculative!.accepted;
    }
    expect(tf.memory().numTensors).toBe(before);
    // Both branches of the rule ran many times.
    expect(accepted).toBeGreaterThan(0.2 * proposed);
    expect(accepted).toBeLessThan(0.9 * proposed);
    const fit = chiSquare(counts, exact, n);
    expect(fit.stat).toBeLessThan(chiSquareBound(fit.df));
    const wrong = chiSquare(counts, draftOnly, n);
    expect(wrong.stat).toBeGreaterThan(chiSquareBound(wrong.df));
    target.dispose();
    draft.dispose();
  }, 120_000);
});
