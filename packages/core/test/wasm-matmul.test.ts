// The wasm backend's BatchMatMul as slmkit installs it: transposed products of matrices rewritten as plain ones
// for XNNPACK must give what the cpu backend gives, for every transpose combination, above and below the size at
// which the rewrite starts, batched products (one matrix at a time; broadcast batches left to tfjs), gradients, and
// tfjs's own error for bad shapes.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import '../src/register-gradients.node.js';
import { GatedMLP, initBackend } from '../src/index.js';
import { livePackedCopies } from '../src/wasm-gemm.js';
import { gemmProducts } from '../src/wasm-matmul.js';

const values = (seed: number, n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 1.7 + i * 0.61));

/** Runs `f` on cpu and on wasm and returns both results. */
async function onBoth(f: () => tf.Tensor | tf.Tensor[]): Promise<[Float32Array[], Float32Array[]]> {
  const out: Float32Array[][] = [];
  for (const backend of ['cpu', 'wasm'] as const) {
    await initBackend(backend);
    const before = tf.memory().numTensors;
    const r = tf.tidy(f);
    const ts = Array.isArray(r) ? r : [r];
    out.push(await Promise.all(ts.map(async (t) => (await t.data()) as Float32Array)));
    tf.dispose(ts);
    expect(tf.memory().numTensors, `${backend} leaks`).toBe(before);
  }
  return [out[0], out[1]];
}

function expectClose(got: Float32Array[], want: Float32Array[], what: string): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, t) => {
    expect(g.length, what).toBe(want[t].length);
    let worst = 0;
    for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(g[i] - want[t][i]) / (1 + Math.abs(want[t][i])));
    expect(worst, what).toBeLessThan(2e-5);
  });
}

describe('wasm BatchMatMul with transposed operands', () => {
  // [m, k, n]: one below the rewrite's threshold (tfjs's loop), others above it, uneven and odd sizes.
  const shapes: [number, number, number][] = [
    [3, 5, 7],
    [1, 576, 520],
    [37, 130, 90],
    [128, 96, 160],
  ];
  for (const [m, k, n] of shapes) {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      it(`[${m}, ${k}] x [${k}, ${n}] with transposeA ${ta}, transposeB ${tb}`, async () => {
        const [cpu, wasm] = await onBoth(() => {
          const a = tf.tensor2d(values(1, m * k), ta ? [k, m] : [m, k]);
          const b = tf.tensor2d(values(2, k * n), tb ? [n, k] : [k, n]);
          return tf.matMul(a, b, ta, tb);
        });
        expectClose(wasm, cpu, `${m}x${k}x${n} ${ta} ${tb}`);
      });
    }
  }

  // Batched: [lead, m, k, n], above the per-matrix threshold (one XNNPACK product per batch entry) and below it
  // (tfjs's loop), rank 3 and 4, every transpose combination; broadcast batches stay with tfjs.
  const batched: [number[], number, number, number][] = [
    [[2], 70, 80, 90],
    [[3], 128, 64, 96],
    [[1, 3], 96, 64, 128],
    [[2, 2], 4, 5, 6],
    [[1], 70, 80, 90],
    [[1, 1], 128, 64, 96],
  ];
  for (const [lead, m, k, n] of batched) {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      it(`batched [${lead.join(', ')}] x [${m}, ${k}] x [${k}, ${n}] with transposeA ${ta}, transposeB ${tb}`, async () => {
        const size = lead.reduce((x, y) => x * y, 1);
        const [cpu, wasm] = await onBoth(() => {
          const a = tf.tensor(values(3, size * m * k), [...lead, ...(ta ? [k, m] : [m, k])]);
          const b = tf.tensor(values(4, size * k * n), [...lead, ...(tb ? [n, k] : [k, n])]);
          const y = tf.matMul(a, b, ta, tb);
          expect(y.shape).toEqual([...lead, m, n]);
          return y;
        });
        expectClose(wasm, cpu, `batched ${lead} ${m}x${k}x${n} ${ta} ${tb}`);
      });
    }
  }

  it('a broadcast batch (tfjs\'s path) and the gradients of batched products and of a training step agree with cpu', async () => {
    const [cpuB, wasmB] = await onBoth(() => tf.matMul(tf.tensor3d(values(3, 1 * 70 * 80), [1, 70, 80]), tf.tensor3d(values(4, 3 * 90 * 80), [3, 90, 80]), false, true));
    expectClose(wasmB, cpuB, 'broadcast');
    const [cpuBG, wasmBG] = await onBoth(() => {
      const a = tf.tensor3d(values(6, 3 * 100 * 64), [3, 100, 64]);
      const b = tf.tensor3d(values(7, 3 * 64 * 120), [3, 64, 120]);
      const w = tf.tensor3d(values(8, 3 * 100 * 120), [3, 100, 120]);
      return tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y), w)))([a, b]);
    });
    expectClose(wasmBG, cpuBG, 'batched gradients');
    const [cpuG, wasmG] = await onBoth(() => {
      const mlp = GatedMLP.create(96, 200, { activation: 'silu', seed: 7 });
      const x = tf.tensor3d(values(5, 40 * 96), [1, 40, 96]);
      const { grads } = tf.variableGrads(() => tf.sum(tf.square(mlp.forward(x))) as tf.Scalar, mlp.trainableParameters());
      const out = Object.keys(grads).sort().map((name) => grads[name]);
      mlp.dispose();
      return out;
    });
    expectClose(wasmG, cpuG, 'gradients');
  });

  it('a product with no rows is empty, left to tfjs (gemm.wat needs a row)', async () => {
    await initBackend('wasm');
    const before = gemmProducts.count;
    const [a, b] = [tf.zeros([0, 64]), tf.ones([64, 16])];
    const y = tf.matMul(a, b);
    expect(y.shape).toEqual([0, 16]);
    expect(gemmProducts.count).toBe(before);
    tf.dispose([a, b, y]);
  });

  it('plain products run through gemm.wat and agree with cpu, from one row up', async () => {
    // Row counts around the 4-row tile (fewer: a 1 × 8 tile per row), column counts around the 8-column panel, k from 1.
    const cases: [number, number, number][] = [
      [1, 576, 520],
      [3, 64, 64],
      [4, 64, 64],
      [9, 1, 1],
      [10, 3, 7],
      [13, 33, 17],
      [128, 576, 192],
      [129, 70, 9],
    ];
    for (const [m, k, n] of cases) {
      await initBackend('wasm');
      const before = gemmProducts.count;
      const [cpu, wasm] = await onBoth(() => tf.matMul(tf.tensor2d(values(9, m * k), [m, k]), tf.tensor2d(values(10, k * n), [k, n])));
      expect(gemmProducts.count - before, `${m}x${k}x${n} through gemm.wat`).toBe(1);
      expectClose(wasm, cpu, `${m}x${k}x${n}`);
    }
  });

  it('a weight is packed once, reused while it lives, freed with its data; a reshape of it gets its own copy', async () => {
    await initBackend('wasm');
    const backend = tf.backend();
    const base = livePackedCopies(backend);
    const w = tf.tensor2d(values(13, 24 * 40), [24, 40]); // [k, n]
    const wide = tf.reshape(w, [40, 24]) as tf.Tensor2D; // the same data as [n, k]: another packing
    const want = async (x: tf.Tensor2D, y: tf.Tensor2D): Promise<Float32Array> => {
      await initBackend('cpu');
      const r = tf.tidy(() => tf.matMul(tf.tensor2d(x.dataSync(), x.shape), tf.tensor2d(y.dataSync(), y.shape)));
      const data = (await r.data()) as Float32Array;
      r.dispose();
      await initBackend('wasm');
      return data;
    };
    const x1 = tf.tensor2d(values(14, 5 * 24), [5, 24]);
    const x2 = tf.tensor2d(values(15, 2 * 24), [2, 24]);
    const x3 = tf.tensor2d(values(16, 6 * 40), [6, 40]);
    for (const [x, y, copies] of [[x1, w, 1], [x2, w, 1], [x1, w, 1], [x3, wide, 2]] as const) {
      const expected = await want(x, y);
      const got = tf.matMul(x, y);
      expectClose([(await got.data()) as Float32Array], [expected], `[${x.shape}] x [${y.shape}]`);
      got.dispose();
      expect(livePackedCopies(backend) - base, `copies after [${x.shape}] x [${y.shape}]`).toBe(copies);
    }
    // The reshape still holds the data: nothing is freed until the last tensor on it goes.
    w.dispose();
    expect(livePackedCopies(backend) - base).toBe(2);
    wide.dispose();
    expect(livePackedCopies(backend) - base).toBe(0);
    tf.dispose([x1, x2, x3]);
  });

  it('a batched plain product runs through gemm.wat in place, one call for all its matrices', async () => {
    await initBackend('wasm');
    const before = gemmProducts.count;
    const [cpu, wasm] = await onBoth(() => tf.matMul(tf.tensor3d(values(11, 3 * 70 * 80), [3, 70, 80]), tf.tensor3d(values(12, 3 * 80 * 90), [3, 80, 90])));
    expect(gemmProducts.count - before).toBe(1);
    expectClose(wasm, cpu, 'batched through gemm');
  });

  it('a batch of one runs as its matrices, through gemm.wat, transposed or not', async () => {
    await initBackend('wasm');
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const before = gemmProducts.count;
      const [cpu, wasm] = await onBoth(() => {
        const a = tf.tensor3d(values(13, 96 * 80), ta ? [1, 80, 96] : [1, 96, 80]);
        const b = tf.tensor3d(values(14, 80 * 72), tb ? [1, 72, 80] : [1, 80, 72]);
        const y = tf.matMul(a, b, ta, tb); // [1, 96, 72]
        return [y, tf.mul(tf.slice(y, [0, 90, 0], [1, 6, 72]), 2)]; // the data seen as [1, 96, 72] by the next ops
      });
      expect(gemmProducts.count - before, `${ta} ${tb}`).toBe(1);
      expectClose(wasm, cpu, `batch of one ${ta} ${tb}`);
    }
  });

  it('mismatched inner sizes still get tfjs error', async () => {
    await initBackend('wasm');
    const a = tf.zeros([576, 1536]);
    const b = tf.zeros([128, 1536]);
    expect(() => tf.matMul(a, b, true, true)).toThrow(/inner shapes \(576\) and \(1536\)/);
    const [a1, b1] = [tf.zeros([1, 128, 576]), tf.zeros([1, 1536, 64])];
    expect(() => tf.matMul(a1, b1)).toThrow(/inner shapes \(576\) and \(1536\)/);
    tf.dispose([a, b, a1, b1]);
  });
});
