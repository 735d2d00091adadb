// The fused kernel on cpu and wasm (webgpu: fused-webgpu.test.ts) against the naive oracle, values and gradients, over a grid of shapes and masks;
// through the block (auto picks it, prefill and cached decoding equal the naive block); and its memory at T 4096.
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '@slmkit/core';
import * as tf from '@tensorflow/tfjs-core';
import { CHUNKED_THRESHOLD, fusedAttention, hasFusedAttention, naiveAttention, resolveImplementation } from '../src/index.js';
import { fusedAttentionOverBuffers } from '../src/ops/fused.js';
import { attentionSimdAvailable, attentionSimdRanInPlace, attentionSimdRanTiled, setAttentionSimd } from '../src/ops/wasm/fused-simd.js';
import type { Case } from './build.js';
import { blockCase, blockMask, expectBlockMatchesNaive, expectFusedMatchesNaive, expectNoSquareTensor, grid, inputs, type Grid } from './fused-grid.js';
import { backends, expectClose, take } from './helpers.js';

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

  // Larger cases for the tiled SIMD path (too slow for the WebGPU grid on a software adapter): head dims of a real
  // model, several chunks of 64 keys, a last partial block of four query rows, a prefix apart from the window.
  const tiledGrid: [string, Grid][] = [
    ['Dh 64, Dv 16, window 70 + prefix 9 apart, T 150: key chunks, a partial block of rows, GQA 4:2', { B: 1, H: 4, KV: 2, T: 150, S: 150, Dh: 64, Dv: 16, window: 70, prefix: 9 }],
    ['Dh 64, causal, T 66 after 134 cached keys (S 200), B 2, MHA', { B: 2, H: 2, KV: 2, T: 66, S: 200, Dh: 64 }],
  ];
  const paths = [['cpu', true], ['wasm', true], ['cpu', false], ['wasm', false]] as const;
  for (const [backend, simd] of paths) {
    for (const [name, g] of [...grid, ...tiledGrid]) {
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

  it('SIMD: the tiled path takes several query rows over consecutive keys without a soft cap; the per-row loops the rest', async () => {
    const cases: [Grid, boolean][] = [
      [{ B: 1, H: 4, KV: 2, T: 4, S: 4, Dh: 8 }, true],
      [{ B: 1, H: 4, KV: 2, T: 9, S: 30, Dh: 8, window: 5, prefix: 2 }, true],
      [{ B: 1, H: 4, KV: 2, T: 3, S: 30, Dh: 8 }, false], // fewer than four rows (a decode step)
      [{ B: 1, H: 2, KV: 1, T: 8, S: 8, Dh: 8, softcap: 2 }, false],
      [{ B: 1, H: 2, KV: 1, T: 8, S: 8, Dh: 8, Dv: 4 }, false], // Dv not a multiple of 8
      [{ B: 1, H: 2, KV: 1, T: 8, S: 8, Dh: 8, mask: [[0, 1, 1, 1, 1, 1, 1, 1]] }, false], // padding
      [{ B: 1, H: 2, KV: 1, T: 4, S: 6, Dh: 8, keyPositions: [0, 1, 8, 9, 4, 5], queryStart: 6 }, false], // a rolling buffer's order
    ];
    for (const backend of ['cpu', 'wasm'] as const) {
      await initBackend(backend);
      for (const [g, tiled] of cases) {
        const x = inputs(g, 5);
        await take(fusedAttention(x.q, x.k, x.v, x.options));
        expect(attentionSimdRanTiled(), `${backend} ${JSON.stringify(g)}`).toBe(tiled);
        x.dispose();
      }
    }
  });

  it('wasm: the SIMD loops read q, k and v in place on the heap when head dims are whole vectors, else copy (cpu: copy)', async () => {
    const cases: ['cpu' | 'wasm', Grid, boolean][] = [
      ['wasm', { B: 1, H: 6, KV: 2, T: 3, S: 9, Dh: 8 }, true],
      ['wasm', { B: 1, H: 2, KV: 1, T: 4, S: 4, Dh: 4, Dv: 6 }, false],
      ['wasm', { B: 1, H: 2, KV: 1, T: 4, S: 4, Dh: 6 }, false],
      ['cpu', { B: 1, H: 6, KV: 2, T: 3, S: 9, Dh: 8 }, false],
    ];
    for (const [backend, g, inPlace] of cases) {
      await initBackend(backend);
      await expectFusedMatchesNaive(g, 11, backend, 1e-5);
      expect(attentionSimdRanInPlace(), `${backend} Dh ${g.Dh} Dv ${g.Dv ?? g.Dh}`).toBe(inPlace);
    }
  });

  it('over a cache\'s buffers (keys and values longer than the key positions): the first S positions, values and q gradient', async () => {
    const g: Grid = { B: 2, H: 4, KV: 2, T: 3, S: 70, Dh: 8, window: 50 };
    for (const [backend, simd, Dv] of [['cpu', true, 8], ['wasm', true, 8], ['wasm', true, 6], ['wasm', false, 8]] as const) {
      await initBackend(backend);
      setAttentionSimd(simd);
      const x = inputs({ ...g, Dv }, 21);
      // Buffers of capacity S + 9 whose spare positions hold large values a wrong stride would read.
      const spare = (t: tf.Tensor4D): tf.Tensor4D => tf.concat([t, tf.fill([g.B, g.KV, 9, t.shape[3]], 1e3)], 2) as tf.Tensor4D;
      const [kb, vb] = [spare(x.k), spare(x.v)];
      const want = await take(naiveAttention(x.q, x.k, x.v, x.options));
      const got = await take(fusedAttentionOverBuffers(x.q, kb, vb, x.options));
      expectClose(got, want, 1e-5, `${backend} simd ${simd} Dv ${Dv}`);
      const loss = (attend: (q: tf.Tensor4D) => tf.Tensor) => tf.grad((q: tf.Tensor) => tf.sum(tf.mul(attend(q as tf.Tensor4D), x.w)))(x.q);
      const gotGrad = await take(loss((q) => fusedAttentionOverBuffers(q, kb, vb, x.options)));
      const wantGrad = await take(loss((q) => naiveAttention(q, x.k, x.v, x.options)));
      expectClose(gotGrad, wantGrad, 1e-4, `${backend} q gradient`);
      tf.dispose([kb, vb]);
      x.dispose();
      setAttentionSimd(true);
    }
  });

  it('rejects bad inputs like the naive kernel (typed errors naming the field)', async () => {
    await initBackend('cpu');
    const x = inputs({ B: 1, H: 3, KV: 2, T: 2, S: 2, Dh: 4 }, 1);
    expect(() => fusedAttention(x.q, x.k, x.v, x.options)).toThrow(/k's heads \(2\) must divide q's heads \(3\)/);
    x.dispose();
  });
});

describe('the block with the fused kernel', () => {
  const c = blockCase;

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
      await expectBlockMatchesNaive(vc, blockMask, 1e-5);
    });
  }
});

describe('memory at T 4096', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`${backend}: a block forward allocates no [T, T] tensor; peak bytes stay far below T·T·4`, async () => {
      await initBackend(backend);
      await expectNoSquareTensor(4096, 16, 64); // about 1 MB here against 64 MiB
    }, 60_000);
  }
});
