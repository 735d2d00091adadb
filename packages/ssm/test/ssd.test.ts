// Mamba-2's ssdScan: the naive recurrence against a plain-JS loop written here; the chunked and fused forms
// against naive, values and gradients of every input, over a grid of shapes and options, on every backend under
// test; the single-step update against the scan.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError, initBackend } from '@slmkit/core';
import { hasFusedSsdScan, ssdScan, ssdScanLastRun, ssdStateUpdate, type SsdImplementation } from '../src/index.js';
import { BACKENDS, diff, uniform } from './helpers.js';

interface Case {
  Bt: number;
  L: number;
  H: number;
  P: number;
  G: number;
  N: number;
  Q: number; // chunk size
  skip: boolean; // D
  gate: boolean; // z
  bias: boolean; // dtBias
  softplus: boolean;
  limit?: [number, number]; // dtLimit
  init: boolean; // initialState
}

const GRID: Case[] = [
  { Bt: 1, L: 1, H: 2, P: 3, G: 1, N: 4, Q: 4, skip: true, gate: true, bias: true, softplus: true, init: true },
  { Bt: 2, L: 13, H: 4, P: 3, G: 2, N: 4, Q: 4, skip: true, gate: true, bias: true, softplus: true, limit: [0.3, 2], init: true },
  { Bt: 2, L: 7, H: 2, P: 2, G: 1, N: 8, Q: 8, skip: false, gate: false, bias: false, softplus: true, init: false },
  { Bt: 1, L: 16, H: 4, P: 2, G: 2, N: 4, Q: 8, skip: true, gate: false, bias: true, softplus: true, limit: [0.5, Infinity], init: true },
  { Bt: 2, L: 9, H: 2, P: 4, G: 2, N: 4, Q: 3, skip: false, gate: true, bias: false, softplus: false, init: false },
  { Bt: 3, L: 5, H: 3, P: 2, G: 1, N: 4, Q: 2, skip: true, gate: true, bias: false, softplus: false, init: true },
];

const id = (c: Case): string =>
  `B${c.Bt} L${c.L} H${c.H} P${c.P} G${c.G} N${c.N} Q${c.Q}${c.skip ? ' +D' : ''}${c.gate ? ' +z' : ''}${c.bias ? ' +bias' : ''}${c.softplus ? ' softplus' : ''}${c.limit ? ` limit[${c.limit}]` : ''}${c.init ? ' +h0' : ''}`;

function inputs(c: Case, seed: number): Record<string, tf.Tensor> {
  const x: Record<string, tf.Tensor> = {
    x: uniform([c.Bt, c.L, c.H, c.P], seed),
    // Without the softplus, dt is used as is: keep it positive, as a step size is.
    dt: uniform([c.Bt, c.L, c.H], seed + 1, c.softplus ? -2 : 0.05, c.softplus ? 1.5 : 0.8),
    A: tf.neg(tf.exp(uniform([c.H], seed + 2, -1, 1))),
    B: uniform([c.Bt, c.L, c.G, c.N], seed + 3),
    C: uniform([c.Bt, c.L, c.G, c.N], seed + 4),
  };
  if (c.skip) x.D = uniform([c.H], seed + 5);
  if (c.gate) x.z = uniform([c.Bt, c.L, c.H, c.P], seed + 6, -2, 2);
  if (c.bias) x.dtBias = uniform([c.H], seed + 7);
  if (c.init) x.initialState = uniform([c.Bt, c.H, c.P, c.N], seed + 8);
  return x;
}

const measured: string[] = [];
afterAll(() => console.log(`ssdScan vs naive, max abs diff (values / gradients):\n${measured.join('\n')}`));

it('has fused kernels on cpu, wasm and webgpu', () => {
  expect(hasFusedSsdScan('cpu')).toBe(true);
  expect(hasFusedSsdScan('wasm')).toBe(true);
  expect(hasFusedSsdScan('webgpu')).toBe(true);
});

describe.each(BACKENDS)('ssdScan on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('the naive scan is the recurrence, written out here in plain JS', async () => {
    // One head, one group, P = 2, N = 3, with D, z, dtBias, softplus, a lower clamp and an initial state.
    const [L, P, N] = [5, 2, 3];
    const c: Case = { Bt: 1, L, H: 1, P, G: 1, N, Q: 2, skip: true, gate: true, bias: true, softplus: true, limit: [0.4, Infinity], init: true };
    const t = inputs(c, 21);
    const v = Object.fromEntries(await Promise.all(Object.entries(t).map(async ([k, x]) => [k, Array.from(await x.data())]))) as Record<string, number[]>;
    const S = v.initialState.slice(); // [P, N]
    const want: number[] = [];
    for (let s = 0; s < L; s++) {
      const sp = Math.log1p(Math.exp(v.dt[s] + v.dtBias[0]));
      const step = Math.max(sp, 0.4);
      const decay = Math.exp(step * v.A[0]);
      for (let p = 0; p < P; p++) {
        let y = 0;
        for (let n = 0; n < N; n++) {
          S[p * N + n] = decay * S[p * N + n] + step * v.x[s * P + p] * v.B[s * N + n];
          y += S[p * N + n] * v.C[s * N + n];
        }
        y += v.D[0] * v.x[s * P + p];
        const zv = v.z[s * P + p];
        want.push(y * zv / (1 + Math.exp(-zv)));
      }
    }
    for (const impl of ['naive', 'chunked', 'fused'] as const) {
      const { y, finalState } = ssdScan(t.x, t.dt, t.A, t.B, t.C, {
        D: t.D, z: t.z, dtBias: t.dtBias, dtSoftplus: true, dtLimit: [0.4, Infinity], initialState: t.initialState,
        chunkSize: 2, returnFinalState: true, implementation: impl,
      });
      expect(diff(await y.data(), want).abs, impl).toBeLessThan(2e-5);
      expect(diff(await finalState.data(), S).abs, impl).toBeLessThan(2e-5);
      tf.dispose([y, finalState]);
    }
    tf.dispose(Object.values(t));
  });

  it('says which implementation ran', () => {
    const x = inputs(GRID[2], 1);
    for (const impl of ['naive', 'chunked', 'fused'] as const) {
      ssdScan(x.x, x.dt, x.A, x.B, x.C, { implementation: impl }).dispose();
      expect(ssdScanLastRun()).toEqual({ op: 'SlmkitSsdScan', backend, implementation: impl });
    }
    ssdScan(x.x, x.dt, x.A, x.B, x.C).dispose();
    expect(ssdScanLastRun()?.implementation).toBe('fused');
    tf.dispose(Object.values(x));
  });

  it.each(GRID.map((c) => [id(c), c] as const))('chunked and fused equal naive in values and gradients: %s', async (_, c) => {
    const x = inputs(c, 11);
    const names = Object.keys(x);
    const wy = uniform([c.Bt, c.L, c.H, c.P], 99);
    const wh = uniform([c.Bt, c.H, c.P, c.N], 98);
    const before = tf.memory().numTensors;
    const run = (impl: SsdImplementation) => (...xs: tf.Tensor[]) => {
      const t = Object.fromEntries(names.map((n, i) => [n, xs[i]]));
      return ssdScan(t.x, t.dt, t.A, t.B, t.C, {
        D: t.D,
        z: t.z,
        dtBias: t.dtBias,
        initialState: t.initialState,
        dtSoftplus: c.softplus,
        dtLimit: c.limit,
        chunkSize: c.Q,
        returnFinalState: true,
        implementation: impl,
      });
    };
    const loss = (impl: SsdImplementation) => (...xs: tf.Tensor[]) => {
      const { y, finalState } = run(impl)(...xs);
      return tf.add(tf.sum(tf.mul(y, wy)), tf.sum(tf.mul(finalState, wh)));
    };
    const xs = names.map((n) => x[n]);
    const ref = run('naive')(...xs);
    const gRef = tf.grads(loss('naive'))(xs);
    const tol = 2e-5;
    let worstV = 0;
    let worstG = 0;
    for (const impl of ['chunked', 'fused'] as const) {
      const out = run(impl)(...xs);
      const dy = diff(await out.y.data(), await ref.y.data());
      const dh = diff(await out.finalState.data(), await ref.finalState.data());
      expect(dy.abs, `${impl} y`).toBeLessThanOrEqual(tol * Math.max(1, dy.scale));
      expect(dh.abs, `${impl} finalState`).toBeLessThanOrEqual(tol * Math.max(1, dh.scale));
      worstV = Math.max(worstV, dy.abs, dh.abs);
      const g = tf.grads(loss(impl))(xs);
      for (let i = 0; i < names.length; i++) {
        expect(g[i].shape, names[i]).toEqual(xs[i].shape);
        const d = diff(await g[i].data(), await gRef[i].data());
        worstG = Math.max(worstG, d.abs);
        expect(d.abs, `${impl} d${names[i]}`).toBeLessThanOrEqual(5 * tol * Math.max(1, d.scale));
      }
      tf.dispose([out.y, out.finalState, ...g]);
    }
    tf.dispose([ref.y, ref.finalState, ...gRef]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([wy, wh, ...xs]);
    measured.push(`${backend} ${id(c)}: ${worstV.toExponential(2)} / ${worstG.toExponential(2)}`);
  });

  it('a scan of L then k single-step updates equals one scan of L + k', async () => {
    const c = GRID[1];
    const x = inputs(c, 5);
    const opts = { D: x.D, dtBias: x.dtBias, dtSoftplus: true, dtLimit: c.limit };
    const full = ssdScan(x.x, x.dt, x.A, x.B, x.C, { ...opts, z: x.z, chunkSize: 4 });
    const Lp = 9;
    const part = (t: tf.Tensor, from: number, len: number) => tf.slice(t, [0, from], [t.shape[0], len]);
    const pre = ssdScan(part(x.x, 0, Lp), part(x.dt, 0, Lp), x.A, part(x.B, 0, Lp), part(x.C, 0, Lp), {
      ...opts,
      z: part(x.z, 0, Lp),
      chunkSize: 4,
      returnFinalState: true,
    });
    const ys = [pre.y];
    let state = pre.finalState;
    for (let t = Lp; t < c.L; t++) {
      const at = (v: tf.Tensor) => tf.squeeze(part(v, t, 1), [1]);
      const step = ssdStateUpdate(state, at(x.x), at(x.dt), x.A, at(x.B), at(x.C), { ...opts, z: at(x.z) });
      ys.push(tf.expandDims(step.y, 1));
      state.dispose();
      state = step.state;
    }
    const stitched = tf.concat(ys, 1);
    const d = diff(await stitched.data(), await full.data());
    expect(d.abs).toBeLessThanOrEqual(1e-5 * Math.max(1, d.scale));
    tf.dispose([full, stitched, state, ...ys, ...Object.values(x)]);
  });

  it('leaves no tensors behind', () => {
    const x = inputs(GRID[1], 3);
    const before = tf.memory().numTensors;
    for (const implementation of ['naive', 'chunked', 'fused'] as const) {
      const { y, finalState } = ssdScan(x.x, x.dt, x.A, x.B, x.C, { D: x.D, z: x.z, returnFinalState: true, chunkSize: 4, implementation });
      tf.dispose([y, finalState]);
      const g = tf.grad((u: tf.Tensor) => tf.sum(ssdScan(u, x.dt, x.A, x.B, x.C, { chunkSize: 4, implementation })))(x.x);
      g.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(Object.values(x));
  });
});

describe('ssdScan input errors', () => {
  const x = { x: tf.zeros([1, 5, 4, 2]), dt: tf.zeros([1, 5, 4]), A: tf.zeros([4]), B: tf.zeros([1, 5, 2, 3]), C: tf.zeros([1, 5, 2, 3]) };
  it('names the input whose shape is wrong, with the numbers', () => {
    expect(() => ssdScan(x.x, tf.zeros([1, 5, 3]), x.A, x.B, x.C)).toThrow(ShapeError);
    expect(() => ssdScan(x.x, tf.zeros([1, 5, 3]), x.A, x.B, x.C)).toThrow(/dt must be float32 \[B, L, H\] = \[1, 5, 4\]/);
    expect(() => ssdScan(x.x, x.dt, tf.zeros([3]), x.B, x.C)).toThrow(/A must be float32 \[H\] = \[4\]/);
    expect(() => ssdScan(x.x, x.dt, x.A, tf.zeros([1, 5, 3, 3]), tf.zeros([1, 5, 3, 3]))).toThrow(/G dividing H = 4/);
    expect(() => ssdScan(x.x, x.dt, x.A, x.B, tf.zeros([1, 5, 2, 4]))).toThrow(/C must be/);
    expect(() => ssdScan(x.x, x.dt, x.A, x.B, x.C, { D: tf.zeros([2]) })).toThrow(/D must be/);
    expect(() => ssdScan(x.x, x.dt, x.A, x.B, x.C, { z: tf.zeros([1, 5, 4, 3]) })).toThrow(/z must be/);
    expect(() => ssdScan(x.x, x.dt, x.A, x.B, x.C, { initialState: tf.zeros([1, 4, 2, 4]) })).toThrow(/initialState must be float32 \[B, H, P, N\] = \[1, 4, 2, 3\]/);
    expect(() => ssdScan(tf.zeros([1, 5, 4, 2], 'int32'), x.dt, x.A, x.B, x.C)).toThrow(/x must be float32/);
  });
  it('rejects bad options with the field named', () => {
    expect(() => ssdScan(x.x, x.dt, x.A, x.B, x.C, { dtSoftplus: 1 as unknown as boolean })).toThrow(ConfigError);
    expect(() => ssdScan(x.x, x.dt, x.A, x.B, x.C, { chunkSize: 0 })).toThrow(/chunkSize must be a positive integer, found 0/);
    expect(() => ssdScan(x.x, x.dt, x.A, x.B, x.C, { dtLimit: [1, 0] })).toThrow(/dtLimit must be \[min, max\] with min ≤ max, found \[1,0\]/);
    expect(() => ssdScan(x.x, x.dt, x.A, x.B, x.C, { implementation: 'fast' as 'fused' })).toThrow(/implementation/);
  });
});
