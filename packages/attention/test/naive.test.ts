import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@slmkit/core';
import { build, type Case } from './build.js';
import { disposeAll, expectClose, refAttention, take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const base: Case = { B: 2, T: 7, D: 12, H: 4, KV: 2, Dh: 6 };

const cases: [string, Case, { mask?: number[][]; start?: number; ropeRows?: boolean }?][] = [
  ['causal GQA', base],
  ['causal MHA with bias', { ...base, KV: 4, bias: true }],
  ['MQA', { ...base, KV: 1 }],
  ['non-causal', { ...base, causal: false }],
  ['sliding window 3', { ...base, window: 3 }],
  ['sliding window 3 with prefix 2', { ...base, window: 3, prefix: 2 }],
  ['window 1 (only itself)', { ...base, window: 1 }],
  ['padding mask (left padding, a fully masked row)', base, { mask: [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]] }],
  ['padding mask with window and prefix', { ...base, window: 2, prefix: 1 }, { mask: [[1, 0, 1, 1, 0, 1, 1], [0, 1, 1, 1, 1, 1, 0]] }],
  ['softcap 2', { ...base, softcap: 2 }],
  ['custom scale 0.05', { ...base, scale: 0.05 }],
  ['valueHeadDim 2·headDim (Hymba)', { ...base, Dv: 12 }],
  ['q/k norm per head', { ...base, qkNorm: 'head' }],
  ['q/k norm over the projection', { ...base, qkNorm: 'projection' }],
  ['rotary', { ...base, rotary: { base: 100 } }],
  ['partial rotary (4 of 6 dims)', { ...base, rotary: { base: 100, rotaryDim: 4 } }],
  ['rotary from offset 5', { ...base, rotary: { base: 100 } }, { start: 5 }],
  ['rotary with per-row positions', { ...base, rotary: { base: 100 } }, { ropeRows: true, mask: [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]] }],
  ['everything: GQA, bias, window, prefix, softcap, norms, rotary, padding', { ...base, bias: true, window: 3, prefix: 1, softcap: 3, qkNorm: 'head', rotary: { base: 50 }, Dv: 4 }, { mask: [[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]] }],
];

describe('Attention (naive) against a float64 reference', () => {
  for (const [name, c, extra] of cases) {
    it(name, async () => {
      const { attn, ref, x } = build(c);
      const { tensor, values } = x(c.B, c.T, 99);
      const start = extra?.start ?? 0;
      const ropeRows = extra?.ropeRows ? extra.mask!.map((row) => { let p = 0; return row.map((m) => (m === 1 ? p++ : 0)); }) : undefined;
      const mask = extra?.mask ? tf.tensor2d(extra.mask) : undefined;
      const maskFull = mask && start > 0 ? tf.concat([tf.ones([c.B, start]), mask], 1) as tf.Tensor2D : mask;
      const before = tf.memory().numTensors;
      const y = attn.forward(tensor, {
        implementation: 'naive',
        attentionMask: maskFull,
        positions: ropeRows ?? (start > 0 ? start : undefined),
      });
      expect(tf.memory().numTensors).toBe(before + 1);
      expect(y.shape).toEqual([c.B, c.T, c.D]);
      expect(attn.lastImplementation).toBe('naive');
      const got = await take(y);
      const want = refAttention({ ...ref, B: c.B, T: c.T, x: values, mask: extra?.mask, start, ropePositions: ropeRows });
      expectClose(got, want, 1e-5);
      disposeAll(tensor, mask, maskFull);
      attn.dispose();
    });
  }

  it('rotaryTables from cosSin give what positions give (shared and per-row tables)', async () => {
    const c: Case = { ...base, rotary: { base: 100 } };
    const { attn, x } = build(c);
    const rope = attn.parts.rotary!;
    const { tensor } = x(c.B, c.T, 4);
    const shared = rope.cosSin({ offset: 3, length: c.T });
    const rows = [[0, 0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6]];
    const perRow = rope.cosSin(rows);
    expectClose(await take(attn.forward(tensor, { rotaryTables: shared, positions: 3 })), await take(attn.forward(tensor, { positions: 3 })), 1e-6);
    expectClose(await take(attn.forward(tensor, { rotaryTables: perRow })), await take(attn.forward(tensor, { positions: rows })), 1e-6);
    disposeAll(tensor, shared.cos, shared.sin, perRow.cos, perRow.sin);
    attn.dispose();
  });

  it('a fully masked query row gives oProj(0) = the o bias, never NaN', async () => {
    const c: Case = { ...base, bias: true };
    const { attn, x } = build(c);
    const { tensor } = x(c.B, c.T, 3);
    const mask = tf.tensor2d([[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]);
    for (const implementation of ['naive', 'chunked'] as const) {
      const y = attn.forward(tensor, { attentionMask: mask, implementation });
      const rows = (await take(y)).slice(0, 3 * c.D);
      const oBias = Array.from((attn.parts.oProj as unknown as { bias: tf.Variable }).bias.dataSync());
      expect(rows.every(Number.isFinite)).toBe(true);
      for (let t = 0; t < 3; t++) expectClose(rows.slice(t * c.D, (t + 1) * c.D), oBias, 1e-6);
    }
    tf.dispose([tensor, mask]);
    attn.dispose();
  });
});
