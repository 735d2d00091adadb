// The fused kernel on cpu and wasm (webgpu: fused-webgpu.test.ts) against the naive oracle, values and gradients, over a grid of shapes and masks;
// through the block (auto picks it, prefill and cached decoding equal the naive block); and its memory at T 4096.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '@slmkit/core';
import {
  CHUNKED_THRESHOLD,
  KVCache,
  SlidingWindowCache,
  fusedAttention,
  hasFusedAttention,
  resolveImplementation,
} from '../src/index.js';
import { attentionSimdAvailable, setAttentionSimd } from '../src/ops/wasm/fused-simd.js';
import { build, type Case } from './build.js';
import { expectFusedMatchesNaive, grid, inputs, range } from './fused-grid.js';
import { backends, disposeAll, expectClose, take } from './helpers.js';

afterAll(async () => {
  await initBackend('cpu');
});

describe('fused attention equals the naive kernel', () => {
  it('is registered on cpu, wasm and webgpu (WGSL, see fused-webgpu.test.ts), not on other backends', () => {
    expect(hasFusedAttention('cpu')).toBe(true);
    expect(hasFusedAttention('wasm')).toBe(true);
    expect(hasFusedAttention('webgpu')).toBe(true);
    expect(hasFusedAttention('webgl')).toBe(false);
  });

  const paths = [['cpu', true], ['wasm', true], ['cpu', false], ['wasm', false]] as const;
  for (const [backend, simd] of paths) {
    for (const [name, g] of grid) {
      it(`${backend}, ${simd ? 'SIMD' : 'typed-array loop'}: ${name}: values and gradients`, async () => {
        expect(await backends()).toContain(backend);
        await initBackend(backend);
        setAttentionSimd(simd);
        expect(attentionSimdAvailable()).toBe(simd);
        await expectFusedMatchesNaive(g, 7, backend, 1e-5);
        setAttentionSimd(true);
      });
    }
  }

  it('rejects bad inputs like the naive kernel (typed errors naming the field)', async () => {
    await initBackend('cpu');
    const x = inputs({ B: 1, H: 3, KV: 2, T: 2, S: 2, Dh: 4 }, 1);
    expect(() => fusedAttention(x.q, x.k, x.v, x.options)).toThrow(/k's heads \(2\) must divide q's heads \(3\)/);
    x.dispose();
  });
});

describe('the block with the fused kernel', () => {
  const c: Case = { B: 2, T: 11, D: 16, H: 4, KV: 2, Dh: 4, bias: true, window: 5, prefix: 2, softcap: 4, qkNorm: 'head', rotary: { base: 100 } };
  const mask = [range(11).map((t) => (t < 3 ? 0 : 1)), range(11).map(() => 1)];

  it('auto resolves to fused where the backend has it, else by T · S', () => {
    expect(resolveImplementation('auto', 1, 1, true)).toBe('fused');
    expect(resolveImplementation('auto', 256, 256, false)).toBe('naive');
    expect(resolveImplementation('auto', 257, 256, false)).toBe('chunked');
    expect(257 * 256).toBeGreaterThan(CHUNKED_THRESHOLD);
    expect(resolveImplementation('naive', 1, 1, true)).toBe('naive');
  });

  // The decode fast path reshapes heads straight from the projection unless a per-head norm sits in between.
  const variants: [string, Case][] = [
    ['per-head q/k norm', c],
    ['no q/k norm', { ...c, qkNorm: null }],
    ['projection-wide q/k norm, MQA', { ...c, KV: 1, qkNorm: 'projection' }],
  ];
  for (const [backend, [variant, vc]] of (['cpu', 'wasm'] as const).flatMap((b) => variants.map((v) => [b, v] as const))) {
    it(`${backend}, ${variant}: prefill and cached decoding (the decode fast path) equal the naive block, nothing leaks`, async () => {
      await initBackend(backend);
      const c = vc;
      const { attn, x } = build(c);
      const { tensor } = x(c.B, c.T, 5);
      const m = tf.tensor2d(mask);
      const naive = await take(attn.forward(tensor, { attentionMask: m, implementation: 'naive' }));
      const before = tf.memory().numTensors;
      const fused = await take(attn.forward(tensor, { attentionMask: m }));
      expect(attn.lastImplementation).toBe('fused');
      expect(tf.memory().numTensors).toBe(before);
      expectClose(fused, naive, 1e-5);

      for (const cache of [new KVCache(), new SlidingWindowCache(5, { prefixLength: 2 })]) {
        const steps: number[][] = [];
        for (const [t0, n] of [[0, 6], [6, 1], [7, 1], [8, 3]]) {
          const xs = tf.slice(tensor, [0, t0, 0], [c.B, n, c.D]) as tf.Tensor3D; // [B, n, D]
          const ms = tf.slice(m, [0, 0], [c.B, t0 + n]) as tf.Tensor2D; // [B, t0 + n]
          const y = attn.forward(xs, { cache, attentionMask: ms });
          expect(attn.lastImplementation).toBe('fused');
          steps.push(await take(y));
          disposeAll(xs, ms);
        }
        // Row b, token t of the full forward is at ((b·T) + t)·D; the steps are [B, n, D] each.
        const spans = [[0, 6], [6, 1], [7, 1], [8, 3]];
        spans.forEach(([t0, n], i) => {
          const want = range(c.B).flatMap((b) => naive.slice((b * c.T + t0) * c.D, (b * c.T + t0 + n) * c.D));
          expectClose(steps[i], want, 1e-5);
        });
        cache.dispose();
      }
      disposeAll(tensor, m);
      attn.dispose();
    });
  }
});

describe('memory at T 4096', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`${backend}: a block forward allocates no [T, T] tensor; peak bytes stay far below T·T·4`, async () => {
      await initBackend(backend);
      const T = 4096;
      const c: Case = { B: 1, T, D: 16, H: 2, KV: 1, Dh: 8, rotary: { base: 10000 } };
      const { attn, x } = build(c);
      const { tensor } = x(1, T, 3);
      const before = tf.memory().numTensors;
      const info = await tf.profile(() => {
        tf.dispose(attn.forward(tensor));
      });
      expect(attn.lastImplementation).toBe('fused');
      expect(tf.memory().numTensors).toBe(before);
      const square = T * T * 4;
      // Inputs, q/k/v, rotary tables and the output are a few T·D floats each: about 1 MB here against 64 MiB.
      expect(info.peakBytes).toBeLessThan(square / 16);
      const largest = Math.max(...info.kernels.flatMap((k) => k.outputShapes.map((s) => (s ?? []).reduce((a, d) => a * d, 1))));
      expect(largest).toBeLessThan(T * T / 64);
      tensor.dispose();
      attn.dispose();
    }, 60_000);
  }
});
