// Fine-tuning: only the active adapter's parameters move (base weights bit-identical), the loss falls, a step
// leaks no tensor, and the next-token loss matches a float64 reference.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, initBackend } from '@slmkit/core';
import { caseDir, randn } from '@slmkit/fixtures';
import { expectClose } from '@slmkit/fixtures/assert';
import { fromPretrained, type PretrainedLM } from '@slmkit/models';
import { addAdapter, adapterParameters, disableAdapters, mergeAdapters, nextTokenLoss, setAdapter, trainAdapterStep, unmergeAdapters } from '../src/index.js';

describe('nextTokenLoss', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('is the mean next-token cross-entropy over the masked targets (float64 reference)', async () => {
    const [B, T, V] = [2, 4, 5];
    const z = randn(B * T * V, 11);
    const ids = [[1, 4, 0, 2], [3, 3, 1, 0]];
    const mask = [[1, 1, 1, 0], [0, 1, 1, 1]];
    let sum = 0;
    let count = 0;
    let sumAll = 0;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T - 1; t++) {
        const row = z.slice((b * T + t) * V, (b * T + t + 1) * V);
        const lse = Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
        const nll = lse - row[ids[b]![t + 1]!]!;
        sumAll += nll;
        if (mask[b]![t + 1] === 1) {
          sum += nll;
          count++;
        }
      }
    }
    const logits = tf.tensor3d(z, [B, T, V]);
    const idsT = tf.tensor2d(ids, undefined, 'int32');
    const maskT = tf.tensor2d(mask);
    const masked = nextTokenLoss(logits, idsT, maskT);
    const all = nextTokenLoss(logits, idsT);
    expectClose(await masked.data(), [sum / count], 1e-6);
    expectClose(await all.data(), [sumAll / (B * (T - 1))], 1e-6);
    expect(() => nextTokenLoss(logits, tf.zeros([B, T - 1], 'int32') as tf.Tensor2D)).toThrow(/must agree/);
    tf.dispose([logits, idsT, maskT, masked, all]);
  });
});

describe.each(['cpu', 'wasm'] as const)('trainAdapterStep on %s', (backend) => {
  let model: PretrainedLM;
  beforeAll(async () => {
    await initBackend(backend);
    model = await fromPretrained(caseDir('llama'));
  });
  afterAll(() => model?.dispose());

  it('lowers the loss, moves only the active adapter, and leaks nothing per step', async () => {
    addAdapter(model, 'task', { target: ['q_proj', 'v_proj', 'down_proj'], rank: 4, alpha: 8, seed: 1 });
    addAdapter(model, 'other', { target: ['o_proj'], rank: 2, seed: 2 });
    setAdapter(model, 'task');
    const before = new Map(await Promise.all(model.namedParameters().map(async ([n, v]) => [n, Array.from(await v.data())] as const)));
    const otherBefore = await Promise.all(adapterParameters(model, 'other').map(async (v) => Array.from(await v.data())));
    const ids = tf.tensor2d([[5, 17, 42, 9, 77, 3, 5, 17, 42, 9, 77, 3]], undefined, 'int32'); // a repeating pattern
    const optimizer = tf.train.adam(2e-2);
    const losses = [await trainAdapterStep(model, optimizer, ids)]; // the first step makes Adam's slots
    const tensors = tf.memory().numTensors;
    for (let step = 1; step < 12; step++) {
      losses.push(await trainAdapterStep(model, optimizer, ids));
      expect(tf.memory().numTensors, `step ${step}`).toBe(tensors);
    }
    console.log(`${backend} LoRA fine-tuning losses: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses.at(-1)!).toBeLessThan(0.5 * losses[0]!);

    const taskVars = new Set(adapterParameters(model, 'task'));
    let changedTask = 0;
    for (const [name, v] of model.namedParameters()) {
      const now = Array.from(await v.data());
      if (taskVars.has(v)) {
        if (now.some((x, i) => x !== before.get(name)![i])) changedTask++;
      } else {
        expect(now, name).toEqual(before.get(name)); // bit-identical: base weights and the other adapter
      }
    }
    expect(changedTask).toBe(taskVars.size);
    expect(await Promise.all(adapterParameters(model, 'other').map(async (v) => Array.from(await v.data())))).toEqual(otherBefore);

    // A merged or disabled adapter cannot be trained.
    mergeAdapters(model);
    await expect(trainAdapterStep(model, optimizer, ids)).rejects.toThrow(/merged into .*; unmergeAdapters first/);
    unmergeAdapters(model);
    disableAdapters(model);
    await expect(trainAdapterStep(model, optimizer, ids)).rejects.toThrow(ConfigError);
    setAdapter(model, 'task');
    optimizer.dispose();
    ids.dispose();
  });
});
