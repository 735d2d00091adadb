// Every family against the logits Hugging Face `transformers` computed for its tiny fixture checkpoint: one full
// forward, then 8 greedy steps through the caches (step logits and tokens), on every backend under test.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { fromPretrained, type CausalLM } from '../src/index.js';
import { BACKENDS, maxAbsDiff, take, tolerance, useBackend } from './helpers.js';

const FAMILIES = ['llama', 'mistral', 'qwen2', 'gemma', 'phi', 'phi3', 'stablelm', 'mixtral', 'qwen2_moe', 'olmoe'] as const;

/** Measured worst differences, printed once at the end: `backend family -> [logits, step logits]`. */
const measured: string[] = [];
afterAll(() => {
  console.log(`fixture max abs diffs (logits / step logits):\n${measured.join('\n')}`);
});

describe.each(BACKENDS)('families on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  describe.each(FAMILIES)('%s', (family) => {
    const fixture = loadCase(family);
    const [B, L, V] = fixture.logitsShape as [number, number, number];
    const steps = fixture.expected.generation.max_new_tokens as number;
    let model: CausalLM;
    let logitsDiff = NaN;

    beforeAll(async () => {
      model = (await fromPretrained(caseDir(family))) as CausalLM;
    });
    afterAll(() => model?.dispose());

    it('matches the reference logits of one full forward', async () => {
      const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
      const before = tf.memory().numTensors;
      const logits = model.forward(ids); // [B, L, V]
      expect(logits.shape).toEqual([B, L, V]);
      expect(logits.dtype).toBe('float32');
      const got = await take(logits);
      expect(tf.memory().numTensors).toBe(before);
      ids.dispose();
      logitsDiff = maxAbsDiff(got, fixture.logits);
      expect(logitsDiff).toBeLessThanOrEqual(tolerance(backend));
    });

    it('decodes 8 greedy tokens through the cache with the reference step logits', async () => {
      const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
      const before = tf.memory().numTensors;
      const out = await model.generate(ids, { maxNewTokens: steps, stopTokens: [], returnLogits: true });
      expect(tf.memory().numTensors).toBe(before);
      ids.dispose();
      expect(out.tokens).toEqual(fixture.expected.generation.new_token_ids);
      expect(out.sequences).toEqual(fixture.expected.generation.sequences);
      expect(out.stepLogits).toHaveLength(steps);
      // gen_logits.bin is [B, steps, V]; stepLogits[s] is [B, V].
      let worst = 0;
      for (let s = 0; s < steps; s++) {
        for (let b = 0; b < B; b++) {
          const got = out.stepLogits![s].subarray(b * V, (b + 1) * V);
          const want = fixture.genLogits!.subarray((b * steps + s) * V, (b * steps + s + 1) * V);
          worst = Math.max(worst, maxAbsDiff(got, want));
        }
      }
      measured.push(`${backend.padEnd(6)} ${family.padEnd(8)} ${logitsDiff.toExponential(2)} / ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(tolerance(backend));
    });
  });
});
