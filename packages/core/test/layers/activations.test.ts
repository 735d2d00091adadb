import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { ConfigError } from '../../src/errors.js';
import {
  ACTIVATIONS,
  HF_ACTIVATIONS,
  activation,
  activationFromHF,
  type Activation,
} from '../../src/layers/activations.js';
import { act64, erf64, expectClose, expectNoLeak, onEveryBackend, randn, take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const POINTS = [0, 1, -1, 0.5, -0.5, 3, -3, 6, -6, 10, -10, 30, -30, 100, -100, 1e4, -1e4];

describe('the float64 erf of the test helper', () => {
  it('matches tabulated values to 1e-14', () => {
    // erf values from Abramowitz & Stegun table 7.1 / high-precision references.
    const table: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [1.5, 0.9661051464753108],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
      [4, 0.9999999845827421],
      [-1, -0.8427007929497149],
    ];
    for (const [x, e] of table) expect(Math.abs(erf64(x) - e)).toBeLessThan(1e-14);
  });
});

describe('activation', () => {
  for (const name of ACTIVATIONS) {
    it(`${name} matches its float64 formula at hand-picked points (0, ±1, ±3, large values)`, async () => {
      const x = tf.tensor1d(POINTS);
      const y = activation(name)(x);
      expect(y.shape).toEqual([POINTS.length]);
      // tolerance 1e-5 absolute for |y| ≤ 1, relative beyond (float32 cannot hold 1e8 to 1e-5)
      expectClose(await take(y), POINTS.map(act64[name]), 1e-5, name);
      x.dispose();
    });

    it(`${name} matches its float64 formula on random inputs`, async () => {
      const xs = randn(200, 31, 3);
      const x = tf.tensor2d(xs, [20, 10]);
      const y = activation(name)(x);
      expect(y.shape).toEqual([20, 10]);
      expectClose(await take(y), xs.map(act64[name]), 1e-5, name);
      x.dispose();
    });
  }

  it('gives the expected values at a glance', async () => {
    const x = tf.tensor1d([-2, 2]);
    const f = (n: Activation) => take(activation(n)(x));
    expect(await f('relu')).toEqual([0, 2]);
    expect(await f('relu2')).toEqual([0, 4]);
    expectClose(await f('silu'), [-0.23840584404423515, 1.7615941559557646]);
    expectClose(await f('gelu'), [-0.04550026389635842, 1.9544997361036416]);
    expectClose(await f('gelu_tanh'), [-0.04540230591222, 1.95459769408778]);
    x.dispose();
  });

  it('does not produce NaN or Infinity at extreme inputs, on any backend', async () => {
    const extremes = [-3e38, -1e20, 1e20, 3e38];
    const out = await onEveryBackend(async () => {
      const x = tf.tensor1d(extremes);
      const results: number[] = [];
      for (const name of ACTIVATIONS) {
        const y = await take(activation(name)(x));
        // relu2 of a positive 1e20 is 1e40, beyond float32: only its negative side must stay finite.
        results.push(...(name === 'relu2' ? y.slice(0, 2) : y));
      }
      x.dispose();
      return results;
    });
    for (const [name, values] of Object.entries(out)) {
      expect(values.every(Number.isFinite), `${name}: ${values}`).toBe(true);
      expectClose(values, out.cpu, 1e-5, name);
    }
  });

  it('rejects an unknown name with ConfigError listing the accepted names', () => {
    expect(() => activation('tanh' as Activation)).toThrow(ConfigError);
    expect(() => activation('tanh' as Activation)).toThrow(
      'activation: unknown activation "tanh"; expected one of silu, gelu, gelu_tanh, relu, relu2',
    );
    expect(() => activation('toString' as Activation)).toThrow(ConfigError);
  });

  it('leaks no tensors across repeated calls', () => {
    const x = tf.randomNormal([4, 8]);
    for (const name of ACTIVATIONS) {
      const f = activation(name);
      expectNoLeak(() => f(x).dispose());
    }
    x.dispose();
  });

  it('gives the cpu output on every backend', async () => {
    const xs = [...POINTS.filter((p) => Math.abs(p) <= 30), ...randn(16, 33, 2)];
    const out = await onEveryBackend(async () => {
      const x = tf.tensor1d(xs);
      const results: number[] = [];
      for (const name of ACTIVATIONS) results.push(...(await take(activation(name)(x))));
      x.dispose();
      return results;
    });
    // Relative beyond magnitude 1: relu2 reaches 900 at x = 30.
    for (const [name, values] of Object.entries(out)) expectClose(values, out.cpu, 1e-5, name);
  });
});

describe('activationFromHF', () => {
  it('maps Hugging Face hidden_act names to the activation with the same maths', () => {
    expect(activationFromHF('silu')).toBe('silu');
    expect(activationFromHF('swish')).toBe('silu');
    expect(activationFromHF('gelu')).toBe('gelu');
    expect(activationFromHF('gelu_python')).toBe('gelu');
    expect(activationFromHF('gelu_new')).toBe('gelu_tanh');
    expect(activationFromHF('gelu_pytorch_tanh')).toBe('gelu_tanh');
    expect(activationFromHF('gelu_accurate')).toBe('gelu_tanh');
    expect(activationFromHF('gelu_fast')).toBe('gelu_tanh');
    expect(activationFromHF('relu')).toBe('relu');
    expect(activationFromHF('relu2')).toBe('relu2');
    for (const target of Object.values(HF_ACTIVATIONS)) expect(ACTIVATIONS).toContain(target);
  });

  it('gelu_fast is the same float32 function as gelu_tanh', async () => {
    // HF FastGELU: 0.5x(1 + tanh(x · 0.7978845608 · (1 + 0.044715x²))); its constant rounds to fround(√(2/π)).
    expect(Math.fround(0.7978845608)).toBe(Math.fround(Math.sqrt(2 / Math.PI)));
    const fast = (x: number) => 0.5 * x * (1 + Math.tanh(x * 0.7978845608 * (1 + 0.044715 * x * x)));
    const xs = randn(100, 35, 3);
    const x = tf.tensor1d(xs);
    expectClose(await take(activation(activationFromHF('gelu_fast'))(x)), xs.map(fast), 1e-5);
    x.dispose();
  });

  it('rejects other names with ConfigError naming the value and listing the accepted ones', () => {
    for (const bad of ['quick_gelu', 'gelu_10', 'relu6', 'tanh', 'SiLU', '', 'constructor']) {
      expect(() => activationFromHF(bad)).toThrow(ConfigError);
    }
    let err: unknown;
    try {
      activationFromHF('quick_gelu');
    } catch (e) {
      err = e;
    }
    expect((err as ConfigError).message).toBe(
      'hidden_act: unsupported activation "quick_gelu"; expected one of silu, swish, gelu, gelu_python, gelu_new, ' +
        'gelu_pytorch_tanh, gelu_accurate, gelu_fast, relu, relu2',
    );
    expect((err as ConfigError).details).toMatchObject({ field: 'hidden_act', found: 'quick_gelu' });
  });
});
