// The Mamba-1 families against the logits `transformers` computed for their tiny fixtures (one full forward, then
// 8 greedy steps through the recurrent state), on every backend under test; presets against param-counts.json.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '@slmkit/core';
import { FIXTURES_DIR, caseDir, loadCase } from '@slmkit/fixtures';
import { MAMBA_PRESETS, MambaLM, countMambaParameters, fromPretrained, mambaConfigFromHF, type MambaPresetName } from '../src/index.js';
import { BACKENDS, expectPrefillThenSteps, expectReferenceGeneration, expectReferenceLogits, useBackend } from './helpers.js';

const measured: string[] = [];
afterAll(() => console.log(`mamba fixture max abs diffs (logits / step logits):\n${measured.join('\n')}`));

describe.each(BACKENDS)('mamba families on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  describe.each(['mamba', 'falcon_mamba'] as const)('%s', (family) => {
    const fixture = loadCase(family);
    let model: MambaLM;
    let logitsDiff = NaN;

    beforeAll(async () => {
      const loaded = await fromPretrained(caseDir(family));
      expect(loaded).toBeInstanceOf(MambaLM);
      model = loaded as MambaLM;
    });
    afterAll(() => model?.dispose());

    it('matches the reference logits of one full forward', async () => {
      logitsDiff = await expectReferenceLogits(model, fixture, backend);
    });

    it('generates the reference greedy tokens with the reference step logits through the recurrent state', async () => {
      const worst = await expectReferenceGeneration(model, fixture, backend);
      measured.push(`${backend} ${family}: ${logitsDiff.toExponential(2)} / ${worst.toExponential(2)}`);
    });

    it('prefill of L − 3 tokens then 3 single steps equals one forward of L', async () => {
      (await expectPrefillThenSteps(model, fixture, backend)).dispose();
    });
  });
});

describe('mamba presets', () => {
  const spec = JSON.parse(readFileSync(join(FIXTURES_DIR, '..', 'specs', 'param-counts.json'), 'utf8')) as Record<string, { params: number; config: Record<string, unknown> }>;
  it.each(Object.keys(MAMBA_PRESETS) as MambaPresetName[])('%s has the parameter count and shape of param-counts.json', (name) => {
    const preset = MAMBA_PRESETS[name]();
    expect(countMambaParameters(preset).total).toBe(spec[name].params);
    expect(mambaConfigFromHF(spec[name].config)).toEqual(preset);
  });

  it('counts what a built model holds', () => {
    const config = { ...MAMBA_PRESETS['mamba-130m'](), numLayers: 2, vocabSize: 100, hiddenSize: 64, intermediateSize: 128, timeStepRank: 4 };
    const model = new MambaLM(config);
    expect(model.parameterCount().total).toBe(countMambaParameters(config).total);
    model.dispose();
  });

  it('rejects bad configs with the field named', () => {
    expect(() => mambaConfigFromHF({ model_type: 'mamba', hidden_size: -1 })).toThrow(ConfigError);
    expect(() => mambaConfigFromHF({ model_type: 'falcon_mamba', mixer_rms_eps: 0 })).toThrow(/mixer_rms_eps/);
    expect(() => new MambaLM({ ...MAMBA_PRESETS['mamba-130m'](), stateSize: 0 })).toThrow(/stateSize/);
  });
});
