import * as tf from '@tensorflow/tfjs-core';
import { it } from 'vitest';
import { initBackend } from '@slmkit/core';
import { selectiveScan } from '/work/main/packages/ssm/src/index.js';
import { BACKENDS, uniform, diff } from '/work/main/packages/ssm/test/helpers.js';

it('dbg', async () => {
  void BACKENDS;
  await initBackend('webgpu');
  const cases = [[1,1,3,4],[1,2,3,4],[2,3,5,4],[1,1,3,16],[1,5,4,16]];
  for (const [Bt, D, L, N] of cases) {
    const u = uniform([Bt, D, L], 1), delta = uniform([Bt, D, L], 2, 0.05, 0.6);
    const A = tf.neg(tf.exp(uniform([D, N], 3))), B = uniform([Bt, N, L], 4), C = uniform([Bt, N, L], 5);
    const f = selectiveScan(u, delta, A, B, C, { returnLastState: true, implementation: 'fused' });
    const n = selectiveScan(u, delta, A, B, C, { returnLastState: true, implementation: 'naive' });
    const fy = await f.y.data(), ny = await n.y.data();
    const fh = await f.lastState.data(), nh = await n.lastState.data();
    console.log(Bt, D, L, N, 'y', diff(fy, ny), 'h', diff(fh, nh));
    if (D <= 2) { console.log(Array.from(fy).map(v=>v.toFixed(4)).join(' ')); console.log(Array.from(ny).map(v=>v.toFixed(4)).join(' ')); console.log(Array.from(fh).map(v=>v.toFixed(4)).join(' ')); console.log(Array.from(nh).map(v=>v.toFixed(4)).join(' ')); }
  }
});
