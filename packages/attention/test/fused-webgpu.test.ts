// The WGSL fused kernel (webgpu; SwiftShader where there is no GPU) against the naive oracle on the same backend,
// values and gradients, over the grid the cpu / wasm kernel is checked on plus cases for this kernel's tiling; and
// through the block: `auto` picks it, prefill and cached decoding (T 1) equal the naive block, nothing leaks.
// Without a WebGPU adapter these tests skip, unless SLMKIT_REQUIRE_WEBGPU=1: then backendsUnderTest throws and the
// file fails. Shapes stay tiny: SwiftShader is ~100x slower than wasm.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@slmkit/core';
import { fusedAttention, hasFusedAttention, naiveAttention } from '../src/index.js';
import { flashTiles } from '../src/ops/fused-webgpu.js';
import { build } from './build.js';
import { blockCase, blockMask, expectBlockMatchesNaive, expectFusedMatchesNaive, expectNoSquareTensor, grid, inputs, range, type Grid } from './fused-grid.js';
import { backends, disposeAll, expectClose, take } from './helpers.js';

const hasWebGPU = (await backends()).includes('webgpu');

/** Cases for this kernel's tiles: head dims large enough that a key tile holds fewer keys than S. */
const tiling: [string, Grid][] = [
  ['Dh 64: several key tiles of fewer than 64 keys, T 20 (two query tiles), GQA 4:2', { B: 1, H: 4, KV: 2, T: 20, S: 60, Dh: 64 }],
  ['decode T 1, Dh 32 ≠ Dv 48, 100 keys, window 40 + prefix 2, padding', { B: 2, H: 2, KV: 1, T: 1, S: 100, Dh: 32, Dv: 48, window: 40, prefix: 2, mask: [range(100).map(() => 1), range(100).map((s) => (s < 7 || s === 90 ? 0 : 1))] }],
  ['Dh 256 (Gemma): key tiles of 7 keys, GQA 2:1, soft cap', { B: 1, H: 2, KV: 1, T: 4, S: 20, Dh: 256, softcap: 5 }],
  ['a whole key tile hidden by padding, then visible keys', { B: 1, H: 2, KV: 2, T: 4, S: 140, Dh: 8, mask: [range(140).map((s) => (s >= 64 && s < 128 ? 0 : 1))] }],
  ['every row sees no key (all padding): zeros', { B: 1, H: 2, KV: 1, T: 3, S: 5, Dh: 4, mask: [range(5).map(() => 0)], zeroRow: true }],
  ['T · S above 256 · 256 (the gradient recomputes through the chunked kernel), window 100', { B: 1, H: 1, KV: 1, T: 257, S: 257, Dh: 4, window: 100 }],
];

afterAll(async () => {
  await initBackend('cpu');
});

it('the fused kernel is registered on webgpu', () => {
  expect(hasFusedAttention('webgpu')).toBe(true);
});

it('tiles: query rows (G·T per key/value head) by the next power of two up to 16; keys as many as 16 KiB of workgroup memory holds, at most 64', () => {
  expect(flashTiles(1, 64, 64)).toEqual({ BQ: 1, BK: 31 }); // (4096 − 3) / (64 + 64 + 1)
  expect(flashTiles(5, 8, 8)).toEqual({ BQ: 8, BK: 64 });
  expect(flashTiles(300, 64, 64)).toEqual({ BQ: 16, BK: 28 }); // (4096 − 48) / (64 + 64 + 16)
  expect(() => flashTiles(16, 2048, 2048)).toThrow(/no room for a key tile/);
});

describe.skipIf(!hasWebGPU)('webgpu: the WGSL kernel equals the naive kernel', () => {
  beforeAll(async () => {
    await initBackend('webgpu');
  });

  for (const [name, g] of [...grid, ...tiling]) {
    it(`${name}: values and gradients`, async () => {
      await expectFusedMatchesNaive(g, 11, 'webgpu', 2e-5);
    });
  }

  it('a key tile hidden whole is skipped: NaN values there do not reach the output', async () => {
    // 8 queries over 192 keys (tiles of 64): keys 64..127 are padding. The naive kernel multiplies their weights (0)
    // by their values, so a NaN there is NaN in its output; the fused kernel never reads that tile.
    const g: Grid = { B: 1, H: 2, KV: 1, T: 8, S: 192, Dh: 8, causal: false, mask: [range(192).map((s) => (s >= 64 && s < 128 ? 0 : 1))] };
    expect(flashTiles((g.H / g.KV) * g.T, g.Dh, g.Dh).BK).toBe(64);
    const x = inputs(g, 5);
    const hidden = tf.tensor4d(range(192).map((s) => (s >= 64 && s < 128 ? 1 : 0)), [1, 1, 192, 1]); // [1, 1, S, 1]
    const vNaN = tf.where(tf.cast(hidden, 'bool'), tf.fill(x.v.shape, NaN), x.v) as tf.Tensor4D; // [1, 1, S, Dh]
    const want = await take(naiveAttention(x.q, x.k, x.v, x.options));
    const got = await take(fusedAttention(x.q, x.k, vNaN, { ...x.options, implementation: 'fused' }));
    expect((await take(naiveAttention(x.q, x.k, vNaN, x.options))).some(Number.isNaN)).toBe(true);
    expectClose(got, want, 2e-5);
    disposeAll(hidden, vNaN);
    x.dispose();
  });

  it('the tiling cases span more than one key tile', () => {
    for (const [, g] of tiling.slice(0, 4)) expect(g.S).toBeGreaterThan(flashTiles((g.H / g.KV) * g.T, g.Dh, g.Dv ?? g.Dh).BK);
  });
});

describe.skipIf(!hasWebGPU)('webgpu: the block with the WGSL kernel', () => {
  const c = blockCase;

  it('auto picks the fused kernel; prefill and cached decoding (T 1) equal the naive block; nothing leaks', async () => {
    await initBackend('webgpu');
    await expectBlockMatchesNaive(c, blockMask, 5e-5);
  });

  it('a training step through the block: gradients of every parameter equal the naive block\'s', async () => {
    await initBackend('webgpu');
    const { attn, x } = build({ ...c, T: 7 });
    const { tensor } = x(c.B, 7, 9);
    const m = tf.tensor2d(blockMask.map((row) => row.slice(0, 7)));
    const params = attn.namedParameters().map(([, p]) => p);
    const grads = async (implementation: 'naive' | 'auto'): Promise<number[][]> => {
      const { value, grads: g } = tf.variableGrads(() => tf.sum(tf.square(attn.forward(tensor, { attentionMask: m, implementation }))) as tf.Scalar, params);
      value.dispose();
      return Promise.all(params.map((p) => take(g[p.name])));
    };
    const want = await grads('naive');
    const before = tf.memory().numTensors;
    const got = await grads('auto');
    expect(attn.lastImplementation).toBe('fused');
    expect(tf.memory().numTensors).toBe(before);
    want.forEach((w, i) => expectClose(got[i], w, 2e-4, `parameter ${i}`));
    disposeAll(tensor, m);
    attn.dispose();
  });
});

describe.skipIf(!hasWebGPU)('webgpu: memory', () => {
  it('a block forward at T 1024 allocates no [T, T] tensor; peak bytes stay far below T·T·4', async () => {
    await initBackend('webgpu');
    await expectNoSquareTensor(1024, 4, 16); // under 1 MB here against 4 MiB
  });
});
