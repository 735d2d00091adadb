import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/register-gradients.node.js';
import { initBackend } from '../../src/backend.js';
import { GATED_PRODUCT_KERNEL, gatedProducts } from '../../src/wasm-gated.js';
import { CheckpointError, ConfigError, ShapeError } from '../../src/errors.js';
import { Module } from '../../src/module.js';
import type { Activation } from '../../src/layers/activations.js';
import { Linear, type Projection } from '../../src/layers/linear.js';
import { GatedMLP, MLP } from '../../src/layers/mlp.js';
import { act64, checkpointValues, expectBackendsAgree, expectClose, expectNoLeak, linearRef, onEveryBackend, randn, take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const hidden = 8;
const inter = 20;
const rows = 6;
const wg = randn(inter * hidden, 51, 0.4);
const wu = randn(inter * hidden, 52, 0.4);
const wd = randn(hidden * inter, 53, 0.3);
const bg = randn(inter, 54, 0.5);
const bu = randn(inter, 55, 0.5);
const bd = randn(hidden, 56, 0.5);
const xs = randn(rows * hidden, 57);

function gatedRef(x: number[], act: Activation, bias: boolean): number[] {
  const g = linearRef(x, wg, bias ? bg : null, rows, hidden, inter).map(act64[act]);
  const u = linearRef(x, wu, bias ? bu : null, rows, hidden, inter);
  return linearRef(
    g.map((v, i) => v * u[i]),
    wd,
    bias ? bd : null,
    rows,
    inter,
    hidden,
  );
}

function gatedRecord(bias: boolean): Record<string, tf.Tensor> {
  const r: Record<string, tf.Tensor> = {
    'gate_proj.weight': tf.tensor2d(wg, [inter, hidden]),
    'up_proj.weight': tf.tensor2d(wu, [inter, hidden]),
    'down_proj.weight': tf.tensor2d(wd, [hidden, inter]),
  };
  if (bias) {
    r['gate_proj.bias'] = tf.tensor1d(bg);
    r['up_proj.bias'] = tf.tensor1d(bu);
    r['down_proj.bias'] = tf.tensor1d(bd);
  }
  return r;
}

async function gatedWith(act: Activation, bias = false): Promise<GatedMLP> {
  const m = GatedMLP.create(hidden, inter, { activation: act, bias });
  const record = gatedRecord(bias);
  await m.loadWeights(record);
  tf.dispose(Object.values(record));
  return m;
}

async function mlpWith(act: Activation, bias = true): Promise<MLP> {
  const m = MLP.create(hidden, inter, { activation: act, bias });
  const record: Record<string, tf.Tensor> = {
    'fc1.weight': tf.tensor2d(wg, [inter, hidden]),
    'fc2.weight': tf.tensor2d(wd, [hidden, inter]),
  };
  if (bias) {
    record['fc1.bias'] = tf.tensor1d(bg);
    record['fc2.bias'] = tf.tensor1d(bd);
  }
  await m.loadWeights(record);
  tf.dispose(Object.values(record));
  return m;
}

/** A drop-in projection that is not a Linear: y = 2 · (x Wᵀ), like a scaled adapter would be. */
class DoubledLinear extends Module {
  readonly inner: Linear;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
  ) {
    super();
    this.inner = this.registerModule('base_layer', new Linear(inFeatures, outFeatures, { bias: false, seed: 3 }));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.mul(this.inner.forward(x), 2));
  }
}

describe('GatedMLP', () => {
  const cases: [Activation, boolean][] = [
    ['silu', false],
    ['gelu_tanh', false],
    ['gelu', false],
    ['silu', true],
  ];
  for (const [act, bias] of cases) {
    it(`matches a float64 reference: ${act}${bias ? ' with biases' : ''}`, async () => {
      const m = await gatedWith(act, bias);
      expect(m.activationName).toBe(act);
      const x = tf.tensor3d(xs, [2, rows / 2, hidden]);
      const y = m.forward(x);
      expect(y.shape).toEqual([2, rows / 2, hidden]);
      expectClose(await take(y), gatedRef(xs, act, bias));
      x.dispose();
      m.dispose();
    });
  }

  it('registers its projections under the Hugging Face names', () => {
    const m = GatedMLP.create(hidden, inter);
    expect(m.checkpointShapes()).toEqual({
      'gate_proj.weight': [inter, hidden],
      'up_proj.weight': [inter, hidden],
      'down_proj.weight': [hidden, inter],
    });
    expect(m.namedParameters().map(([n]) => n)).toEqual(['gate_proj.weight', 'up_proj.weight', 'down_proj.weight']);
    expect(m.activationName).toBe('silu'); // SwiGLU unless told otherwise
    m.dispose();
  });

  it('loadWeights sets every projection; wrong shapes fail with one CheckpointError listing them', async () => {
    const m = GatedMLP.create(hidden, inter, { seed: 1 });
    const record = gatedRecord(false);
    const report = await m.loadWeights(record);
    expect(report.loaded.sort()).toEqual(['down_proj.weight', 'gate_proj.weight', 'up_proj.weight']);
    expect(checkpointValues(m, 'gate_proj.weight')).toEqual(wg);
    expect(checkpointValues(m, 'down_proj.weight')).toEqual(wd);
    const bad = {
      'gate_proj.weight': tf.zeros([hidden, inter]),
      'up_proj.weight': tf.zeros([inter, hidden]),
      'down_proj.weight': tf.zeros([inter, hidden]),
    };
    const err = await m.loadWeights(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as CheckpointError).problems.map((p) => p.name)).toEqual(['gate_proj.weight', 'down_proj.weight']);
    expect(checkpointValues(m, 'up_proj.weight')).toEqual(wu); // nothing changed
    const missing = { 'gate_proj.weight': record['gate_proj.weight'] };
    await expect(m.loadWeights(missing)).rejects.toThrow(/2 missing/);
    tf.dispose([...Object.values(record), ...Object.values(bad)]);
    m.dispose();
  });

  it('accepts any Projection (a Module with forward) and a custom activation function', async () => {
    const parts = {
      gateProj: new DoubledLinear(hidden, inter),
      upProj: new DoubledLinear(hidden, inter),
      downProj: new DoubledLinear(inter, hidden),
    };
    const m = new GatedMLP({ ...parts, activation: (x) => tf.relu(x) });
    expect(m.activationName).toBeUndefined();
    expect(m.namedParameters().map(([n]) => n)).toEqual([
      'gate_proj.base_layer.weight',
      'up_proj.base_layer.weight',
      'down_proj.base_layer.weight',
    ]);
    const read = (p: DoubledLinear) => checkpointValues(p.inner, 'weight'); // [out, in]
    const x = tf.tensor2d(xs, [rows, hidden]);
    const g = linearRef(xs, read(parts.gateProj), null, rows, hidden, inter).map((v) => Math.max(2 * v, 0));
    const u = linearRef(xs, read(parts.upProj), null, rows, hidden, inter).map((v) => 2 * v);
    const want = linearRef(
      g.map((v, i) => v * u[i]),
      read(parts.downProj),
      null,
      rows,
      inter,
      hidden,
    ).map((v) => 2 * v);
    expectClose(await take(m.forward(x)), want);
    x.dispose();
    m.dispose();
  });

  it('rejects misfitting or non-Module projections and unknown activations with ConfigError', () => {
    const lin = (i: number, o: number) => new Linear(i, o, { bias: false });
    expect(() => new GatedMLP({ gateProj: lin(8, 16), upProj: lin(8, 12), downProj: lin(16, 8) })).toThrow(
      'GatedMLP: upProj.outFeatures must equal gateProj.outFeatures = 16, found 12',
    );
    expect(() => new GatedMLP({ gateProj: lin(8, 16), upProj: lin(4, 16), downProj: lin(16, 8) })).toThrow(
      'GatedMLP: upProj.inFeatures must equal gateProj.inFeatures = 8, found 4',
    );
    expect(() => new GatedMLP({ gateProj: lin(8, 16), upProj: lin(8, 16), downProj: lin(12, 8) })).toThrow(
      'GatedMLP: downProj.inFeatures must equal gateProj.outFeatures = 16, found 12',
    );
    const notModule = { forward: (x: tf.Tensor) => x } as unknown as Projection;
    expect(() => new GatedMLP({ gateProj: notModule, upProj: lin(8, 16), downProj: lin(16, 8) })).toThrow(
      'GatedMLP: gateProj must be a Module with forward(x), found object',
    );
    expect(() =>
      new GatedMLP({ gateProj: lin(8, 16), upProj: lin(8, 16), downProj: lin(16, 8), activation: 'swish' as Activation }),
    ).toThrow(/unknown activation "swish"; expected one of silu, gelu, gelu_tanh, relu, relu2/);
    expect(() => GatedMLP.create(8, 0)).toThrow('Linear: outFeatures must be a positive integer, found 0');
    expect(() => GatedMLP.create(8, 16, { activation: 'tanh' as Activation })).toThrow(ConfigError);
  });

  it('rejects a wrong last dimension with ShapeError', () => {
    const m = GatedMLP.create(hidden, inter);
    const x = tf.ones([2, hidden + 1]);
    expect(() => m.forward(x)).toThrow(ShapeError);
    expect(() => m.forward(x)).toThrow(/last dimension must be inFeatures = 8, found 9/);
    x.dispose();
    m.dispose();
  });

  it('leaks no tensors across repeated forwards', async () => {
    const m = await gatedWith('gelu_tanh');
    const x = tf.tensor2d(xs, [rows, hidden]);
    expectNoLeak(() => m.forward(x).dispose());
    x.dispose();
    m.dispose();
  });

  it('gives the cpu output on every backend (silu and gelu_tanh)', async () => {
    const out = await onEveryBackend(async () => {
      const results: number[] = [];
      for (const act of ['silu', 'gelu_tanh'] as const) {
        const m = await gatedWith(act);
        const x = tf.tensor2d(xs, [rows, hidden]);
        results.push(...(await take(m.forward(x))));
        x.dispose();
        m.dispose();
      }
      return results;
    });
    expectBackendsAgree(out);
  });
});

// On wasm, act(gate(x)) ⊙ up(x) runs as one kernel (wasm-gated.ts: slmkit's GEMM with a gated epilogue). Shapes
// with fewer than four rows (the few-rows tile), rows not a multiple of four, columns not a multiple of eight or four
// (the epilogue's one-at-a-time tail), against float64.
describe('GatedMLP on wasm: the gated product in one GEMM pass', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });
  afterAll(async () => {
    await initBackend('cpu');
  });

  /** act(x · W_gateᵀ) ⊙ (x · W_upᵀ) in float64, W `[n, k]` (the checkpoint's layout). */
  function gatedProductRef(x: number[], wGate: number[], wUp: number[], m: number, k: number, n: number, act: 'silu' | 'gelu_tanh'): number[] {
    const g = linearRef(x, wGate, null, m, k, n);
    const u = linearRef(x, wUp, null, m, k, n);
    return g.map((v, i) => act64[act](v) * u[i]);
  }

  /** Runs the kernel on x `[m, k]` and weights stored `[k, n]` (as a Linear holds them). */
  async function kernel(x: number[], wGate: number[], wUp: number[], m: number, k: number, n: number, activation: string): Promise<number[]> {
    const t = tf.tidy(() => {
      const stored = (w: number[]) => tf.transpose(tf.tensor2d(w, [n, k])); // [k, n]
      return tf.engine().runKernel(GATED_PRODUCT_KERNEL, { x: tf.tensor2d(x, [m, k]), gate: stored(wGate), up: stored(wUp) }, { activation }) as tf.Tensor;
    });
    return take(t);
  }

  const shapes: [number, number, number][] = [
    [1, 8, 20],
    [3, 16, 13],
    [6, 8, 20],
    [37, 24, 45],
    [130, 64, 203],
  ];
  for (const act of ['silu', 'gelu_tanh'] as const) {
    it(`computes ${act}(x W_gate) ⊙ (x W_up) as float64 does, to float32 rounding`, async () => {
      for (const [m, k, n] of shapes) {
        const [x, wGate, wUp] = [randn(m * k, 61), randn(n * k, 62, 0.5), randn(n * k, 63, 0.5)];
        const before = gatedProducts.count;
        const got = await kernel(x, wGate, wUp, m, k, n, act);
        expect(gatedProducts.count - before, `${m}x${k}x${n}`).toBe(1);
        // float32 sums over k = 64 drift by about 1e-5 from float64; any slip in the epilogue is far larger.
        expectClose(got, gatedProductRef(x, wGate, wUp, m, k, n, act), 5e-5, `${act} ${m}x${k}x${n}`);
      }
    });
  }

  it('takes an empty sequence (no rows) without touching the heap', async () => {
    expect(await kernel([], randn(12 * 4, 71), randn(12 * 4, 72), 0, 4, 12, 'silu')).toEqual([]);
    const m = await gatedWith('silu');
    const x = tf.zeros([2, 0, hidden]);
    const y = m.forward(x);
    expect(y.shape).toEqual([2, 0, hidden]);
    tf.dispose([x, y]);
    m.dispose();
  });

  it('saturates the gate without NaN or overflow (|gate| up to 500)', async () => {
    const [m, k, n] = [5, 4, 12];
    const x = randn(m * k, 64, 20);
    const [wGate, wUp] = [randn(n * k, 65, 10), randn(n * k, 66)];
    for (const act of ['silu', 'gelu_tanh'] as const) {
      const want = gatedProductRef(x, wGate, wUp, m, k, n, act);
      expect(Math.max(...linearRef(x, wGate, null, m, k, n).map(Math.abs))).toBeGreaterThan(100);
      expectClose(await kernel(x, wGate, wUp, m, k, n, act), want, 2e-6, act);
    }
  });

  it('GatedMLP.forward takes it for plain bias-free Linears with silu or gelu_tanh, and matches float64', async () => {
    for (const act of ['silu', 'gelu_tanh'] as const) {
      const m = await gatedWith(act);
      const x = tf.tensor3d(xs, [2, rows / 2, hidden]);
      const before = gatedProducts.count;
      const y = m.forward(x);
      expect(gatedProducts.count - before).toBe(1);
      expect(y.shape).toEqual([2, rows / 2, hidden]);
      expectClose(await take(y), gatedRef(xs, act, false));
      expectNoLeak(() => m.forward(x).dispose());
      x.dispose();
      m.dispose();
    }
  });

  it('keeps the unfused ops for biases, other activations, a delegate, and under a gradient tape', async () => {
    const count = async (m: GatedMLP, want: number[]) => {
      const x = tf.tensor2d(xs, [rows, hidden]);
      const before = gatedProducts.count;
      expectClose(await take(m.forward(x)), want);
      x.dispose();
      m.dispose();
      return gatedProducts.count - before;
    };
    expect(await count(await gatedWith('silu', true), gatedRef(xs, 'silu', true))).toBe(0);
    expect(await count(await gatedWith('gelu'), gatedRef(xs, 'gelu', false))).toBe(0);
    expect(await count(await gatedWith('relu'), gatedRef(xs, 'relu', false))).toBe(0);
    const delegated = await gatedWith('silu');
    const doubled = new DoubledLinear(hidden, inter);
    (delegated.gateProj as Linear).setDelegate(doubled);
    const g = linearRef(xs, checkpointValues(doubled.inner, 'weight'), null, rows, hidden, inter).map((v) => act64.silu(2 * v));
    const u = linearRef(xs, wu, null, rows, hidden, inter);
    const want = linearRef(g.map((v, i) => v * u[i]), wd, null, rows, inter, hidden);
    expect(await count(delegated, want)).toBe(0);
    doubled.dispose();

    // Under a tape the unfused ops run (their gradients reuse the saved products); the gradients are the cpu ones.
    const grads = async () => {
      const m = await gatedWith('silu');
      const x = tf.tensor2d(xs, [rows, hidden]);
      const before = gatedProducts.count;
      const { grads: g } = tf.variableGrads(() => tf.sum(tf.square(m.forward(x))) as tf.Scalar);
      const fused = gatedProducts.count - before;
      const values = (await Promise.all(Object.values(g).map((t) => t.data()))).flatMap((v) => Array.from(v));
      tf.dispose([x, ...Object.values(g)]);
      m.dispose();
      return { fused, values };
    };
    const onWasm = await grads();
    expect(onWasm.fused).toBe(0);
    await initBackend('cpu');
    const onCpu = await grads();
    await initBackend('wasm');
    expectClose(onWasm.values, onCpu.values, 1e-4);
  });

  it("the kernel's registered gradient (recomputed through tfjs ops) matches the unfused ops' gradient", async () => {
    const [m, k, n] = [5, 8, 12];
    const [x, wg2, wu2] = [tf.tensor2d(randn(m * k, 67), [m, k]), tf.tensor2d(randn(k * n, 68), [k, n]), tf.tensor2d(randn(k * n, 69), [k, n])];
    const dy = tf.tensor2d(randn(m * n, 70), [m, n]);
    const fusedGrads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      tf.engine().runKernel(GATED_PRODUCT_KERNEL, { x: a, gate: b, up: c }, { activation: 'gelu_tanh' }) as tf.Tensor,
    )([x, wg2, wu2], dy);
    const opsGrads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
      const gate = tf.matMul(a, b);
      return tf.mul(tf.mul(tf.mul(gate, 0.5), tf.add(tf.tanh(tf.mul(tf.add(gate, tf.mul(tf.pow(gate, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1)), tf.matMul(a, c));
    })([x, wg2, wu2], dy);
    for (let i = 0; i < 3; i++) expectClose(await take(fusedGrads[i]), await take(opsGrads[i]), 1e-4, `input ${i}`);
    tf.dispose([x, wg2, wu2, dy]);
  });
});

describe('MLP', () => {
  function ref(x: number[], act: Activation, bias: boolean): number[] {
    const h = linearRef(x, wg, bias ? bg : null, rows, hidden, inter).map(act64[act]);
    return linearRef(h, wd, bias ? bd : null, rows, inter, hidden);
  }

  for (const [act, bias] of [
    ['gelu_tanh', true],
    ['relu', false],
  ] as [Activation, boolean][]) {
    it(`matches a float64 reference: ${act}${bias ? ' with biases (Phi)' : ''}`, async () => {
      const m = await mlpWith(act, bias);
      const x = tf.tensor3d(xs, [2, rows / 2, hidden]);
      const y = m.forward(x);
      expect(y.shape).toEqual([2, rows / 2, hidden]);
      expectClose(await take(y), ref(xs, act, bias));
      x.dispose();
      m.dispose();
    });
  }

  it('registers fc1 and fc2 with biases by default', () => {
    const m = MLP.create(hidden, inter, { activation: 'gelu_tanh' });
    expect(m.namedParameters().map(([n]) => n)).toEqual(['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    expect(m.activationName).toBe('gelu_tanh');
    m.dispose();
  });

  it('rejects a missing activation, misfitting projections and a wrong last dimension', () => {
    expect(() => MLP.create(hidden, inter, {} as { activation: Activation })).toThrow(ConfigError);
    expect(() => new MLP({ fc1: new Linear(8, 16), fc2: new Linear(12, 8), activation: 'relu' })).toThrow(
      'MLP: fc2.inFeatures must equal fc1.outFeatures = 16, found 12',
    );
    const m = MLP.create(hidden, inter, { activation: 'relu' });
    const x = tf.ones([3, 4]);
    expect(() => m.forward(x)).toThrow(ShapeError);
    x.dispose();
    m.dispose();
  });

  it('leaks no tensors across repeated forwards', async () => {
    const m = await mlpWith('gelu_tanh');
    const x = tf.tensor2d(xs, [rows, hidden]);
    expectNoLeak(() => m.forward(x).dispose());
    x.dispose();
    m.dispose();
  });

  it('gives the cpu output on every backend', async () => {
    const out = await onEveryBackend(async () => {
      const m = await mlpWith('gelu_tanh');
      const x = tf.tensor2d(xs, [rows, hidden]);
      const y = await take(m.forward(x));
      x.dispose();
      m.dispose();
      return y;
    });
    expectBackendsAgree(out);
  });
});
