// The hybrid families against the logits their reference code computed for the tiny fixtures (one full forward,
// then 8 greedy steps through the hybrid cache), on every backend under test.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { countHybridParameters } from '@slmkit/hybrid';
import { HybridLM, fromPretrained, type FromPretrainedOptions } from '../src/index.js';
import { BACKENDS, maxAbsDiff, take, tolerance, useBackend } from './helpers.js';

const measured: string[] = [];
afterAll(() => console.log(`hybrid fixture max abs diffs (logits / step logits):\n${measured.join('\n')}`));

/** The families, with the loading options their fixture needs. */
const FAMILIES: [string, FromPretrainedOptions][] = [['jamba', {}], ['zamba', {}], ['hymba', { hymbaDecodeWindow: 'reference' }]];

describe.each(BACKENDS)('hybrid families on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  describe.each(FAMILIES)('%s', (family, options) => {
    const fixture = loadCase(family);
    const [B, L, V] = fixture.logitsShape as [number, number, number];
    const steps = fixture.expected.generation.max_new_tokens as number;
    let model: HybridLM;
    let logitsDiff = NaN;

    beforeAll(async () => {
      const loaded = await fromPretrained(caseDir(family), options);
      expect(loaded).toBeInstanceOf(HybridLM);
      model = loaded as HybridLM;
    });
    afterAll(() => model?.dispose());

    it('matches the reference logits of one full forward', async () => {
      const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
      const before = tf.memory().numTensors;
      const logits = model.forward(ids);
      expect(logits.shape).toEqual([B, L, V]);
      logitsDiff = maxAbsDiff(await take(logits), fixture.logits);
      ids.dispose();
      expect(tf.memory().numTensors).toBe(before - 1);
      expect(logitsDiff).toBeLessThanOrEqual(tolerance(backend));
    });

    it('generates the reference greedy tokens with the reference step logits through the hybrid cache', async () => {
      const before = tf.memory().numTensors;
      const out = await model.generate(fixture.inputIds, { maxNewTokens: steps, stopTokens: [], returnLogits: true });
      expect(tf.memory().numTensors).toBe(before);
      expect(out.tokens).toEqual(fixture.expected.generation.new_token_ids);
      let worst = 0;
      out.stepLogits!.forEach((s, step) => {
        for (let b = 0; b < B; b++) {
          const want = fixture.genLogits!.subarray((b * steps + step) * V, (b * steps + step + 1) * V);
          worst = Math.max(worst, maxAbsDiff(s.subarray(b * V, (b + 1) * V), want));
        }
      });
      measured.push(`${backend} ${family}: ${logitsDiff.toExponential(2)} / ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(tolerance(backend));
    });
  });
});

describe('hybrid parameter counts', () => {
  it.each(FAMILIES)('%s: counted from its config alone, equal to what the model holds (each shared tensor once)', async (family, options) => {
    await useBackend('cpu');
    const model = (await fromPretrained(caseDir(family), { ...options, tokenizer: false })) as HybridLM;
    expect(countHybridParameters(model.config).total).toBe(model.parameterCount().total);
    model.dispose();
  });
});

