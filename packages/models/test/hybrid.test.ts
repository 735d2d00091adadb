// The hybrid families against the logits their reference code computed for the tiny fixtures (one full forward,
// then 8 greedy steps through the hybrid cache), on every backend under test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { countHybridParameters } from '@slmkit/hybrid';
import { HybridLM, fromPretrained, type FromPretrainedOptions } from '../src/index.js';
import { BACKENDS, expectReferenceGeneration, expectReferenceLogits, useBackend } from './helpers.js';

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
    let model: HybridLM;
    let logitsDiff = NaN;

    beforeAll(async () => {
      const loaded = await fromPretrained(caseDir(family), options);
      expect(loaded).toBeInstanceOf(HybridLM);
      model = loaded as HybridLM;
    });
    afterAll(() => model?.dispose());

    it('matches the reference logits of one full forward', async () => {
      logitsDiff = await expectReferenceLogits(model, fixture, backend);
    });

    it('generates the reference greedy tokens with the reference step logits through the hybrid cache', async () => {
      const worst = await expectReferenceGeneration(model, fixture, backend);
      measured.push(`${backend} ${family}: ${logitsDiff.toExponential(2)} / ${worst.toExponential(2)}`);
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

