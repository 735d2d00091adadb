// The PEFT fixtures: LoRA, DoRA and rsLoRA adapters on Llama and Qwen2 and LoRA on Mamba, against the logits PEFT +
// transformers computed: adapter active (full forward and 8 greedy steps), merged, unmerged, and disabled (the base
// model's own logits), on every backend under test.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseDir, loadCase, readFloat32 } from '@slmkit/fixtures';
import { fromPretrained, type PretrainedLM } from '@slmkit/models';
import {
  activeAdapter,
  adaptedLayers,
  disableAdapters,
  enableAdapters,
  loadAdapter,
  mergeAdapters,
  unmergeAdapters,
} from '../src/index.js';
import { BACKENDS, maxAbsDiff, take, tolerance, useBackend } from './helpers.js';

const CASES = ['lora_llama', 'dora_llama', 'rslora_qwen2', 'lora_mamba'] as const;

const measured: string[] = [];
afterAll(() => {
  console.log(`adapter fixture max abs diffs (active / step / merged / unmerged / disabled):\n${measured.join('\n')}`);
});

describe.each(BACKENDS)('PEFT adapters on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  describe.each(CASES)('%s', (name) => {
    const fixture = loadCase(`adapters/${name}`);
    const baseName = (fixture.expected.base as string).replace(/^\.\.\/\.\.\//, '');
    const base = loadCase(baseName);
    const [B, L, V] = fixture.logitsShape as [number, number, number];
    const steps = fixture.expected.generation.max_new_tokens as number;
    const merged = readFloat32(`adapters/${name}`, 'merged_logits.bin');
    let model: PretrainedLM;
    const diffs: number[] = [];

    const logits = async (): Promise<Float32Array> => {
      const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
      const before = tf.memory().numTensors;
      const y = model.forward(ids); // [B, L, V]
      expect(y.shape).toEqual([B, L, V]);
      const data = await take(y);
      expect(tf.memory().numTensors).toBe(before);
      ids.dispose();
      return data;
    };

    beforeAll(async () => {
      model = await fromPretrained(caseDir(baseName));
      await loadAdapter(model, caseDir(`adapters/${name}`));
    });
    afterAll(() => {
      model?.dispose();
      measured.push(`${backend.padEnd(6)} ${name.padEnd(12)} ${diffs.map((d) => d.toExponential(2)).join(' / ')}`);
    });

    it('adapts every targeted layer and nothing else', () => {
      const targets = fixture.expected.adapter.target_modules as string[];
      const layers = adaptedLayers(model).map(([n]) => n);
      expect(layers).toHaveLength(fixture.meta.num_adapted_modules);
      for (const n of layers) expect(targets).toContain(n.slice(n.lastIndexOf('.') + 1));
      expect(activeAdapter(model)).toBe('default');
      const scaling = fixture.expected.adapter.scaling as number;
      for (const [, l] of adaptedLayers(model)) expect(l.adapter('default')!.scaling).toBeCloseTo(scaling, 12);
    });

    it('matches the reference logits with the adapter active', async () => {
      const d = maxAbsDiff(await logits(), fixture.logits);
      diffs[0] = d;
      expect(d).toBeLessThanOrEqual(tolerance(backend));
    });

    it('decodes the 8 reference greedy tokens through the cache, with the reference step logits', async () => {
      const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
      const before = tf.memory().numTensors;
      const out = await model.generate(ids, { maxNewTokens: steps, stopTokens: [], returnLogits: true });
      expect(tf.memory().numTensors).toBe(before);
      ids.dispose();
      expect(out.tokens).toEqual(fixture.expected.generation.new_token_ids);
      let worst = 0;
      for (let s = 0; s < steps; s++) {
        for (let b = 0; b < B; b++) {
          const got = out.stepLogits![s]!.subarray(b * V, (b + 1) * V);
          const want = fixture.genLogits!.subarray((b * steps + s) * V, (b * steps + s + 1) * V);
          worst = Math.max(worst, maxAbsDiff(got, want));
        }
      }
      diffs[1] = worst;
      expect(worst).toBeLessThanOrEqual(tolerance(backend));
    });

    it('matches merged_logits.bin after mergeAdapters, and logits.bin with bit-identical base weights after unmergeAdapters', async () => {
      const [, first] = adaptedLayers(model)[0]!;
      const weightBefore = await first.base.weight.data();
      const before = tf.memory().numTensors;
      expect(mergeAdapters(model)).toBe(fixture.meta.num_adapted_modules);
      const mergedWeight = await first.base.weight.data();
      expect(maxAbsDiff(mergedWeight, weightBefore)).toBeGreaterThan(1e-3); // the weight really changed
      const d1 = maxAbsDiff(await logits(), merged);
      diffs[2] = d1;
      expect(d1).toBeLessThanOrEqual(tolerance(backend));
      expect(unmergeAdapters(model)).toBe(fixture.meta.num_adapted_modules);
      expect(tf.memory().numTensors).toBe(before);
      expect(Array.from(await first.base.weight.data())).toEqual(Array.from(weightBefore));
      const d2 = maxAbsDiff(await logits(), fixture.logits);
      diffs[3] = d2;
      expect(d2).toBeLessThanOrEqual(tolerance(backend));
    });

    it("gives the base model's own logits when disabled, and the adapter's again when enabled", async () => {
      disableAdapters(model);
      const d = maxAbsDiff(await logits(), base.logits);
      diffs[4] = d;
      expect(d).toBeLessThanOrEqual(tolerance(backend));
      // The adapter moves these logits by far more than the tolerance, so this comparison can fail.
      expect(maxAbsDiff(fixture.logits, base.logits)).toBeGreaterThan(0.5);
      enableAdapters(model);
      expect(maxAbsDiff(await logits(), fixture.logits)).toBeLessThanOrEqual(tolerance(backend));
    });
  });
});
