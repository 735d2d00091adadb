import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import '../../src/register-gradients.node.js';
import { initBackend } from '../../src/backend.js';
import { ConfigError, ShapeError } from '../../src/errors.js';
import { LayerNorm, RMSNorm, type LayerNormOptions, type RMSNormOptions } from '../../src/layers/norm.js';
import { expectBackendsAgree, expectClose, expectNoLeak, layerNormRef, onEveryBackend, randn, rmsNormRef, take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const dim = 10;
const rows = 6;
const w = randn(dim, 21, 0.5);
const b = randn(dim, 22);
// Rows of different scales and offsets, so the per-row statistics matter.
const xs = randn(rows * dim, 23).map((v, i) => Math.fround(v * (1 + Math.floor(i / dim)) + 0.3 * Math.floor(i / dim)));

async function rms(options: RMSNormOptions): Promise<RMSNorm> {
  const n = new RMSNorm(dim, options);
  if (n.weight != null) {
    const t = { weight: tf.tensor1d(w) };
    await n.loadWeights(t);
    t.weight.dispose();
  }
  return n;
}

async function ln(options: LayerNormOptions): Promise<LayerNorm> {
  const n = new LayerNorm(dim, options);
  const record: Record<string, tf.Tensor> = {};
  if (n.weight != null) record.weight = tf.tensor1d(w);
  if (n.bias != null) record.bias = tf.tensor1d(b);
  await n.loadWeights(record);
  tf.dispose(Object.values(record));
  return n;
}

describe('RMSNorm', () => {
  const cases: [string, RMSNormOptions, (x: number[]) => number[]][] = [
    ['scale w (Llama)', { eps: 1e-6 }, (x) => rmsNormRef(x, w, dim, 1e-6)],
    ['unit offset 1 + w (Gemma)', { eps: 1e-6, unitOffset: true }, (x) => rmsNormRef(x, w, dim, 1e-6, true)],
    ['no weight (Falcon-Mamba)', { eps: 1e-6, elementwiseAffine: false }, (x) => rmsNormRef(x, null, dim, 1e-6)],
    ['large eps', { eps: 0.5 }, (x) => rmsNormRef(x, w, dim, 0.5)],
  ];
  for (const [label, options, ref] of cases) {
    it(`matches a float64 reference: ${label}`, async () => {
      const n = await rms(options);
      const x = tf.tensor(xs, [2, rows / 2, dim]);
      const y = n.forward(x);
      expect(y.shape).toEqual([2, rows / 2, dim]);
      expectClose(await take(y), ref(xs));
      x.dispose();
      n.dispose();
    });
  }

  it('matches the reference past the kernel\'s 8 rows too (tfjs ops), on cpu and wasm', async () => {
    for (const backend of ['cpu', 'wasm'] as const) {
      await initBackend(backend);
      const n = await rms({ eps: 1e-6, unitOffset: true });
      const x = tf.tensor([...xs, ...xs], [2 * rows, dim]); // 12 rows
      expectClose(await take(n.forward(x)), rmsNormRef([...xs, ...xs], w, dim, 1e-6, true));
      x.dispose();
      n.dispose();
    }
    await initBackend('cpu');
  });

  it('initialises to the identity scale: ones, or zeros with unitOffset; weightless has no parameter', () => {
    const plain = new RMSNorm(4, { eps: 1e-5 });
    const gemma = new RMSNorm(4, { eps: 1e-5, unitOffset: true });
    const bare = new RMSNorm(4, { eps: 1e-5, elementwiseAffine: false });
    expect(plain.namedParameters().map(([n]) => n)).toEqual(['weight']);
    expect(Array.from(plain.weight!.dataSync())).toEqual([1, 1, 1, 1]);
    expect(Array.from(gemma.weight!.dataSync())).toEqual([0, 0, 0, 0]);
    expect(bare.namedParameters()).toEqual([]);
    const x = tf.tensor2d([1, -2, 3, 0.5], [1, 4]);
    const [a, g, c] = [plain, gemma, bare].map((n) => n.forward(x));
    expect(Array.from(g.dataSync())).toEqual(Array.from(a.dataSync()));
    expect(Array.from(c.dataSync())).toEqual(Array.from(a.dataSync()));
    tf.dispose([x, a, g, c]);
    [plain, gemma, bare].forEach((n) => n.dispose());
  });

  it('rejects bad options with ConfigError naming the option', () => {
    expect(() => new RMSNorm(0, { eps: 1e-6 })).toThrow('RMSNorm: dim must be a positive integer, found 0');
    expect(() => new RMSNorm(3.5, { eps: 1e-6 })).toThrow(ConfigError);
    expect(() => new RMSNorm(4, { eps: 0 })).toThrow('RMSNorm: eps must be a finite number > 0, found 0');
    expect(() => new RMSNorm(4, { eps: -1e-6 })).toThrow(/eps must be a finite number > 0, found -0.000001/);
    expect(() => new RMSNorm(4, { eps: NaN })).toThrow(/found NaN/);
    expect(() => new RMSNorm(4, {} as RMSNormOptions)).toThrow(/eps must be a finite number > 0, found undefined/);
    expect(() => new RMSNorm(4, undefined as unknown as RMSNormOptions)).toThrow(ConfigError);
    expect(() => new RMSNorm(4, { eps: 1e-6, unitOffset: 1 as unknown as boolean })).toThrow(
      'RMSNorm: unitOffset must be a boolean, found 1',
    );
    expect(() => new RMSNorm(4, { eps: 1e-6, unitOffset: true, elementwiseAffine: false })).toThrow(
      /unitOffset needs a weight/,
    );
  });

  it('rejects a wrong last dimension with ShapeError', () => {
    const n = new RMSNorm(4, { eps: 1e-6 });
    const x = tf.ones([2, 3]);
    expect(() => n.forward(x)).toThrow(ShapeError);
    expect(() => n.forward(x)).toThrow("RMSNorm: input's last dimension must be dim = 4, found 3 (input shape [2, 3])");
    x.dispose();
    n.dispose();
  });

  it('leaks no tensors across repeated forwards', async () => {
    for (const options of [{ eps: 1e-6 }, { eps: 1e-6, unitOffset: true }, { eps: 1e-6, elementwiseAffine: false }]) {
      const n = await rms(options);
      const x = tf.tensor(xs, [rows, dim]);
      expectNoLeak(() => n.forward(x).dispose());
      x.dispose();
      n.dispose();
    }
  });

  it('its kernel (cpu, wasm) has the gradients of the formula in tfjs ops, for x and the weight', async () => {
    for (const backend of ['cpu', 'wasm'] as const) {
      await initBackend(backend);
      for (const options of [{ eps: 1e-6 }, { eps: 1e-3, unitOffset: true }, { eps: 1e-6, elementwiseAffine: false }] as RMSNormOptions[]) {
        const n = await rms(options);
        const x = tf.tensor(xs, [rows, dim]);
        const dy = tf.tensor(randn(rows * dim, 24), [rows, dim]);
        const formula = (v: tf.Tensor, weight: tf.Tensor | undefined): tf.Tensor => {
          const y = tf.mul(v, tf.rsqrt(tf.add(tf.mean(tf.square(v), -1, true), options.eps)));
          return weight == null ? y : tf.mul(y, options.unitOffset ? tf.add(weight, 1) : weight);
        };
        const gotX = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(n.forward(v), dy)))(x);
        const wantX = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(formula(v, n.weight), dy)))(x);
        expectClose(await take(gotX), await take(wantX), 1e-5);
        if (n.weight != null) {
          const got = tf.variableGrads(() => tf.sum(tf.mul(n.forward(x), dy)) as tf.Scalar, [n.weight]);
          const wantW = tf.grad((w: tf.Tensor) => tf.sum(tf.mul(formula(x, w), dy)))(n.weight);
          expectClose(await take(got.grads[n.weight.name]), await take(wantW), 1e-5);
          got.value.dispose();
        }
        tf.dispose([x, dy]);
        n.dispose();
      }
    }
    await initBackend('cpu');
  });

  it('gives the cpu output on every backend', async () => {
    const out = await onEveryBackend(async () => {
      const results: number[] = [];
      for (const options of [{ eps: 1e-6 }, { eps: 1e-6, unitOffset: true }, { eps: 1e-6, elementwiseAffine: false }]) {
        const n = await rms(options);
        const x = tf.tensor(xs, [rows, dim]);
        results.push(...(await take(n.forward(x))));
        x.dispose();
        n.dispose();
      }
      return results;
    });
    expectBackendsAgree(out);
  });
});

describe('LayerNorm', () => {
  const cases: [string, LayerNormOptions, (x: number[]) => number[]][] = [
    ['weight and bias (StableLM, Phi)', { eps: 1e-5 }, (x) => layerNormRef(x, w, b, dim, 1e-5)],
    ['weight, no bias', { eps: 1e-5, bias: false }, (x) => layerNormRef(x, w, null, dim, 1e-5)],
    ['no affine', { eps: 1e-5, elementwiseAffine: false }, (x) => layerNormRef(x, null, null, dim, 1e-5)],
    ['large eps', { eps: 0.25 }, (x) => layerNormRef(x, w, b, dim, 0.25)],
  ];
  for (const [label, options, ref] of cases) {
    it(`matches a float64 reference: ${label}`, async () => {
      const n = await ln(options);
      const x = tf.tensor(xs, [rows, dim]);
      const y = n.forward(x);
      expect(y.shape).toEqual([rows, dim]);
      expectClose(await take(y), ref(xs));
      x.dispose();
      n.dispose();
    });
  }

  it('uses the biased variance, like torch.nn.LayerNorm', () => {
    // Row [1, 3]: mean 2, biased variance 1 (unbiased would be 2), so y = [-1, 1] / sqrt(1 + eps).
    const n = new LayerNorm(2, { eps: 1e-5 });
    const x = tf.tensor2d([1, 3], [1, 2]);
    const y = n.forward(x);
    expectClose(Array.from(y.dataSync()), [-1 / Math.sqrt(1 + 1e-5), 1 / Math.sqrt(1 + 1e-5)], 1e-6);
    tf.dispose([x, y]);
    n.dispose();
  });

  it('has parameters weight (ones) and bias (zeros), as the options ask', () => {
    const both = new LayerNorm(3, { eps: 1e-5 });
    expect(both.namedParameters().map(([n, v]) => [n, Array.from(v.dataSync())])).toEqual([
      ['weight', [1, 1, 1]],
      ['bias', [0, 0, 0]],
    ]);
    const noBias = new LayerNorm(3, { eps: 1e-5, bias: false });
    expect(noBias.namedParameters().map(([n]) => n)).toEqual(['weight']);
    const none = new LayerNorm(3, { eps: 1e-5, elementwiseAffine: false });
    expect(none.namedParameters()).toEqual([]);
    [both, noBias, none].forEach((n) => n.dispose());
  });

  it('rejects bad options with ConfigError and a wrong last dimension with ShapeError', () => {
    expect(() => new LayerNorm(-2, { eps: 1e-5 })).toThrow('LayerNorm: dim must be a positive integer, found -2');
    expect(() => new LayerNorm(4, { eps: 0 })).toThrow('LayerNorm: eps must be a finite number > 0, found 0');
    expect(() => new LayerNorm(4, { eps: Infinity })).toThrow(ConfigError);
    expect(() => new LayerNorm(4, { eps: 1e-5, bias: 'no' as unknown as boolean })).toThrow(
      'LayerNorm: bias must be a boolean, found no',
    );
    const n = new LayerNorm(4, { eps: 1e-5 });
    const x = tf.ones([4, 5]);
    expect(() => n.forward(x)).toThrow(ShapeError);
    expect(() => n.forward(x)).toThrow(/last dimension must be dim = 4, found 5/);
    x.dispose();
    n.dispose();
  });

  it('leaks no tensors across repeated forwards', async () => {
    const n = await ln({ eps: 1e-5 });
    const x = tf.tensor(xs, [rows, dim]);
    expectNoLeak(() => n.forward(x).dispose());
    x.dispose();
    n.dispose();
  });

  it('gives the cpu output on every backend', async () => {
    const out = await onEveryBackend(async () => {
      const results: number[] = [];
      for (const options of [{ eps: 1e-5 }, { eps: 1e-5, bias: false }, { eps: 1e-5, elementwiseAffine: false }]) {
        const n = await ln(options);
        const x = tf.tensor(xs, [rows, dim]);
        results.push(...(await take(n.forward(x))));
        x.dispose();
        n.dispose();
      }
      return results;
    });
    expectBackendsAgree(out);
  });
});
