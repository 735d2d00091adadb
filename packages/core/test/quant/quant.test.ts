// Low-bit weights: each format against its reference formula, the fused matmul kernels against float64 on every
// backend, and quantize() on a module tree (memory, names, errors, leaks).
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import '../../src/register-gradients.node.js';
import { ConfigError, ShapeError } from '../../src/errors.js';
import { GatedMLP } from '../../src/layers/mlp.js';
import { Linear } from '../../src/layers/linear.js';
import { dequantizeWeight, quantizeWeight, weightCode, zeroPoint, type QuantScheme } from '../../src/quant/formats.js';
import { QuantizedLinear } from '../../src/quant/quantized-linear.js';
import { GEMM_MIN_ROWS, quantHeapStats, quantMatMulSimd, setQuantSimd } from '../../src/quant/wasm/quant-simd.js';
import { quantize } from '../../src/quant/quantize.js';
import { backends, randn } from '../layers/helpers.js';


describe('weight formats', () => {
  const O = 5;
  const I = 37; // not a multiple of any codes-per-word, nor of the int4 group
  const w = Float32Array.from(randn(O * I, 7));
  w[3] = 0; // a zero weight
  w.fill(0.25, I, 2 * I); // a constant row

  it('int8: codes are round(W / s) with s = max |W_o| / 127, and Ŵ = s · q exactly', () => {
    const q = quantizeWeight(w, O, I, 'int8');
    const deq = dequantizeWeight(q);
    for (let o = 0; o < O; o++) {
      let max = 0;
      for (let i = 0; i < I; i++) max = Math.max(max, Math.abs(w[o * I + i]));
      const s = Math.fround(max / 127);
      expect(q.scales[o]).toBe(s);
      for (let i = 0; i < I; i++) {
        const code = Math.round(w[o * I + i] / s);
        expect(weightCode(q, o, i)).toBe(code + 0); // + 0: round gives −0 for small negatives
        expect(deq[o * I + i] + 0).toBe(Math.fround(s * code) + 0);
        expect(Math.abs(deq[o * I + i] - w[o * I + i])).toBeLessThanOrEqual(s / 2 + 1e-7);
      }
    }
  });

  it('int4: per group s = (max − min) / 15 over a range holding 0, z = round(−min / s), Ŵ = s · (q − z) exactly', () => {
    const G = 8;
    const q = quantizeWeight(w, O, I, 'int4', G);
    const deq = dequantizeWeight(q);
    const groups = Math.ceil(I / G);
    for (let o = 0; o < O; o++) {
      for (let g = 0; g < groups; g++) {
        const vals = Array.from(w.subarray(o * I + g * G, o * I + Math.min(I, (g + 1) * G)));
        const min = Math.min(0, ...vals);
        const max = Math.max(0, ...vals);
        const s = Math.fround((max - min) / 15);
        const z = s === 0 ? 0 : Math.round(-min / s);
        expect(q.scales[o * groups + g]).toBe(s);
        expect(zeroPoint(q, o, g)).toBe(z + 0);
        vals.forEach((v, j) => {
          const i = g * G + j;
          const code = s === 0 ? z : Math.min(15, Math.max(0, Math.round(v / s) + z));
          expect(weightCode(q, o, i)).toBe(code + 0);
          expect(deq[o * I + i] + 0).toBe(Math.fround(s * (code - z)) + 0);
          expect(Math.abs(deq[o * I + i] - v)).toBeLessThanOrEqual(s / 2 + 1e-6);
        });
      }
    }
  });

  it('ternary: γ = mean |W|, codes in {−1, 0, 1} = clamp(round(W / γ)), Ŵ = γ · q exactly', () => {
    const q = quantizeWeight(w, O, I, 'ternary');
    const gamma = Math.fround(w.reduce((a, v) => a + Math.abs(v), 0) / w.length);
    expect(q.scales[0]).toBe(gamma);
    const deq = dequantizeWeight(q);
    const seen = new Set<number>();
    for (let i = 0; i < w.length; i++) {
      const code = Math.max(-1, Math.min(1, Math.round(w[i] / (gamma + 1e-8))));
      expect(weightCode(q, Math.floor(i / I), i % I)).toBe(code + 0);
      expect(deq[i] + 0).toBe(Math.fround(gamma * code) + 0);
      seen.add(code + 0);
    }
    expect([...seen].sort()).toEqual([-1, 0, 1]);
  });

  it('packs int8 four, int4 eight and ternary sixteen codes per 32-bit word', () => {
    expect(quantizeWeight(w, O, I, 'int8').packed.length).toBe(O * 10);
    expect(quantizeWeight(w, O, I, 'int4', 8).packed.length).toBe(O * 5);
    expect(quantizeWeight(w, O, I, 'ternary').packed.length).toBe(O * 3);
  });

  it('rejects an unknown scheme, a bad group size, a wrong length and non-finite weights', () => {
    expect(() => quantizeWeight(w, O, I, 'int3' as QuantScheme)).toThrow(ConfigError);
    expect(() => quantizeWeight(w, O, I, 'int4', 0)).toThrow(/groupSize must be a positive integer, found 0/);
    expect(() => quantizeWeight(w, O, I + 1, 'int8')).toThrow(/expected \[5, 38\]/);
    const bad = w.slice();
    bad[40] = NaN;
    expect(() => quantizeWeight(bad, O, I, 'int8')).toThrow(/weight value 40 \(row 1\) is NaN/);
  });
});

describe('QuantizedLinear', () => {
  // int4 with groups of 8 runs the typed-array loop, with groups of 32 the SIMD kernel (int8 and ternary are SIMD
  // either way; "no SIMD" forces the loops). I = 70 is no multiple of the SIMD blocks (16, 32, 64 codes): the rows
  // are padded. O = 11 is odd (both SIMD ways take channels in pairs). N runs both SIMD ways: the decode step
  // (N < GEMM_MIN_ROWS) and the prefill tile (four rows at a time, then the rest one by one).
  const variants: [QuantScheme, number, boolean][] = [
    ['int8', 0, true], ['int8', 0, false], ['int4', 8, true], ['int4', 32, true], ['int4', 32, false], ['ternary', 0, true], ['ternary', 0, false],
  ];
  it.each(variants)('%s (group %s, SIMD %s): the fused matmul equals x Ŵᵀ + b in float64 on every backend, with and without bias', async (scheme, groupSize, simd) => {
    const I = 70;
    const O = 11;
    const rows = [1, 3, GEMM_MIN_ROWS[scheme], 2 * GEMM_MIN_ROWS[scheme] + 1];
    const xs = randn(Math.max(...rows) * I, 21);
    setQuantSimd(simd);
    for (const name of await backends()) {
      await initBackend(name as 'cpu');
      for (const bias of [true, false]) {
        const linear = new Linear(I, O, { bias, seed: 5 });
        const q = QuantizedLinear.fromLinear(linear, { scheme, groupSize: groupSize || 64 });
        const deq = dequantizeWeight(q.packedWeight());
        const b = bias ? ((await linear.bias!.data()) as Float32Array) : null;
        const before = tf.memory().numTensors;
        for (const N of rows) {
          const x = tf.tensor2d(xs.slice(0, N * I), [N, I]);
          const out = q.forward(x);
          const y = (await out.data()) as Float32Array;
          out.dispose();
          expect(QuantizedLinear.lastRun).toEqual({ op: 'SlmkitQuantMatMul', backend: name, implementation: 'fused' });
          for (let n = 0; n < N; n++) {
            for (let o = 0; o < O; o++) {
              let ref = b == null ? 0 : b[o];
              for (let i = 0; i < I; i++) ref += xs[n * I + i] * deq[o * I + i];
              expect(Math.abs(y[n * O + o] - ref), `${name} N${N} n${n} o${o}`).toBeLessThan(1e-5 * Math.max(1, Math.abs(ref)));
            }
          }
          x.dispose();
        }
        expect(tf.memory().numTensors, `leak on ${name}`).toBe(before);
        q.dispose();
        linear.dispose();
      }
    }
    setQuantSimd(true);
    await initBackend('cpu');
  });

  it.each(['int8', 'int4', 'ternary'] as const)('%s at SmolLM-135M width (576 in): SIMD decode step and prefill tile within 1e-5 of x Ŵᵀ in float64', async (scheme) => {
    await initBackend('wasm');
    const I = 576;
    const O = 48;
    const linear = new Linear(I, O, { bias: false, seed: 9 });
    const q = QuantizedLinear.fromLinear(linear, { scheme, groupSize: 64 });
    const deq = dequantizeWeight(q.packedWeight());
    for (const N of [1, 8]) {
      const xs = randn(N * I, 40 + N);
      const x = tf.tensor2d(xs, [N, I]);
      const out = q.forward(x);
      const y = out.dataSync();
      tf.dispose([x, out]);
      let worst = 0;
      for (let n = 0; n < N; n++) {
        for (let o = 0; o < O; o++) {
          let ref = 0;
          for (let i = 0; i < I; i++) ref += xs[n * I + i] * deq[o * I + i];
          worst = Math.max(worst, Math.abs(y[n * O + o] - ref) / Math.max(1, Math.abs(ref)));
        }
      }
      expect(worst, `N = ${N}`).toBeLessThan(1e-5);
    }
    q.dispose();
    linear.dispose();
  });

  it.each(['int8', 'int4', 'ternary'] as const)('%s on SIMD: NaN and ±Infinity inputs come out as in float64, tiny inputs keep their relative precision', (scheme) => {
    const I = 40;
    const O = 6;
    const q = quantizeWeight(Float32Array.from(randn(O * I, 11)), O, I, scheme, 32);
    const deq = dequantizeWeight(q);
    // The sum, and the sum of magnitudes that float32 rounding is relative to.
    const ref = (x: Float32Array, n: number, o: number): [number, number] => {
      let sum = 0;
      let abs = 0;
      for (let i = 0; i < I; i++) {
        sum += x[n * I + i] * deq[o * I + i];
        abs += Math.abs(x[n * I + i] * deq[o * I + i]);
      }
      return [sum, abs];
    };
    const base = Float32Array.from(randn(3 * I, 12));
    const cases: [string, (x: Float32Array) => void][] = [
      ['NaN', (x) => (x[5] = NaN)],
      ['+Infinity', (x) => (x[I + 7] = Infinity)],
      ['−Infinity', (x) => (x[2 * I + 1] = -Infinity)],
      ['1e-20 scale', (x) => x.forEach((v, i) => (x[i] = v * 1e-20))], // the fixed-point path, at 2^66
      ['1e-33 scale', (x) => x.forEach((v, i) => (x[i] = v * 1e-33))], // below its range: the float path
    ];
    for (const [what, edit] of cases) {
      for (const N of [1, 3]) {
        const x = base.slice(0, N * I);
        edit(x);
        const out = new Float32Array(N * O);
        expect(quantMatMulSimd(x, N, q, new Float32Array(0), out)).toBe(true);
        for (let n = 0; n < N; n++) {
          for (let o = 0; o < O; o++) {
            const [want, abs] = ref(x, n, o);
            const got = out[n * O + o];
            if (!Number.isFinite(want)) expect(got, `${what} N${N} n${n} o${o}`).toBe(want);
            else expect(Math.abs(got - want), `${what} N${N} n${n} o${o}`).toBeLessThanOrEqual(1e-6 * abs);
          }
        }
      }
    }
  });

  it('int8 on SIMD: a row wider than 4096 inputs, at the largest codes and inputs, does not overflow its integer sums', () => {
    const I = 4200;
    const w = new Float32Array(2 * I).fill(0.5); // every code 127
    w.fill(-0.25, I); // row 1: every code −127
    const q = quantizeWeight(w, 2, I, 'int8');
    const x = new Float32Array(I).fill(1.99); // fixed point just under 2^28: the high halves near 2^14
    const out = new Float32Array(2);
    expect(quantMatMulSimd(x, 1, q, new Float32Array(0), out)).toBe(true);
    expect(out[0] / (0.5 * 1.99 * I)).toBeCloseTo(1, 5);
    expect(out[1] / (-0.25 * 1.99 * I)).toBeCloseTo(1, 5);
  });

  it('runs int8, int4 (groups of a multiple of 32) and ternary on WebAssembly SIMD here, and leaves other weights to the loops', () => {
    const w = Float32Array.from(randn(4 * 64, 3));
    const x = Float32Array.from(randn(64, 4));
    const out = new Float32Array(4);
    expect(quantMatMulSimd(x, 1, quantizeWeight(w, 4, 64, 'int8'), new Float32Array(0), out)).toBe(true);
    expect(quantMatMulSimd(x, 1, quantizeWeight(w, 4, 64, 'int4', 32), new Float32Array(0), out)).toBe(true);
    expect(quantMatMulSimd(x, 1, quantizeWeight(w, 4, 64, 'int4', 16), new Float32Array(0), out)).toBe(false);
    expect(quantMatMulSimd(x, 1, quantizeWeight(w, 4, 64, 'ternary'), new Float32Array(0), out)).toBe(true);
  });

  it.each(['int8', 'int4', 'ternary'] as const)('%s: the resident weight gives the copying path’s values, is made once, and is made again when a parameter is replaced', async (scheme) => {
    for (const name of ['cpu', 'wasm'] as const) {
      await initBackend(name);
      const I = 96;
      const O = 7;
      const linear = new Linear(I, O, { bias: true, seed: 3 });
      const q = QuantizedLinear.fromLinear(linear, { scheme, groupSize: 32 });
      const heap0 = quantHeapStats()!;
      expect(q.residentBytes).toBe(0); // nothing until the first run
      for (const N of [2, 6]) {
        const xs = Float32Array.from(randn(N * I, 50 + N));
        const x = tf.tensor2d(xs, [N, I]);
        const out = q.forward(x);
        const resident = out.dataSync();
        const copying = new Float32Array(N * O);
        expect(quantMatMulSimd(xs, N, q.packedWeight(), linear.bias!.dataSync() as Float32Array, copying)).toBe(true);
        expect(Array.from(resident)).toEqual(Array.from(copying));
        tf.dispose([x, out]);
      }
      const held = q.residentBytes;
      expect(held).toBeGreaterThan(0);
      expect(quantHeapStats()!.allocated - heap0.allocated).toBe(held); // one copy, kept between calls
      // Replacing the scales (as loading weights does) makes a new copy: the output follows the new values.
      const x = tf.randomNormal([1, I]);
      const y1 = q.forward(x);
      const scaled = tf.mul(q.scales, 2);
      q.scales.assign(scaled);
      scaled.dispose();
      const y2 = q.forward(x);
      const [a, b] = [y1.dataSync(), y2.dataSync()];
      const bias = linear.bias!.dataSync();
      for (let o = 0; o < O; o++) expect(b[o] - bias[o]).toBeCloseTo(2 * (a[o] - bias[o]), 4);
      expect(quantHeapStats()!.allocated - heap0.allocated).toBe(held); // the old copy was freed
      tf.dispose([x, y1, y2]);
      q.dispose();
      linear.dispose();
      expect(quantHeapStats()!.allocated).toBe(heap0.allocated);
    }
    await initBackend('cpu');
  });

  it('frees its resident weight on dispose, reuses the memory for the next layer, and throws a ConfigError when used after dispose', async () => {
    await initBackend('wasm');
    const linear = new Linear(576, 1536, { bias: false, seed: 1 });
    const x = tf.randomNormal([1, 576]);
    const tensors = tf.memory().numTensors;
    const heap0 = quantHeapStats()!;
    let first: { top: number; capacity: number } | undefined;
    for (let k = 0; k < 6; k++) {
      const q = QuantizedLinear.fromLinear(linear, { scheme: (['int8', 'int4', 'ternary'] as const)[k % 3], groupSize: 64 });
      q.forward(x).dispose();
      expect(q.residentBytes).toBeGreaterThan(0);
      q.dispose();
      expect(q.residentBytes).toBe(0);
      expect(() => q.forward(x)).toThrow(ConfigError);
      expect(() => q.forward(x)).toThrow(/QuantizedLinear: used after dispose\(\)/);
      expect(() => q.packedWeight()).toThrow(ConfigError);
      q.dispose(); // a second dispose does nothing
      const stats = quantHeapStats()!;
      expect(stats.allocated).toBe(heap0.allocated);
      if (k < 3) first = { top: Math.max(first?.top ?? 0, stats.top), capacity: stats.capacity };
      else expect({ top: stats.top, capacity: stats.capacity }).toEqual(first); // the freed regions are reused
    }
    expect(tf.memory().numTensors).toBe(tensors);
    x.dispose();
    linear.dispose();
  });

  it('keeps the leading dimensions and rejects a wrong input width', () => {
    const q = QuantizedLinear.fromLinear(new Linear(8, 4), { scheme: 'int8' });
    const x = tf.ones([2, 3, 8]);
    const y = q.forward(x);
    expect(y.shape).toEqual([2, 3, 4]);
    expect(() => q.forward(tf.ones([2, 7]))).toThrow(ShapeError);
    tf.dispose([x, y]);
    q.dispose();
  });
});

describe('quantize', () => {
  it.each([
    ['int8', 3.5],
    ['int4', 7],
    ['ternary', 14],
  ] as const)('converts a module tree to %s in place; tf.memory() shrinks by at least %sx for the weights', async (scheme, ratio) => {
    await initBackend('wasm');
    const mlp = GatedMLP.create(256, 512, { bias: false });
    const x = tf.randomNormal([2, 256]);
    const ref = mlp.forward(x);
    const want = (await ref.data()) as Float32Array;
    ref.dispose();
    const weightBytes = 4 * 3 * 256 * 512;
    const before = tf.memory().numBytes;
    const report = quantize(mlp, { scheme, groupSize: 64 });
    const freed = before - tf.memory().numBytes;
    expect(report.layers).toEqual(['gate_proj', 'up_proj', 'down_proj']);
    expect(report.bytesBefore).toBe(weightBytes);
    // What tf.memory() holds for these weights now: the float32 bytes minus what was freed.
    const held = weightBytes - freed;
    expect(held).toBe(report.bytesAfter);
    expect(weightBytes / held).toBeGreaterThanOrEqual(ratio);
    expect(mlp.namedParameters().map(([n]) => n)).toEqual(
      scheme === 'int4'
        ? ['gate_proj.qweight', 'gate_proj.scales', 'gate_proj.zeros', 'up_proj.qweight', 'up_proj.scales', 'up_proj.zeros', 'down_proj.qweight', 'down_proj.scales', 'down_proj.zeros']
        : ['gate_proj.qweight', 'gate_proj.scales', 'up_proj.qweight', 'up_proj.scales', 'down_proj.qweight', 'down_proj.scales'],
    );
    const tensors = tf.memory().numTensors;
    const out = mlp.forward(x);
    const got = (await out.data()) as Float32Array;
    out.dispose();
    expect(tf.memory().numTensors).toBe(tensors);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    expect(worst).toBeGreaterThan(0); // it did change the weights
    expect(worst).toBeLessThan(scheme === 'int8' ? 0.02 : 0.5);
    x.dispose();
    mlp.dispose();
  });

  it('selects layers by glob, RegExp or predicate; rejects a bad scheme, empty selections and adapters', () => {
    const make = () => GatedMLP.create(16, 32);
    const a = make();
    expect(quantize(a, { scheme: 'int8', targets: ['*_proj'] }).layers).toHaveLength(3);
    a.dispose();
    const b = make();
    expect(quantize(b, { scheme: 'int8', targets: [/^down/] }).layers).toEqual(['down_proj']);
    b.dispose();
    const c = make();
    expect(quantize(c, { scheme: 'int4', groupSize: 8, targets: (name) => name.startsWith('up') }).layers).toEqual(['up_proj']);
    expect(() => quantize(c, { scheme: 'int8', targets: ['nothing'] })).toThrow(/select no Linear layer/);
    expect(() => quantize(c, { scheme: 'fp4' as QuantScheme })).toThrow(ConfigError);
    c.dispose();
    const d = make();
    const linear = d.namedModules().find(([n]) => n === 'gate_proj')![1] as Linear;
    linear.setDelegate(QuantizedLinear.fromLinear(linear, { scheme: 'int8' }));
    expect(() => quantize(d, { scheme: 'int8' })).toThrow(/gate_proj forwards to QuantizedLinear .*merge or remove it first/);
    d.dispose();
  });
});
