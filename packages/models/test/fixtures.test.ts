// Every family against the logits Hugging Face `transformers` computed for its tiny fixture checkpoint: one full
// forward, then 8 greedy steps through the caches (step logits and tokens), on every backend under test.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { fromPretrained, type CausalLM } from '../src/index.js';
import { BACKENDS, expectReferenceGeneration, expectReferenceLogits, useBackend } from './helpers.js';

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
    let model: CausalLM;
    let logitsDiff = NaN;

    beforeAll(async () => {
      model = (await fromPretrained(caseDir(family))) as CausalLM;
    });
    afterAll(() => model?.dispose());

    it('matches the reference logits of one full forward', async () => {
      logitsDiff = await expectReferenceLogits(model, fixture, backend);
    });

    it('decodes 8 greedy tokens through the cache with the reference step logits', async () => {
      const worst = await expectReferenceGeneration(model, fixture, backend);
      measured.push(`${backend.padEnd(6)} ${family.padEnd(8)} ${logitsDiff.toExponential(2)} / ${worst.toExponential(2)}`);
    });
  });
});
