// Mistral's sliding window through the rolling-buffer cache: decoding past the window equals the full forward with
// the window mask, and no layer's cache ever holds more than the window.
import * as tf from '@tensorflow/tfjs-core';
import { SlidingWindowCache } from '@slmkit/attention';
import { beforeAll, describe, expect, it } from 'vitest';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { fromPretrained, type CausalLM } from '../src/index.js';
import { BACKENDS, maxAbsDiff, take, tolerance, useBackend } from './helpers.js';

describe.each(BACKENDS.filter((b) => b !== 'webgpu'))('mistral sliding window on %s', (backend) => {
  const fixture = loadCase('mistral');
  const window = fixture.config!.sliding_window as number; // 6
  const sequences = fixture.expected.generation.sequences as number[][]; // [2][24]
  const [B, S] = [sequences.length, sequences[0].length];
  let model: CausalLM;

  beforeAll(async () => {
    await useBackend(backend);
    model = (await fromPretrained(caseDir('mistral'))) as CausalLM;
    return () => model.dispose();
  });

  it('decodes token by token past the window to the full masked forward, never holding more than the window', async () => {
    expect(S).toBeGreaterThan(3 * window);
    const ids = tf.tensor2d(sequences, [B, S], 'int32');
    const full = await take(model.forward(ids)); // [B, S, V]
    ids.dispose();
    const V = model.config.vocabSize;

    const cache = model.createCache();
    expect(cache.layers.every((c) => c instanceof SlidingWindowCache && c.window === window)).toBe(true);
    const before = tf.memory().numTensors;
    let worst = 0;
    for (let t = 0; t < S; t++) {
      const step = tf.tensor2d(sequences.map((r) => [r[t]]), [B, 1], 'int32');
      const logits = await take(model.forward(step, { cache })); // [B, 1, V]
      step.dispose();
      for (let b = 0; b < B; b++) {
        worst = Math.max(worst, maxAbsDiff(logits.subarray(b * V, (b + 1) * V), full.subarray((b * S + t) * V, (b * S + t + 1) * V)));
      }
      expect(cache.length).toBe(t + 1);
      for (const layer of cache.layers) expect(layer.heldLength).toBe(Math.min(t + 1, window));
    }
    expect(worst).toBeLessThanOrEqual(tolerance(backend));
    // Only the caches' own tensors remain, two per layer (keys, values), as many as after the first step.
    expect(tf.memory().numTensors - before).toBe(2 * model.config.numLayers);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('prefills longer than the window and continues to the same logits', async () => {
    const ids = tf.tensor2d(sequences, [B, S], 'int32');
    const full = await take(model.forward(ids)); // [B, S, V]
    ids.dispose();
    const V = model.config.vocabSize;
    const cache = model.createCache();
    const prompt = tf.tensor2d(sequences.map((r) => r.slice(0, 16)), [B, 16], 'int32');
    const first = await take(model.forward(prompt, { cache })); // [B, 16, V]
    prompt.dispose();
    for (const layer of cache.layers) expect(layer.heldLength).toBe(window);
    for (let b = 0; b < B; b++) {
      expect(maxAbsDiff(first.subarray(b * 16 * V, (b + 1) * 16 * V), full.subarray(b * S * V, (b * S + 16) * V))).toBeLessThanOrEqual(tolerance(backend));
    }
    const rest = tf.tensor2d(sequences.map((r) => r.slice(16, 20)), [B, 4], 'int32');
    const next = await take(model.forward(rest, { cache })); // [B, 4, V]
    rest.dispose();
    for (let b = 0; b < B; b++) {
      expect(maxAbsDiff(next.subarray(b * 4 * V, (b + 1) * 4 * V), full.subarray((b * S + 16) * V, (b * S + 20) * V))).toBeLessThanOrEqual(tolerance(backend));
    }
    cache.dispose();
  });
});
