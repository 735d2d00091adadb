// The load-balancing loss against values worked out by hand for small routing tables (with and without a padding
// mask, over one or several layers), the router z-loss, token counts, and typed errors.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError, initBackend } from '@slmkit/core';
import { loadBalancingLoss, routerZLoss, tokensPerExpert } from '../src/index.js';
import { BACKENDS } from './helpers.js';

// Three tokens, three experts; the logits are log-probabilities, so softmax(logits) is exactly this table.
const PROBS = [
  [0.5, 0.3, 0.2], // top-1 e0, top-2 e1
  [0.6, 0.25, 0.15], // top-1 e0, top-2 e1
  [0.1, 0.7, 0.2], // top-1 e1, top-2 e2
];
const logitsOf = (rows: number[][]) => tf.tensor2d(rows.map((r) => r.map(Math.log)));

async function value(t: tf.Scalar): Promise<number> {
  const v = (await t.data())[0];
  t.dispose();
  return v;
}

describe.each(BACKENDS)('MoE losses on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('equals the hand-computed load-balancing loss for k = 1 and k = 2', async () => {
    const logits = logitsOf(PROBS);
    // P = mean of the probabilities per expert = [0.4, 0.41667, 0.18333].
    // k = 1: f = [2/3, 1/3, 0]; loss = 3 · (2/3 · 0.4 + 1/3 · 0.41667) = 1.216667.
    expect(await value(loadBalancingLoss(logits, { numExperts: 3, topK: 1 }))).toBeCloseTo(3 * ((2 / 3) * 0.4 + (1 / 3) * (1.25 / 3)), 5);
    // k = 2: f = [[2/3, 1/3, 0], [0, 2/3, 1/3]] (first and second choices); loss = 3 · Σ f · P = 2.233333.
    const P = [0.4, 1.25 / 3, 0.55 / 3];
    const want = 3 * ((2 / 3) * P[0] + (1 / 3) * P[1] + (2 / 3) * P[1] + (1 / 3) * P[2]);
    expect(want).toBeCloseTo(2.233333, 5);
    expect(await value(loadBalancingLoss(logits, { numExperts: 3, topK: 2 }))).toBeCloseTo(want, 5);
    logits.dispose();
  });

  it('is 1 for a perfectly balanced table, over two layers', async () => {
    const a = tf.tensor2d([[2, 0, 0, 0], [0, 2, 0, 0]]);
    const b = tf.tensor2d([[0, 0, 2, 0], [0, 0, 0, 2]]);
    expect(await value(loadBalancingLoss([a, b], { numExperts: 4, topK: 1 }))).toBeCloseTo(1, 5);
    // Everything on expert 0: E · P[0] with P[0] = e² / (e² + 3).
    const c = tf.tensor2d([[2, 0, 0, 0], [2, 0, 0, 0]]);
    expect(await value(loadBalancingLoss(c, { numExperts: 4, topK: 1 }))).toBeCloseTo((4 * Math.exp(2)) / (Math.exp(2) + 3), 5);
    tf.dispose([a, b, c]);
  });

  it('leaves padding tokens out of both averages, per layer', async () => {
    const logits = logitsOf(PROBS);
    const mask = tf.tensor2d([[1, 1, 0]]);
    // Tokens 0 and 1 only: f = [1, 0, 0], P[0] = (0.5 + 0.6) / 2; loss = 3 · 0.55 = 1.65.
    expect(await value(loadBalancingLoss(logits, { numExperts: 3, topK: 1, attentionMask: mask }))).toBeCloseTo(1.65, 5);
    // The same table for two layers: the mask repeats per layer, the loss is unchanged.
    expect(await value(loadBalancingLoss([logits, logits], { numExperts: 3, topK: 1, attentionMask: mask }))).toBeCloseTo(1.65, 5);
    // A mask of all ones is no mask.
    const ones = tf.ones([1, 3]) as tf.Tensor2D;
    expect(await value(loadBalancingLoss(logits, { numExperts: 3, topK: 2, attentionMask: ones }))).toBeCloseTo(2.233333, 5);
    tf.dispose([logits, mask, ones]);
  });

  it('has a gradient with respect to the logits (through the mean probabilities)', async () => {
    const logits = logitsOf(PROBS);
    const g = tf.grad((l: tf.Tensor) => loadBalancingLoss(l, { numExperts: 3, topK: 1 }))(logits);
    const v = await g.data();
    expect(Math.max(...Array.from(v).map(Math.abs))).toBeGreaterThan(1e-3);
    tf.dispose([logits, g]);
  });

  it('computes the z-loss as the mean squared log-sum-exp, masked', async () => {
    const logits = tf.tensor2d([[0, 0, 0, 0], [1, 1, 1, 1]]); // log-sum-exp: ln 4 and 1 + ln 4
    const l4 = Math.log(4);
    expect(await value(routerZLoss(logits))).toBeCloseTo((l4 ** 2 + (1 + l4) ** 2) / 2, 5);
    const mask = tf.tensor2d([[1], [0]]);
    expect(await value(routerZLoss(logits, { attentionMask: mask }))).toBeCloseTo(l4 ** 2, 5);
    tf.dispose([logits, mask]);
  });

  it('counts assignments per expert', async () => {
    const experts = tf.tensor2d([[0, 1], [0, 3], [2, 0]], undefined, 'int32');
    const counts = tokensPerExpert(experts, 5);
    expect(counts.dtype).toBe('int32');
    expect(Array.from(await counts.data())).toEqual([3, 1, 1, 1, 0]);
    tf.dispose([experts, counts]);
  });
});

describe('MoE loss errors', () => {
  it('names the field, the expected and the found value', () => {
    const logits = tf.zeros([6, 4]);
    expect(() => loadBalancingLoss(logits, { numExperts: 3, topK: 1 })).toThrow(/routerLogits\[0\] must be float32 \[N, 3\], found float32 \[6, 4\]/);
    expect(() => loadBalancingLoss(logits, { numExperts: 4, topK: 5 })).toThrow(ConfigError);
    expect(() => loadBalancingLoss([], { numExperts: 4, topK: 1 })).toThrow(ShapeError);
    const mask = tf.ones([1, 4]) as tf.Tensor2D;
    expect(() => loadBalancingLoss(logits, { numExperts: 4, topK: 1, attentionMask: mask })).toThrow(/6 rows, which is not a whole number of layers of B·S = 4/);
    expect(() => routerZLoss(logits, { attentionMask: mask })).toThrow(ShapeError);
    const f = tf.zeros([2, 2]);
    expect(() => tokensPerExpert(f as tf.Tensor2D, 4)).toThrow(/int32 \[N, k\] tensor, found float32/);
    tf.dispose([logits, mask, f]);
  });
});
