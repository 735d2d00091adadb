import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
// tfjs-core registers op gradients separately; the package entry does this, these tests import layers directly.
import '../../src/register-gradients.node.js';
import { CheckpointError, ConfigError, ShapeError } from '../../src/errors.js';
import { Linear } from '../../src/layers/linear.js';
import { Module } from '../../src/module.js';
import { expectBackendsAgree, expectClose, expectNoLeak, linearRef, onEveryBackend, randn, take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

/** A Linear whose parameters are the given arrays, loaded through loadWeights. */
async function linearWith(inF: number, outF: number, w: number[], b: number[] | null): Promise<Linear> {
  const lin = new Linear(inF, outF, { bias: b != null });
  const record: Record<string, tf.Tensor> = { weight: tf.tensor2d(w, [outF, inF]) };
  if (b != null) record.bias = tf.tensor1d(b);
  await lin.loadWeights(record);
  tf.dispose(Object.values(record));
  return lin;
}

describe('Linear', () => {
  const inF = 12;
  const outF = 7;
  const w = randn(outF * inF, 1, 0.3);
  const b = randn(outF, 2);

  for (const withBias of [true, false]) {
    for (const shape of [[5, inF], [2, 3, inF]]) {
      it(`matches a float64 reference (${withBias ? 'bias' : 'no bias'}, input [${shape.join(', ')}])`, async () => {
        const lin = await linearWith(inF, outF, w, withBias ? b : null);
        const rows = shape.slice(0, -1).reduce((p, q) => p * q, 1);
        const xs = randn(rows * inF, 3 + shape.length);
        const x = tf.tensor(xs, shape);
        const y = lin.forward(x);
        expect(y.shape).toEqual([...shape.slice(0, -1), outF]);
        expectClose(await take(y), linearRef(xs, w, withBias ? b : null, rows, inF, outF), 1e-5);
        x.dispose();
        lin.dispose();
      });
    }
  }

  it('accepts a rank-1 input', async () => {
    const lin = await linearWith(inF, outF, w, b);
    const xs = randn(inF, 9);
    const x = tf.tensor1d(xs);
    const y = lin.forward(x);
    expect(y.shape).toEqual([outF]);
    expectClose(await take(y), linearRef(xs, w, b, 1, inF, outF));
    x.dispose();
    lin.dispose();
  });

  it('has HF parameter names and checkpoint shapes, and stores the weight [in, out]', () => {
    const lin = new Linear(4, 3);
    expect(lin.checkpointShapes()).toEqual({ weight: [3, 4], bias: [3] });
    expect(lin.namedParameters().map(([n, v]) => [n, v.shape])).toEqual([
      ['weight', [4, 3]], // the compute layout: Wᵀ
      ['bias', [3]],
    ]);
    const noBias = new Linear(4, 3, { bias: false });
    expect(noBias.namedParameters().map(([n]) => n)).toEqual(['weight']);
    expect(noBias.bias).toBeUndefined();
    lin.dispose();
    noBias.dispose();
  });

  it('initialises like PyTorch: uniform within ±1/sqrt(in), reproducible with a seed', () => {
    const a = new Linear(64, 32, { seed: 5 });
    const a2 = new Linear(64, 32, { seed: 5 });
    const c = new Linear(64, 32, { seed: 6 });
    const wa = Array.from(a.weight.dataSync());
    const ba = Array.from(a.bias!.dataSync());
    const bound = 1 / Math.sqrt(64);
    expect(Math.max(...wa.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...ba.map(Math.abs))).toBeLessThanOrEqual(bound);
    // Uniform on ±bound has standard deviation bound/sqrt(3); 2048 draws pin it to a few percent.
    const std = Math.sqrt(wa.reduce((s, v) => s + v * v, 0) / wa.length);
    expect(std).toBeGreaterThan((bound / Math.sqrt(3)) * 0.9);
    expect(std).toBeLessThan((bound / Math.sqrt(3)) * 1.1);
    expect(Array.from(a2.weight.dataSync())).toEqual(wa);
    expect(Array.from(c.weight.dataSync())).not.toEqual(wa);
    expect(ba).not.toEqual(wa.slice(0, 32)); // the bias is not the weight's first draws again
    [a, a2, c].forEach((m) => m.dispose());
  });

  it('draws the same [out, in] weight for a seed as when it was stored that way', async () => {
    const lin = new Linear(5, 3, { seed: 17, bias: false });
    const drawn = tf.randomUniform([3, 5], -1 / Math.sqrt(5), 1 / Math.sqrt(5), 'float32', 17);
    const state = lin.stateDict();
    expect(Array.from(await state.weight.data())).toEqual(Array.from(await drawn.data()));
    tf.dispose([drawn, ...Object.values(state)]);
    lin.dispose();
  });

  it('loadWeights sets the values; a wrong shape fails with CheckpointError and changes nothing', async () => {
    const lin = new Linear(3, 2, { seed: 1 });
    const before = Array.from(lin.weight.dataSync());
    const bad = { weight: tf.ones([3, 2]), bias: tf.zeros([2]) }; // transposed: [in, out]
    const err = await lin.loadWeights(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as CheckpointError).problems).toEqual([
      { kind: 'shape', name: 'weight', message: 'weight: expected shape [2, 3], found [3, 2]' },
    ]);
    expect(Array.from(lin.weight.dataSync())).toEqual(before);
    const good = { weight: tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]), bias: tf.tensor1d([0.5, -0.5]) };
    await lin.loadWeights(good);
    expect(lin.weight.shape).toEqual([3, 2]);
    expect(Array.from(lin.weight.dataSync())).toEqual([1, 4, 2, 5, 3, 6]); // [in, out]
    expect(Array.from(lin.bias!.dataSync())).toEqual([0.5, -0.5]);
    const state = lin.stateDict();
    expect(state.weight.shape).toEqual([2, 3]);
    expect(Array.from(state.weight.dataSync())).toEqual([1, 2, 3, 4, 5, 6]); // back in HF's [out, in]
    tf.dispose([...Object.values(bad), ...Object.values(good), ...Object.values(state)]);
    lin.dispose();
  });

  it('reports every mis-shaped tensor in checkpoint shapes, a Linear inside a module included', async () => {
    const lin = new Linear(5, 2, { bias: true });
    const bad = { weight: tf.zeros([2, 4]), bias: tf.zeros([5]) };
    const err = (await lin.loadWeights(bad).catch((e: unknown) => e)) as CheckpointError;
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.problems.map((p) => p.message)).toEqual([
      'weight: expected shape [2, 5], found [2, 4]',
      'bias: expected shape [2], found [5]',
    ]);
    tf.dispose(Object.values(bad));
    lin.dispose();
  });

  it('leaks nothing loading (a cast and a transpose) or giving its state dict', async () => {
    const lin = new Linear(4, 3);
    const record = { weight: tf.ones([3, 4], 'int32'), bias: tf.ones([3]) };
    const before = tf.memory().numTensors;
    await lin.loadWeights(record);
    tf.dispose(Object.values(lin.stateDict()));
    expect(tf.memory().numTensors).toBe(before);
    expect(Array.from(lin.weight.dataSync())).toEqual(new Array(12).fill(1));
    tf.dispose(Object.values(record));
    lin.dispose();
  });

  it('rejects a wrong last dimension, a scalar and a non-float input with ShapeError', () => {
    const lin = new Linear(4, 2);
    const x = tf.ones([3, 5]);
    expect(() => lin.forward(x)).toThrow(ShapeError);
    expect(() => lin.forward(x)).toThrow("Linear: input's last dimension must be inFeatures = 4, found 5 (input shape [3, 5])");
    const s = tf.scalar(1);
    expect(() => lin.forward(s)).toThrow(/found a scalar/);
    const i = tf.ones([3, 4], 'int32');
    expect(() => lin.forward(i)).toThrow(/must be float32, found int32/);
    tf.dispose([x, s, i]);
    lin.dispose();
  });

  it('rejects bad options with ConfigError naming the option', () => {
    expect(() => new Linear(0, 4)).toThrow(ConfigError);
    expect(() => new Linear(0, 4)).toThrow('Linear: inFeatures must be a positive integer, found 0');
    expect(() => new Linear(4, -1)).toThrow('Linear: outFeatures must be a positive integer, found -1');
    expect(() => new Linear(2.5, 4)).toThrow(/inFeatures must be a positive integer, found 2.5/);
    expect(() => new Linear(NaN, 4)).toThrow(/found NaN/);
    expect(() => new Linear('4' as unknown as number, 4)).toThrow(/inFeatures must be a positive integer/);
    expect(() => new Linear(4, 4, { bias: 'yes' as unknown as boolean })).toThrow('Linear: bias must be a boolean, found yes');
    expect(() => new Linear(4, 4, { seed: Infinity })).toThrow(/seed must be a finite number/);
  });

  it('gradients reach the weight and the bias', () => {
    const lin = new Linear(3, 2, { seed: 3 });
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const { value, grads } = tf.variableGrads(() => tf.sum(lin.forward(x)) as tf.Scalar, lin.parameters());
    // d/dW sum(x Wᵀ + b) = column sums of x per output row; d/db = number of rows. The variable is Wᵀ [in, out].
    expect(grads[lin.weight.name].shape).toEqual([3, 2]);
    expect(Array.from(grads[lin.weight.name].dataSync())).toEqual([5, 5, 7, 7, 9, 9]);
    expect(Array.from(grads[lin.bias!.name].dataSync())).toEqual([2, 2]);
    tf.dispose([value, x, ...Object.values(grads)]);
    lin.dispose();
  });

  it('leaks no tensors across repeated forwards', () => {
    const lin = new Linear(6, 4, { seed: 2 });
    const x = tf.randomNormal([2, 3, 6]);
    expectNoLeak(() => lin.forward(x).dispose());
    x.dispose();
    lin.dispose();
  });

  it('gives the cpu output on every backend', async () => {
    const xs = randn(2 * 3 * inF, 11);
    const out = await onEveryBackend(async () => {
      const lin = await linearWith(inF, outF, w, b);
      const x = tf.tensor(xs, [2, 3, inF]);
      const y = await take(lin.forward(x));
      x.dispose();
      lin.dispose();
      return y;
    });
    expectBackendsAgree(out);
  });
});

describe('Linear delegate', () => {
  class Scaled extends Module {
    readonly inFeatures: number;
    readonly outFeatures: number;
    constructor(readonly base: Linear, readonly factor: number) {
      super();
      this.inFeatures = base.inFeatures;
      this.outFeatures = base.outFeatures;
    }
    forward(x: tf.Tensor): tf.Tensor {
      return tf.tidy(() => tf.mul(this.base.affine(x), this.factor));
    }
  }

  it('hands forward to the delegate, affine ignores it, and undefined restores the layer', async () => {
    const lin = await linearWith(3, 2, [1, 2, 3, 4, 5, 6], [0.5, -0.5]);
    const x = tf.tensor2d([[1, 0, -1]]);
    expect(lin.delegate).toBeUndefined();
    const plain = await take(lin.forward(x));
    lin.setDelegate(new Scaled(lin, 3));
    expect(lin.delegate).toBeInstanceOf(Scaled);
    expectClose(await take(lin.forward(x)), Array.from(plain, (v) => 3 * v));
    expectClose(await take(lin.affine(x)), plain);
    lin.setDelegate(undefined);
    expectClose(await take(lin.forward(x)), plain);
    expectClose(plain, [1 - 3 + 0.5, 4 - 6 - 0.5]);
    x.dispose();
    lin.dispose();
  });

  it('rejects itself, a non-projection and a delegate of other widths', () => {
    const lin = new Linear(3, 2);
    expect(() => lin.setDelegate(lin)).toThrow(ConfigError);
    expect(() => lin.setDelegate({} as never)).toThrow(ConfigError);
    const other = new Linear(3, 4);
    expect(() => lin.setDelegate(new Scaled(other, 2))).toThrow(/maps \[3 -> 4\], this layer \[3 -> 2\]/);
    expect(lin.delegate).toBeUndefined();
    other.dispose();
    lin.dispose();
  });
});
