// Every backend under test (cpu, wasm, webgpu on SwiftShader when present) gives cpu's numbers on a tiny case
// that goes through every feature: GQA, window + prefix, softcap, q/k norms, rotary, padding, both kernels, and
// cached decoding with a rolling cache. Shapes stay tiny: SwiftShader is ~100x slower than wasm.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '@slmkit/core';
import { SlidingWindowCache } from '../src/index.js';
import { build, type Case } from './build.js';
import { backends, disposeAll, expectClose, take } from './helpers.js';

const c: Case = {
  B: 2, T: 6, D: 8, H: 4, KV: 2, Dh: 4, bias: true, window: 3, prefix: 1, softcap: 3, qkNorm: 'head',
  rotary: { base: 100 }, queryBlockSize: 4, keyBlockSize: 3,
};

async function compute(): Promise<number[]> {
  const { attn, x } = build(c);
  const { tensor } = x(c.B, c.T, 21);
  const mask = tf.tensor2d([[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]);
  const out: number[] = [];
  out.push(...(await take(attn.forward(tensor, { attentionMask: mask, implementation: 'naive' }))));
  out.push(...(await take(attn.forward(tensor, { attentionMask: mask, implementation: 'chunked' }))));
  const cache = new SlidingWindowCache(3, { prefixLength: 1 });
  for (const [t0, n] of [[0, 3], [3, 1], [4, 1], [5, 1]]) {
    const xs = tf.slice(tensor, [0, t0, 0], [c.B, n, c.D]) as tf.Tensor3D;
    const m = tf.slice(mask, [0, 0], [c.B, t0 + n]) as tf.Tensor2D;
    out.push(...(await take(attn.forward(xs, { cache, attentionMask: m }))));
    disposeAll(xs, m);
  }
  cache.dispose();
  disposeAll(tensor, mask);
  attn.dispose();
  return out;
}

describe('backends', () => {
  it('each backend equals cpu within 1e-5 and leaks nothing', async () => {
    const names = await backends();
    expect(names).toContain('cpu');
    expect(names).toContain('wasm');
    const results: Record<string, number[]> = {};
    try {
      for (const name of names) {
        await initBackend(name as 'cpu');
        const before = tf.memory().numTensors;
        results[name] = await compute();
        expect(tf.memory().numTensors, `tensors leaked on ${name}`).toBe(before);
      }
    } finally {
      await initBackend('cpu');
    }
    console.log(`attention backends compared: ${names.join(', ')}`);
    for (const name of names) expectClose(results[name], results.cpu, 1e-5, `${name} vs cpu`);
  });
});
