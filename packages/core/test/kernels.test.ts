import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, defineFusedOp, registerFusedKernel } from '../src/index.js';

// A toy op, y = alpha * a + b * b, with a naive version and a cpu kernel written as a typed-array loop.
const op = defineFusedOp<{ a: tf.Tensor; b: tf.Tensor }, { alpha: number }>({
  kernelName: 'SlmkitTestScaleAddSquare',
  naive: ({ a, b }, { alpha }) => tf.add(tf.mul(a, alpha), tf.square(b)),
});

beforeAll(async () => {
  await tf.setBackend('cpu');
  registerFusedKernel({
    kernelName: 'SlmkitTestScaleAddSquare',
    backendName: 'cpu',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const cpu = backend as unknown as {
        readSync(id: unknown): Float32Array;
        makeTensorInfo(shape: number[], dtype: string, values: Float32Array): tf.TensorInfo;
      };
      const a = inputs.a as tf.TensorInfo;
      const av = cpu.readSync(a.dataId);
      const bv = cpu.readSync((inputs.b as tf.TensorInfo).dataId);
      const alpha = (attrs as unknown as { alpha: number }).alpha;
      const out = new Float32Array(av.length);
      for (let i = 0; i < av.length; i++) out[i] = alpha * av[i] + bv[i] * bv[i];
      return cpu.makeTensorInfo(a.shape, 'float32', out);
    },
    gradient: {
      inputsToSave: ['b'],
      gradFunc: (dy, saved, attrs) => {
        const [b] = saved;
        const alpha = (attrs as unknown as { alpha: number }).alpha;
        return { a: () => tf.mul(dy as tf.Tensor, alpha), b: () => tf.mul(dy as tf.Tensor, tf.mul(b, 2)) };
      },
    },
  });
});

afterEach(async () => {
  await tf.setBackend('cpu');
});

describe('defineFusedOp / registerFusedKernel', () => {
  it('runs the fused kernel where registered and matches the naive version, values and gradients', () => {
    const a = tf.tensor1d([1, 2, 3]);
    const b = tf.tensor1d([-1, 0.5, 2]);
    const fused = op({ a, b }, { alpha: 3 });
    expect(op.lastRun).toEqual({ op: 'SlmkitTestScaleAddSquare', backend: 'cpu', implementation: 'fused' });
    const naive = op({ a, b }, { alpha: 3 }, { implementation: 'naive' });
    expect(op.lastRun?.implementation).toBe('naive');
    expect(Array.from(fused.dataSync())).toEqual([4, 6.25, 13]);
    expect(Array.from(naive.dataSync())).toEqual([4, 6.25, 13]);

    const gFused = tf.grads((x: tf.Tensor, y: tf.Tensor) => op({ a: x, b: y }, { alpha: 3 }))([a, b]);
    const gNaive = tf.grads((x: tf.Tensor, y: tf.Tensor) => op({ a: x, b: y }, { alpha: 3 }, { implementation: 'naive' }))([a, b]);
    expect(Array.from(gFused[0].dataSync())).toEqual([3, 3, 3]);
    expect(Array.from(gFused[1].dataSync())).toEqual([-2, 1, 4]);
    expect(Array.from(gNaive[1].dataSync())).toEqual(Array.from(gFused[1].dataSync()));
    tf.dispose([a, b, fused, naive, ...gFused, ...gNaive]);
  });

  it('falls back to naive on a backend without the kernel, warning once, and says so', async () => {
    await tf.setBackend('wasm');
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const a = tf.tensor1d([1]);
    expect(op.hasKernel()).toBe(false);
    expect(op.hasKernel('cpu')).toBe(true);
    op({ a, b: a }, { alpha: 1 }).dispose();
    op({ a, b: a }, { alpha: 1 }).dispose();
    expect(op.lastRun).toEqual({ op: 'SlmkitTestScaleAddSquare', backend: 'wasm', implementation: 'naive' });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/no fused kernel on "wasm"/);
    expect(() => op({ a, b: a }, { alpha: 1 }, { implementation: 'fused' })).toThrow(ConfigError);
    warn.mockRestore();
    a.dispose();
  });
});
