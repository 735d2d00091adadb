// SparseMoE: sparse dispatch equals the dense every-expert reference and a per-token oracle for k in {1, 2, all},
// with and without renormalisation and a shared expert; capacity drops exactly the assignments over capacity, in
// order; gradients agree between the two forms; nothing leaks; bad parts and inputs give typed errors.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { BackendError, ConfigError, GatedMLP, Linear, ShapeError, initBackend } from '@slmkit/core';
import { SparseMoE, TopKRouter, type MoEDispatch } from '../src/index.js';
import { BACKENDS, makeMoE, maxAbsDiff, normal, type BlockSpec } from './helpers.js';

const D = 12;
const I = 20;
const E = 4;

/**
 * The mixture computed token by token in plain JavaScript from the router's logits: scores, top-k, optional
 * renormalisation, then each chosen expert run on that token alone (and the gated shared expert). Shares no code
 * with SparseMoE's dispatch.
 */
async function perTokenOracle(moe: SparseMoE, x2d: tf.Tensor2D, dropped: Set<number> = new Set()): Promise<Float32Array> {
  const [N] = x2d.shape;
  const router = moe.router;
  const logits = await tf.tidy(() => router.forward(x2d)).data();
  const out = new Float32Array(N * D);
  for (let i = 0; i < N; i++) {
    const row = Array.from(logits.subarray(i * E, (i + 1) * E));
    let scores: number[];
    if (router.scoring === 'softmax') {
      const m = Math.max(...row);
      const ex = row.map((v) => Math.exp(v - m));
      const s = ex.reduce((a, b) => a + b, 0);
      scores = ex.map((v) => v / s);
    } else {
      scores = row.map((v) => 1 / (1 + Math.exp(-v)));
    }
    const order = scores.map((s, e) => [s, e] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    const top = order.slice(0, router.topK);
    const total = top.reduce((a, [s]) => a + s, 0);
    const xi = tf.slice(x2d, [i, 0], [1, D]);
    for (const [j, [s, e]] of top.entries()) {
      if (dropped.has(i * router.topK + j)) continue;
      const w = router.normalize ? s / total : s;
      const y = await read(moe.experts.items[e].forward(xi));
      for (let d = 0; d < D; d++) out[i * D + d] += w * y[d];
    }
    if (moe.sharedExpert != null) {
      const y = await read(moe.sharedExpert.forward(xi));
      const g = moe.sharedExpertGate == null ? 1 : 1 / (1 + Math.exp(-(await read(moe.sharedExpertGate.forward(xi)))[0]));
      for (let d = 0; d < D; d++) out[i * D + d] += g * y[d];
    }
    xi.dispose();
  }
  return out;
}

/** Reads a tensor and disposes it. */
async function read(t: tf.Tensor): Promise<Float32Array> {
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

const GRID: { name: string; spec: BlockSpec }[] = [];
for (const k of [1, 2, E]) {
  for (const normalize of [true, false]) {
    for (const shared of [false, true]) {
      GRID.push({ name: `k=${k} normalize=${normalize} shared=${shared}`, spec: { hidden: D, inner: I, experts: E, router: { topK: k, normalize }, shared, seed: k * 10 + (normalize ? 1 : 0) } });
    }
  }
}
GRID.push({ name: 'k=2 sigmoid scoring', spec: { hidden: D, inner: I, experts: E, router: { topK: 2, normalize: false, scoring: 'sigmoid' }, seed: 5 } });

describe.each(BACKENDS)('SparseMoE on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });
  const dispatches: MoEDispatch[] = backend === 'webgpu' ? ['dense'] : ['sparse', 'dense'];

  it.each(GRID)('sparse = dense = per-token oracle: $name', async ({ spec }) => {
    const moe = makeMoE(spec);
    const x = normal([2, 5, D], 3);
    const oracle = await perTokenOracle(moe, tf.reshape(x, [10, D]) as tf.Tensor2D);
    const outs: Float32Array[] = [];
    for (const dispatch of dispatches) {
      const m = new SparseMoE(moe.router, moe.experts.items, { sharedExpert: moe.sharedExpert, sharedExpertGate: moe.sharedExpertGate, dispatch });
      const before = tf.memory().numTensors;
      const y = m.forward(x);
      expect(tf.memory().numTensors).toBe(before + 1);
      expect(y.shape).toEqual([2, 5, D]);
      expect(m.lastDispatch).toBe(dispatch);
      outs.push((await y.data()) as Float32Array);
      y.dispose();
    }
    const tol = backend === 'webgpu' ? 5e-5 : 1e-5;
    for (const o of outs) expect(maxAbsDiff(o, oracle)).toBeLessThanOrEqual(tol);
    if (outs.length === 2) expect(maxAbsDiff(outs[0], outs[1])).toBeLessThanOrEqual(1e-6);
    x.dispose();
    moe.dispose();
  });

  it('drops exactly the assignments over capacity, in token order', async () => {
    // Router = 4·identity and one-hot-ish tokens make the routing known: token i prefers expert first[i], then second[i].
    const first = [0, 0, 1, 0, 2, 0, 1, 3];
    const second = [1, 2, 0, 1, 0, 3, 2, 0];
    const N = first.length;
    const xs = new Float32Array(N * D);
    for (let i = 0; i < N; i++) {
      xs[i * D + first[i]] = 2;
      xs[i * D + second[i]] = 1;
      xs[i * D + 4 + (i % 8)] = 0.5; // the experts see different tokens
    }
    const x = tf.tensor2d(xs, [N, D]);
    const gate = tf.tidy(() => tf.concat([tf.mul(tf.eye(E), 4), tf.zeros([E, D - E])], 1)); // [E, D], HF layout
    for (const capacityFactor of [0.5, 1]) {
      const moe = makeMoE({ hidden: D, inner: I, experts: E, router: { topK: 2, normalize: true }, seed: 1 }, { capacityFactor });
      await moe.router.loadWeights({ weight: gate });
      const C = moe.capacity(N);
      expect(C).toBe(Math.ceil((capacityFactor * N * 2) / E));
      // Walk the assignments row-major over [N, k], as the documentation says, and drop those over capacity.
      const used = new Array<number>(E).fill(0);
      const dropped = new Set<number>();
      const assigned = first.flatMap((f, i) => [f, second[i]]);
      assigned.forEach((e, s) => {
        if (used[e] >= C) dropped.add(s);
        else used[e]++;
      });
      expect(dropped.size).toBeGreaterThan(0);
      const oracle = await perTokenOracle(moe, x, dropped);
      const full = await perTokenOracle(moe, x);
      expect(maxAbsDiff(oracle, full)).toBeGreaterThan(1e-3); // the drop matters
      for (const dispatch of dispatches) {
        const m = new SparseMoE(moe.router, moe.experts.items, { capacityFactor, dispatch });
        const out = m.forwardWithAux(x);
        expect(maxAbsDiff(await out.output.data(), oracle)).toBeLessThanOrEqual(1e-5);
        const counts = Array.from(await out.tokensPerExpert.data());
        expect(counts).toEqual([0, 1, 2, 3].map((e) => assigned.filter((a) => a === e).length));
        expect(Array.from(await out.droppedPerExpert.data())).toEqual(counts.map((c) => Math.max(0, c - C)));
        tf.dispose(Object.values(out));
      }
      moe.dispose();
    }
    tf.dispose([x, gate]);
  });

  it('gives the same gradients sparse and dense, reaching the router and every chosen expert', async () => {
    const moe = makeMoE({ hidden: D, inner: I, experts: E, router: { topK: 2, normalize: true }, shared: true, seed: 4 });
    const x = normal([6, D], 8);
    const target = normal([6, D], 9);
    const params = moe.trainableParameters();
    const grads: Record<string, Float32Array>[] = [];
    for (const dispatch of dispatches) {
      const m = new SparseMoE(moe.router, moe.experts.items, { sharedExpert: moe.sharedExpert, sharedExpertGate: moe.sharedExpertGate, dispatch });
      const before = tf.memory().numTensors;
      const { value, grads: g } = tf.variableGrads(() => tf.mean(tf.squaredDifference(m.forward(x), target)) as tf.Scalar, params);
      const read: Record<string, Float32Array> = {};
      for (const [name, v] of moe.namedParameters()) read[name] = g[v.name] == null ? new Float32Array(v.size) : ((await g[v.name].data()) as Float32Array);
      tf.dispose([value, ...Object.values(g)]);
      expect(tf.memory().numTensors).toBe(before);
      grads.push(read);
    }
    const names = Object.keys(grads[0]);
    const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
    expect(norm(grads[0]['gate.weight'])).toBeGreaterThan(1e-4); // the routing weights carry gradient
    expect(norm(grads[0]['shared_expert_gate.weight'])).toBeGreaterThan(1e-4);
    expect(names.filter((n) => n.startsWith('experts.') && norm(grads[0][n]) > 0).length).toBeGreaterThanOrEqual(6);
    if (grads.length === 2) for (const n of names) expect(maxAbsDiff(grads[0][n], grads[1][n]), n).toBeLessThanOrEqual(1e-6);
    tf.dispose([x, target]);
    moe.dispose();
  });

  it('leaks nothing in forward, forwardWithAux or a training step', () => {
    const moe = makeMoE({ hidden: D, inner: I, experts: E, router: { topK: 2, normalize: false, jitterNoise: 0.1 }, shared: true }, { capacityFactor: 1.5 });
    const x = normal([1, 7, D], 2);
    const mask = tf.tensor2d([[1, 1, 1, 1, 1, 0, 0]]);
    const optimizer = tf.train.sgd(0.01);
    const before = tf.memory().numTensors;
    tf.dispose(moe.forward(x));
    tf.dispose(Object.values(moe.forwardWithAux(x, { attentionMask: mask, training: true })));
    const { value, grads } = tf.variableGrads(() => {
      const out = moe.forwardWithAux(x, { attentionMask: mask, training: true });
      return tf.addN([tf.mean(tf.square(out.output)), tf.mul(out.loadBalancingLoss, 0.01), tf.mul(out.zLoss, 0.001)]) as tf.Scalar;
    }, moe.trainableParameters());
    optimizer.applyGradients(grads);
    tf.dispose([value, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(before);
    optimizer.dispose();
    tf.dispose([x, mask]);
    moe.dispose();
  });

  if (backend === 'webgpu') {
    it('refuses a forced sparse dispatch on webgpu with a BackendError, and runs dense on auto', () => {
      const moe = makeMoE({ hidden: D, inner: I, experts: E, router: { topK: 2, normalize: true } }, { dispatch: 'sparse' });
      const x = normal([3, D], 1);
      expect(() => moe.forward(x)).toThrow(BackendError);
      const auto = new SparseMoE(moe.router, moe.experts.items);
      tf.dispose(auto.forward(x));
      expect(auto.lastDispatch).toBe('dense');
      x.dispose();
      moe.dispose();
    });
  }
});

describe('SparseMoE structure and errors', () => {
  it('registers its parts under checkpoint names, configurable for other families', () => {
    const moe = makeMoE({ hidden: 8, inner: 16, experts: 2, router: { topK: 1, normalize: false }, shared: true });
    expect(moe.namedParameters().map(([n]) => n)).toEqual([
      'gate.weight',
      'experts.0.gate_proj.weight', 'experts.0.up_proj.weight', 'experts.0.down_proj.weight',
      'experts.1.gate_proj.weight', 'experts.1.up_proj.weight', 'experts.1.down_proj.weight',
      'shared_expert.gate_proj.weight', 'shared_expert.up_proj.weight', 'shared_expert.down_proj.weight',
      'shared_expert_gate.weight',
    ]);
    // Jamba's names, and Mixtral's expert projections.
    const jamba = new SparseMoE(
      new TopKRouter(8, 2, { topK: 1, normalize: false }),
      [0, 1].map(() => new GatedMLP({ gateProj: new Linear(8, 16, { bias: false }), upProj: new Linear(8, 16, { bias: false }), downProj: new Linear(16, 8, { bias: false }), names: { gate: 'w1', up: 'w3', down: 'w2' } })),
      { names: { router: 'router' } },
    );
    expect(jamba.namedParameters().map(([n]) => n).slice(0, 4)).toEqual(['router.weight', 'experts.0.w1.weight', 'experts.0.w3.weight', 'experts.0.w2.weight']);
    expect(moe.checkpointShapes()['gate.weight']).toEqual([2, 8]);
    moe.dispose();
    jamba.dispose();
  });

  it('rejects bad parts and options, naming the field with expected and found values', () => {
    const router = new TopKRouter(8, 3, { topK: 2, normalize: true });
    const experts = [0, 1, 2].map(() => GatedMLP.create(8, 16));
    const fail = (f: () => unknown, field: string) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        expect((e as ConfigError).details.field).toBe(field);
        return (e as Error).message;
      }
      throw new Error(`expected a ConfigError about ${field}`);
    };
    expect(fail(() => new SparseMoE(router, experts.slice(0, 2)), 'experts')).toMatch(/router\.numExperts = 3 experts, found 2/);
    expect(fail(() => new SparseMoE({} as TopKRouter, experts), 'router')).toMatch(/TopKRouter/);
    expect(fail(() => new SparseMoE(router, experts, { sharedExpertGate: new Linear(8, 1) }), 'sharedExpertGate')).toMatch(/needs a sharedExpert/);
    expect(fail(() => new SparseMoE(router, experts, { sharedExpert: GatedMLP.create(8, 4), sharedExpertGate: new Linear(8, 2) }), 'sharedExpertGate')).toMatch(/found \[8 -> 2\]/);
    expect(fail(() => new SparseMoE(router, experts, { capacityFactor: 0 }), 'capacityFactor')).toMatch(/found 0/);
    expect(fail(() => new SparseMoE(router, experts, { dispatch: 'fast' as MoEDispatch }), 'dispatch')).toMatch(/"fast"/);
    expect(fail(() => new SparseMoE(router, [...experts.slice(0, 2), {} as GatedMLP]), 'experts[2]')).toMatch(/Module with forward/);
    expect(fail(() => new TopKRouter(8, 3, { topK: 4, normalize: true }), 'topK')).toMatch(/at most numExperts \(3\), found 4/);
    expect(fail(() => new TopKRouter(8, 3, { topK: 1 } as never), 'normalize')).toMatch(/found undefined/);
    expect(fail(() => new TopKRouter(8, 3, { topK: 1, normalize: true, scoring: 'relu' as never }), 'scoring')).toMatch(/"relu"/);
    expect(fail(() => new TopKRouter(8, 3, { topK: 1, normalize: true, jitterNoise: 1 }), 'jitterNoise')).toMatch(/\[0, 1\), found 1/);
    const moe = new SparseMoE(router, experts);
    const bad = tf.zeros([2, 7]);
    expect(() => moe.forward(bad)).toThrow(ShapeError);
    expect(() => moe.forward(bad)).toThrow(/hiddenSize = 8, found 7/);
    const ints = tf.zeros([2, 8], 'int32');
    expect(() => moe.forward(ints)).toThrow(/float32, found int32/);
    tf.dispose([bad, ints]);
    moe.dispose();
  });
});
