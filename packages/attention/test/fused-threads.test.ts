// The fused kernel on the wasm backend's threaded build, whose heap is a shared memory: the SIMD loops, instantiated
// on that heap (the module's shared-memory variant), read q, k and v in place and match the naive kernel. A file of
// its own: the thread count is fixed when the backend first starts in a process. Caches appended in place write to
// that heap too.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend, wasmHeapMemory } from '@slmkit/core';
import { attentionSimdRanInPlace, attentionSimdRanTiled, attentionSimdTiledThreads } from '../src/ops/wasm/fused-simd.js';
import { blockCase, blockMask, expectBlockMatchesNaive, expectFusedMatchesNaive, grid } from './fused-grid.js';

describe('fused attention on the threaded wasm build', () => {
  it('reads the shared heap in place and equals the naive kernel, values and gradients', async () => {
    const info = await initBackend('wasm', { threads: 2 });
    expect(info.threads).toBe(2);
    expect(wasmHeapMemory(tf.backend())?.buffer).toBeInstanceOf(SharedArrayBuffer);
    let tiled = 0;
    for (const [name, g] of grid.filter(([, g]) => g.Dh % 4 === 0 && (g.Dv ?? g.Dh) % 4 === 0)) {
      await expectFusedMatchesNaive(g, 5, 'wasm', 1e-5);
      expect(attentionSimdRanInPlace(), name).toBe(true);
      if (attentionSimdRanTiled()) {
        // The tiled path's blocks of query rows are split over both threads.
        expect(attentionSimdTiledThreads(), name).toBe(2);
        tiled++;
      }
    }
    expect(tiled, 'grid cases through the tiled path').toBeGreaterThanOrEqual(4);
  });

  it('the block decodes through caches appended in place on the shared heap, equal to the naive block', async () => {
    await initBackend('wasm', { threads: 2 });
    await expectBlockMatchesNaive({ ...blockCase, qkNorm: undefined }, blockMask, 1e-5);
  });
});
