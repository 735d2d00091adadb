import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
// tfjs-core registers op gradients separately; the package entry does this, these tests import layers directly.
import '../../src/register-gradients.node.js';
import { BackendError, CheckpointError, ConfigError, ShapeError } from '../../src/errors.js';
import { Embedding } from '../../src/layers/embedding.js';
import {
  backends,
  expectBackendsAgree,
  expectClose,
  expectNoLeak,
  checkpointValues,
  linearRef,
  onEveryBackend,
  randInts,
  randn,
  take,
} from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const num = 11;
const dim = 6;
const table = randn(num * dim, 41);

async function embeddingWith(values = table, options = {}): Promise<Embedding> {
  const e = new Embedding(num, dim, options);
  const t = { weight: tf.tensor2d(values, [num, dim]) };
  await e.loadWeights(t);
  t.weight.dispose();
  return e;
}

/** Rows of `table` for `ids`, concatenated. */
function lookupRef(ids: number[]): number[] {
  return ids.flatMap((id) => table.slice(id * dim, (id + 1) * dim));
}

describe('Embedding', () => {
  it('looks up rows for rank-1 and rank-2 ids (every id, the first and the last included)', async () => {
    const e = await embeddingWith();
    const ids1 = [0, num - 1, 3, 3, 7];
    const t1 = tf.tensor1d(ids1, 'int32');
    const y1 = e.forward(t1);
    expect(y1.shape).toEqual([5, dim]);
    expect(await take(y1)).toEqual(lookupRef(ids1));
    const ids2 = randInts(2 * 4, 42, num);
    const t2 = tf.tensor2d(ids2, [2, 4], 'int32');
    const y2 = e.forward(t2);
    expect(y2.shape).toEqual([2, 4, dim]);
    expect(await take(y2)).toEqual(lookupRef(ids2));
    tf.dispose([t1, t2]);
    e.dispose();
  });

  it('attend computes the tied-head logits x Wᵀ against a float64 reference', async () => {
    const e = await embeddingWith();
    const xs = randn(2 * 3 * dim, 43);
    const x = tf.tensor3d(xs, [2, 3, dim]);
    const logits = e.attend(x);
    expect(logits.shape).toEqual([2, 3, num]);
    expectClose(await take(logits), linearRef(xs, table, null, 6, dim, num));
    x.dispose();
    e.dispose();
  });

  it('rejects out-of-range ids with a ShapeError naming the id and the valid range', () => {
    const e = new Embedding(num, dim, { seed: 1 });
    const high = tf.tensor2d([[1, 2], [num, 0]], undefined, 'int32');
    expect(() => e.forward(high)).toThrow(ShapeError);
    expect(() => e.forward(high)).toThrow(
      `Embedding: token id ${num} at position [1, 0] is out of range [0, ${num - 1}] ` +
        `(ids range from 0 to ${num}; numEmbeddings = ${num})`,
    );
    const low = tf.tensor1d([3, -1], 'int32');
    expect(() => e.forward(low)).toThrow(/token id -1 at position \[1\] is out of range \[0, 10\]/);
    const err = (() => {
      try {
        e.forward(high);
      } catch (x) {
        return x as ShapeError;
      }
    })();
    expect(err!.details).toEqual({ field: 'ids', expected: 'ids in [0, 10]', found: { id: num, min: 0, max: num } });
    tf.dispose([high, low]);
    e.dispose();
  });

  it('rejects out-of-range ids on every backend (WebGPU would return zeros silently)', async () => {
    const names = await backends();
    try {
      for (const name of names) {
        await initBackend(name as 'cpu');
        const e = new Embedding(num, dim, { seed: 1 });
        const ids = tf.tensor1d([0, num + 5], 'int32');
        const before = tf.memory().numTensors;
        expect(() => e.forward(ids), name).toThrow(/token id 16 at position \[1\] is out of range \[0, 10\]/);
        expect(tf.memory().numTensors, `${name}: the check leaks nothing`).toBe(before);
        ids.dispose();
        e.dispose();
      }
    } finally {
      await initBackend('cpu');
    }
  });

  it('checks ids computed on the device through validateIds, on every backend', async () => {
    const names = await backends();
    try {
      for (const name of names) {
        await initBackend(name as 'cpu');
        const e = new Embedding(num, dim, { seed: 1 });
        const host = tf.tensor1d([3, 9], 'int32');
        const onDevice = tf.add(host, tf.scalar(2, 'int32')); // [5, 11]: 11 is out of range
        await expect(e.validateIds(onDevice), name).rejects.toThrow(/token id 11 at position \[1\]/);
        const good = tf.sub(host, tf.scalar(1, 'int32')); // [2, 8]
        if (name === 'webgpu') {
          // Node's WebGPU cannot read device data synchronously: a clear error, not a silent lookup. (Above 1000
          // elements the WebGPU backend stops running small ops on its CPU fallback, so this lives on the GPU.)
          const gpuOnly = tf.tidy(() => tf.sub(tf.fill([1200], 3, 'int32'), tf.scalar(1, 'int32')));
          expect(() => e.forward(gpuOnly)).toThrow(BackendError);
          expect(() => e.forward(gpuOnly)).toThrow(/await embedding.validateIds\(ids\)/);
          await e.validateIds(gpuOnly);
          const z = e.forward(gpuOnly);
          expect(z.shape).toEqual([1200, dim]);
          tf.dispose([gpuOnly, z]);
        }
        await e.validateIds(good);
        const y = e.forward(good); // the host copy validateIds left makes the check free
        expect(y.shape).toEqual([2, dim]);
        tf.dispose([host, onDevice, good, y]);
        e.dispose();
      }
    } finally {
      await initBackend('cpu');
    }
  });

  it('rejects non-int32 ids and a wrong attend width with ShapeError', () => {
    const e = new Embedding(num, dim, { seed: 1 });
    const f = tf.tensor1d([1, 2]);
    expect(() => e.forward(f)).toThrow('Embedding: ids must be int32, found float32');
    const x = tf.ones([2, dim + 1]);
    expect(() => e.attend(x)).toThrow(ShapeError);
    expect(() => e.attend(x)).toThrow(/last dimension dim = 6, found float32 last dimension 7/);
    tf.dispose([f, x]);
    e.dispose();
  });

  it('accepts empty ids', () => {
    const e = new Embedding(num, dim, { seed: 1 });
    const ids = tf.tensor2d([], [2, 0], 'int32');
    const y = e.forward(ids);
    expect(y.shape).toEqual([2, 0, dim]);
    tf.dispose([ids, y]);
    e.dispose();
  });

  it('with checkIds false, does not read the ids back', async () => {
    const e = await embeddingWith(table, { checkIds: false });
    const ids = tf.tensor1d([2, 4], 'int32');
    const spy = { reads: 0 };
    const original = tf.Tensor.prototype.dataSync;
    tf.Tensor.prototype.dataSync = function (this: tf.Tensor) {
      spy.reads++;
      return original.call(this);
    } as typeof original;
    let y: tf.Tensor;
    try {
      y = e.forward(ids);
    } finally {
      tf.Tensor.prototype.dataSync = original;
    }
    expect(spy.reads).toBe(0);
    expect(await take(y)).toEqual(lookupRef([2, 4]));
    ids.dispose();
    e.dispose();
  });

  it('has the parameter weight [num, dim] (stored [dim, num]), standard normal and reproducible with a seed', () => {
    const a = new Embedding(200, 16, { seed: 9 });
    const b = new Embedding(200, 16, { seed: 9 });
    expect(a.checkpointShapes()).toEqual({ weight: [200, 16] });
    expect(a.namedParameters().map(([n, v]) => [n, v.shape])).toEqual([['weight', [16, 200]]]);
    const v = Array.from(a.weight.dataSync());
    expect(Array.from(b.weight.dataSync())).toEqual(v);
    // The same table for a seed as when it was stored [num, dim].
    const drawn = tf.randomNormal([200, 16], 0, 1, 'float32', 9);
    expect(checkpointValues(a, 'weight')).toEqual(Array.from(drawn.dataSync()));
    drawn.dispose();
    const mean = v.reduce((s, t) => s + t, 0) / v.length;
    const std = Math.sqrt(v.reduce((s, t) => s + (t - mean) ** 2, 0) / v.length);
    expect(Math.abs(mean)).toBeLessThan(0.1);
    expect(std).toBeGreaterThan(0.9);
    expect(std).toBeLessThan(1.1);
    a.dispose();
    b.dispose();
  });

  it('loadWeights rejects a wrong shape with CheckpointError', async () => {
    const e = new Embedding(num, dim);
    const bad = { weight: tf.zeros([dim, num]) };
    await expect(e.loadWeights(bad)).rejects.toThrow(CheckpointError);
    await expect(e.loadWeights(bad)).rejects.toThrow(/weight: expected shape \[11, 6\], found \[6, 11\]/);
    bad.weight.dispose();
    e.dispose();
  });

  it('rejects bad options with ConfigError naming the option', () => {
    expect(() => new Embedding(0, 4)).toThrow('Embedding: numEmbeddings must be a positive integer, found 0');
    expect(() => new Embedding(10, 1.5)).toThrow('Embedding: dim must be a positive integer, found 1.5');
    expect(() => new Embedding(10, 4, { checkIds: 'no' as unknown as boolean })).toThrow(ConfigError);
    expect(() => new Embedding(10, 4, { seed: NaN })).toThrow(/seed must be a finite number/);
  });

  it('the tied head follows every change of the table: a load, an assign, an optimiser step', async () => {
    const e = await embeddingWith();
    const x = tf.tensor2d(randn(3 * dim, 46), [3, dim]);
    const before = tf.memory().numTensors;
    const logits = async () => take(e.attend(x));
    const reference = (t: number[]) => linearRef(Array.from(x.dataSync()), t, null, 3, dim, num);
    expectClose(await logits(), reference(table));
    // loadWeights
    const other = randn(num * dim, 47);
    const record = { weight: tf.tensor2d(other, [num, dim]) };
    await e.loadWeights(record);
    record.weight.dispose();
    expectClose(await logits(), reference(other));
    // assign in the compute layout [dim, num]
    const doubled = tf.mul(e.weight, 2);
    e.weight.assign(doubled);
    doubled.dispose();
    expectClose(await logits(), reference(other.map((v) => 2 * v)));
    // an optimiser step through attend and forward
    const ids = tf.tensor1d([1, 4], 'int32');
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(e.attend(e.forward(ids)), 0.01)) as tf.Scalar, [e.weight]);
    expect(grads[e.weight.name].shape).toEqual([dim, num]);
    const sgd = tf.train.sgd(0.1);
    sgd.applyGradients(grads);
    sgd.dispose();
    tf.dispose([value, ids, ...Object.values(grads)]);
    expectClose(await logits(), reference(checkpointValues(e, 'weight')));
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    e.dispose();
  });

  it('leaks no tensors across repeated forwards and attends', async () => {
    const e = await embeddingWith();
    const ids = tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32');
    const x = tf.ones([2, 2, dim]);
    expectNoLeak(() => e.forward(ids).dispose());
    expectNoLeak(() => e.attend(x).dispose());
    tf.dispose([ids, x]);
    e.dispose();
  });

  it('gives the cpu output on every backend', async () => {
    const ids = randInts(2 * 5, 44, num);
    const xs = randn(2 * dim, 45);
    const out = await onEveryBackend(async () => {
      const e = await embeddingWith();
      const t = tf.tensor2d(ids, [2, 5], 'int32');
      const x = tf.tensor2d(xs, [2, dim]);
      const y = [...(await take(e.forward(t))), ...(await take(e.attend(x)))];
      tf.dispose([t, x]);
      e.dispose();
      return y;
    });
    expectBackendsAgree(out);
  });

  it('has the gradient of a one-hot matmul, repeated ids summed, on every backend (wasm has no UnsortedSegmentSum)', async () => {
    const ids = [3, 1, 3, 0, 3, num - 1]; // id 3 three times
    const weights = randn(ids.length * dim, 46);
    const out = await onEveryBackend(async () => {
      const e = await embeddingWith();
      const t = tf.tensor2d(ids, [2, 3], 'int32');
      const w = tf.tensor3d(weights, [2, 3, dim]);
      const loss = () => tf.sum(tf.mul(e.forward(t), w)) as tf.Scalar;
      const { value, grads } = tf.variableGrads(loss, [e.weight]);
      value.dispose();
      const g = await take(grads[e.weight.name]); // [dim, num], the stored layout
      // Reference: d/dW of sum(onehot(ids) · Wᵀ · w) is, per id, the weight row added to its column.
      const ref = new Float64Array(dim * num);
      ids.forEach((id, n) => {
        for (let c = 0; c < dim; c++) ref[c * num + id] += weights[n * dim + c];
      });
      expectClose(g, Array.from(ref), 1e-5);
      tf.dispose([t, w]);
      e.dispose();
      return g;
    });
    expectBackendsAgree(out);
  });
});

