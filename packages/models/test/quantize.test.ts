// Every fixture family quantised in place: the int8 model computes exactly what its format says (its logits equal
// those of the float32 model with each converted layer's weight replaced by the dequantised one), it stays close to
// float32 and agrees on confident top-1 tokens, and generation still runs. int4 and ternary run through the same
// models. (The 2e-2 bound on int8 vs float32 does not hold on these fixtures: their weights were made so
// that every tensor matters, and rounding a single layer to per-channel int8 already moves the logits by 1e-2 to
// 1.2. The last check below shows that this is the fixtures' sensitivity and not the format: random noise of
// int8's own size — uniform within half a step of each weight, which is what any 8-bit grid with that step does
// at best — moves the logits by as much. The closing note has the numbers.)
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Linear, QuantizedLinear, dequantizeWeight, quantize } from '@slmkit/core';
import { caseDir, listCases, loadCase } from '@slmkit/fixtures';
import { fromPretrained } from '../src/index.js';
import { take, useBackend } from './helpers.js';

const measured: string[] = [];
afterAll(() => console.log(`int8 vs float32 logits, max abs diff:\n${measured.join('\n')}`));

/** max |a − b|. */
function maxDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

describe('quantize on the fixture families (wasm)', () => {
  beforeAll(async () => {
    await useBackend('wasm');
  });

  it.each(listCases())('%s: int8 runs its format exactly, stays close to float32, and generates', async (family) => {
    const fixture = loadCase(family);
    const [B, L, V] = fixture.logitsShape as [number, number, number];
    const model = await fromPretrained(caseDir(family), { tokenizer: false });
    const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
    const float = await take(model.forward(ids));
    const report = quantize(model, { scheme: 'int8' });
    expect(report.layers.length).toBeGreaterThan(0);
    const int8 = await take(model.forward(ids));

    // The float32 model with the dequantised weights in place of the originals.
    const fake = await fromPretrained(caseDir(family), { tokenizer: false });
    const modules = new Map(model.namedModules());
    const weights: Record<string, tf.Tensor> = {};
    for (const name of report.layers) {
      const q = (modules.get(name) as QuantizedLinear).packedWeight();
      weights[`${name}.weight`] = tf.tensor2d(dequantizeWeight(q), [q.outFeatures, q.inFeatures]); // checkpoint layout [out, in]
    }
    await fake.loadWeights(weights, { strict: false });
    tf.dispose(Object.values(weights));
    const reference = await take(fake.forward(ids));
    fake.dispose();
    expect(maxDiff(int8, reference)).toBeLessThan(1e-4);

    // Close to float32 (a sanity bound: a wrong scale or a garbled code moves logits by their whole scale and flips
    // most tokens): confident top-1 tokens mostly kept, logits within 2.
    let confident = 0;
    let kept = 0;
    for (let r = 0; r < B * L; r++) {
      const row = float.subarray(r * V, (r + 1) * V);
      const q = int8.subarray(r * V, (r + 1) * V);
      let top = 0;
      let qTop = 0;
      for (let v = 1; v < V; v++) {
        if (row[v] > row[top]) top = v;
        if (q[v] > q[qTop]) qTop = v;
      }
      let second = -Infinity;
      for (let v = 0; v < V; v++) if (v !== top) second = Math.max(second, row[v]);
      if (row[top] - second > 0.1) {
        confident++;
        if (qTop === top) kept++;
      }
    }
    const worst = maxDiff(int8, float);

    // The float32 model with noise of int8's size on the same weights: each weight moved by a uniform amount in
    // ±½ step, the step being its output channel's int8 step max|W_o| / 127.
    const noisy = await fromPretrained(caseDir(family), { tokenizer: false });
    const noisyModules = new Map(noisy.namedModules());
    const noised: Record<string, tf.Tensor> = {};
    report.layers.forEach((name, i) => {
      const w = (noisyModules.get(name) as Linear).weight; // [in, out]
      noised[`${name}.weight`] = tf.tidy(() => {
        const step = tf.div(tf.max(tf.abs(w), 0), 127); // [out]
        const noise = tf.mul(tf.randomUniform(w.shape, -0.5, 0.5, 'float32', 1000 + i), step); // [in, out]
        return tf.transpose(tf.add(w, noise)); // checkpoint layout [out, in]
      });
    });
    await noisy.loadWeights(noised, { strict: false });
    tf.dispose(Object.values(noised));
    const noiseWorst = maxDiff(await take(noisy.forward(ids)), float);
    noisy.dispose();

    measured.push(
      `${family}: ${worst.toExponential(2)} (int8-sized noise: ${noiseWorst.toExponential(2)}); confident top-1 kept ` +
        `${kept}/${confident}; ${report.layers.length} layers ${(report.bytesBefore / report.bytesAfter).toFixed(2)}x smaller`,
    );
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThan(2);
    expect(kept / confident).toBeGreaterThanOrEqual(0.85);
    // int8's error is of the order any rounding to that grid gives (a wrong scale or code would be far above).
    expect(worst).toBeLessThan(4 * noiseWorst);

    const before = tf.memory().numTensors;
    const out = await model.generate(fixture.inputIds, { maxNewTokens: 3, stopTokens: [] });
    expect(out.tokens[0]).toHaveLength(3);
    expect(tf.memory().numTensors).toBe(before);
    ids.dispose();
    model.dispose();
  });

  it.each(['int4', 'ternary'] as const)('%s: a transformer and a Mamba model run forward and generate after quantize', async (scheme) => {
    for (const family of ['llama', 'mamba']) {
      const model = await fromPretrained(caseDir(family), { tokenizer: false });
      const report = quantize(model, { scheme, groupSize: 32 });
      expect(report.bytesBefore / report.bytesAfter).toBeGreaterThan(scheme === 'int4' ? 5 : 12);
      const out = await model.generate([[1, 2, 3]], { maxNewTokens: 2, stopTokens: [] });
      expect(out.tokens[0]).toHaveLength(2);
      model.dispose();
    }
  });
});
