// TopKRouter: routing from hand-set weights (scores, choice, renormalisation, sigmoid), jitter only in training,
// gradients through the weights, no leaks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@slmkit/core';
import { TopKRouter } from '../src/index.js';
import { BACKENDS, maxAbsDiff, normal } from './helpers.js';

// Router weight in Hugging Face's [E, D] layout and two tokens, so the logits are x · Wᵀ by hand.
const W = [
  [1, 0, 0],
  [0, 1, 0],
  [0, 0, 1],
  [1, 1, 1],
];
const X = [
  [2, 1, 0.5], // logits [2, 1, 0.5, 3.5]: experts 3, 0
  [0, 0.2, 1], // logits [0, 0.2, 1, 1.2]: experts 3, 2
];
const LOGITS = X.map((x) => W.map((w) => w.reduce((s, wi, i) => s + wi * x[i], 0)));

function softmax(row: number[]): number[] {
  const ex = row.map(Math.exp);
  const s = ex.reduce((a, b) => a + b, 0);
  return ex.map((v) => v / s);
}

describe.each(BACKENDS)('TopKRouter on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it.each([true, false])('routes to the top-2 experts with the hand-computed weights (normalize %s)', async (normalize) => {
    const router = new TopKRouter(3, 4, { topK: 2, normalize });
    const weight = tf.tensor2d(W);
    await router.loadWeights({ weight });
    const x = tf.tensor2d(X);
    const before = tf.memory().numTensors;
    const r = router.route(x);
    expect(tf.memory().numTensors).toBe(before + 4);
    expect(Array.from(await r.experts.data())).toEqual([3, 0, 3, 2]);
    expect(maxAbsDiff(await r.logits.data(), LOGITS.flat())).toBeLessThanOrEqual(1e-6);
    const probs = LOGITS.map(softmax);
    expect(maxAbsDiff(await r.scores.data(), probs.flat())).toBeLessThanOrEqual(1e-6);
    const chosen = [
      [probs[0][3], probs[0][0]],
      [probs[1][3], probs[1][2]],
    ];
    const want = chosen.map((c) => (normalize ? c.map((v) => v / (c[0] + c[1])) : c));
    expect(maxAbsDiff(await r.weights.data(), want.flat())).toBeLessThanOrEqual(1e-6);
    tf.dispose([weight, x, r.logits, r.scores, r.experts, r.weights]);
    router.dispose();
  });

  it('scores with a sigmoid per expert when asked', async () => {
    const router = new TopKRouter(3, 4, { topK: 1, normalize: false, scoring: 'sigmoid' });
    const weight = tf.tensor2d(W);
    await router.loadWeights({ weight });
    const x = tf.tensor2d(X);
    const r = router.route(x);
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    expect(maxAbsDiff(await r.weights.data(), [sig(3.5), sig(1.2)])).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(await r.scores.data(), LOGITS.flat().map(sig))).toBeLessThanOrEqual(1e-6);
    tf.dispose([weight, x, r.logits, r.scores, r.experts, r.weights]);
    router.dispose();
  });

  it('applies jitter only in training', async () => {
    const router = new TopKRouter(6, 4, { topK: 2, normalize: true, jitterNoise: 0.2, seed: 1 });
    const x = normal([5, 6], 2);
    const plain = router.route(x);
    const evalAgain = router.route(x, { training: false });
    const trained = router.route(x, { training: true, seed: 3 });
    expect(maxAbsDiff(await plain.logits.data(), await evalAgain.logits.data())).toBe(0);
    expect(maxAbsDiff(await plain.logits.data(), await trained.logits.data())).toBeGreaterThan(1e-3);
    tf.dispose([x, ...[plain, evalAgain, trained].flatMap((r) => [r.logits, r.scores, r.experts, r.weights])]);
    router.dispose();
  });

  it('passes gradient to its weight through the routing weights', async () => {
    const router = new TopKRouter(6, 4, { topK: 2, normalize: true, seed: 4 });
    const x = normal([5, 6], 5);
    const target = normal([5, 2], 6);
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => {
      const r = router.route(x);
      return tf.mean(tf.squaredDifference(r.weights, target)) as tf.Scalar;
    }, [router.weight]);
    const g = await grads[router.weight.name].data();
    expect(Math.max(...Array.from(g).map(Math.abs))).toBeGreaterThan(1e-4);
    tf.dispose([value, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, target]);
    router.dispose();
  });
});
