// The wasm backend's BatchMatMul as slmkit installs it: transposed products of matrices rewritten as plain ones
// for XNNPACK must give what the cpu backend gives, for every transpose combination, above and below the size at
// which the rewrite starts, batched products (one matrix at a time; broadcast batches left to tfjs), gradients, and
// tfjs's own error for bad shapes.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import '../src/register-gradients.node.js';
import { GatedMLP, initBackend } from '../src/index.js';
import { matMulPaths } from '../src/wasm-matmul.js';

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

  it('plain products of 8 rows or more run through gemm.wat, fewer through XNNPACK, and agree with cpu', async () => {
    // Row counts around the 4-row tile and the 8-row switch, column counts around the 8-column panel, k from 1.
    const cases: [number, number, number, 'gemm' | 'xnnpack'][] = [
      [7, 64, 64, 'xnnpack'],
      [8, 64, 64, 'gemm'],
      [9, 1, 1, 'gemm'],
      [10, 3, 7, 'gemm'],
      [13, 33, 17, 'gemm'],
      [128, 576, 192, 'gemm'],
      [129, 70, 9, 'gemm'],
    ];
    for (const [m, k, n, path] of cases) {
      await initBackend('wasm');
      const before = { ...matMulPaths };
      const [cpu, wasm] = await onBoth(() => tf.matMul(tf.tensor2d(values(9, m * k), [m, k]), tf.tensor2d(values(10, k * n), [k, n])));
      expect(matMulPaths[path] - before[path], `${m}x${k}x${n} through ${path}`).toBe(1);
      expectClose(wasm, cpu, `${m}x${k}x${n}`);
    }
  });

  it('a batched plain product runs through gemm.wat in place, one call for all its matrices', async () => {
    await initBackend('wasm');
    const before = matMulPaths.gemm;
    const [cpu, wasm] = await onBoth(() => tf.matMul(tf.tensor3d(values(11, 3 * 70 * 80), [3, 70, 80]), tf.tensor3d(values(12, 3 * 80 * 90), [3, 80, 90])));
    expect(matMulPaths.gemm - before).toBe(1);
    expectClose(wasm, cpu, 'batched through gemm');
  });

  it('mismatched inner sizes still get tfjs error', async () => {
    await initBackend('wasm');
    const a = tf.zeros([576, 1536]);
    const b = tf.zeros([128, 1536]);
    expect(() => tf.matMul(a, b, true, true)).toThrow(/inner shapes \(576\) and \(1536\)/);
    tf.dispose([a, b]);
  });
});
