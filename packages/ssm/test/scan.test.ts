// The fused selective-scan kernels against the naive tfjs-ops scan, values and gradients of every input, over a
// grid of shapes and options, on every backend under test; the single-step update against the scan.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendError, ConfigError, ShapeError, initBackend, type BackendName } from '@slmkit/core';
import { hasFusedSelectiveScan, selectiveScan, selectiveScanLastRun, selectiveStateUpdate } from '../src/index.js';
import { setScanSimd } from '../src/ops/wasm/scan-simd.js';
import { SCAN_GRAD_KERNEL, scanGradientLastRun } from '../src/ops/kernels-cpu.js';
import { BACKENDS, diff, uniform } from './helpers.js';

interface Case {
  Bt: number;
  D: number;
  L: number;
  N: number;
  G?: number; // grouped B/C
  skip: boolean; // D
  gate: boolean; // z
  bias: boolean; // deltaBias
  softplus: boolean;
  init: boolean; // initialState
}

const GRID: Case[] = [
  { Bt: 1, D: 3, L: 1, N: 4, skip: true, gate: true, bias: true, softplus: true, init: true },
  { Bt: 2, D: 4, L: 13, N: 4, skip: true, gate: true, bias: true, softplus: true, init: true },
  { Bt: 2, D: 5, L: 7, N: 16, skip: false, gate: false, bias: false, softplus: false, init: false },
  { Bt: 1, D: 6, L: 9, N: 16, skip: true, gate: false, bias: true, softplus: true, init: false },
  { Bt: 2, D: 4, L: 5, N: 4, G: 2, skip: false, gate: true, bias: false, softplus: true, init: true },
  { Bt: 3, D: 2, L: 17, N: 4, skip: true, gate: true, bias: false, softplus: false, init: true },
  // N not a multiple of the SIMD width: the wasm kernel pads the states to 8
  { Bt: 2, D: 3, L: 6, N: 6, G: 3, skip: true, gate: true, bias: true, softplus: true, init: true },
];

const id = (c: Case): string =>
  `B${c.Bt} D${c.D} L${c.L} N${c.N}${c.G ? ` G${c.G}` : ''}${c.skip ? ' +D' : ''}${c.gate ? ' +z' : ''}${c.bias ? ' +bias' : ''}${c.softplus ? ' softplus' : ''}${c.init ? ' +h0' : ''}`;

function inputs(c: Case, seed: number): Record<string, tf.Tensor> {
  const bc = c.G ? [c.Bt, c.G, c.N, c.L] : [c.Bt, c.N, c.L];
  const x: Record<string, tf.Tensor> = {
    u: uniform([c.Bt, c.D, c.L], seed),
    // Without the softplus, delta is used as is: keep it positive, as a step size is.
    delta: uniform([c.Bt, c.D, c.L], seed + 1, c.softplus ? -2 : 0.05, c.softplus ? 1 : 0.6),
    A: tf.neg(tf.exp(uniform([c.D, c.N], seed + 2, -1, 1))),
    B: uniform(bc, seed + 3),
    C: uniform(bc, seed + 4),
  };
  if (c.skip) x.D = uniform([c.D], seed + 5);
  if (c.gate) x.z = uniform([c.Bt, c.D, c.L], seed + 6, -2, 2);
  if (c.bias) x.deltaBias = uniform([c.D], seed + 7);
  if (c.init) x.initialState = uniform([c.Bt, c.D, c.N], seed + 8);
  return x;
}

const measured: string[] = [];
afterAll(() => console.log(`selectiveScan fused vs naive, max abs diff (values / gradients):\n${measured.join('\n')}`));

it('has fused forward and backward kernels on cpu, wasm and webgpu', () => {
  for (const backend of ['cpu', 'wasm', 'webgpu']) {
    expect(hasFusedSelectiveScan(backend), backend).toBe(true);
    expect(tf.getKernel(SCAN_GRAD_KERNEL, backend), `${backend} backward`).toBeDefined();
  }
});

// On cpu and wasm the forward runs on WebAssembly SIMD; the plain typed-array loop (for engines without SIMD) is
// tested too, on cpu.
const RUNS: [string, BackendName, boolean][] = BACKENDS.filter((b) => hasFusedSelectiveScan(b)).map((b) => [b, b, true]);
if (RUNS.some(([b]) => b === 'cpu')) RUNS.push(['cpu without SIMD', 'cpu', false]);

describe.each(RUNS)('selectiveScan on %s', (label, backend, simd) => {
  beforeAll(async () => {
    await initBackend(backend);
    setScanSimd(simd);
  });
  afterAll(() => setScanSimd(true));

  it('says which implementation ran', () => {
    const x = inputs(GRID[0], 1);
    const y = selectiveScan(x.u, x.delta, x.A, x.B, x.C);
    expect(selectiveScanLastRun()).toEqual({ op: 'SlmkitSelectiveScan', backend, implementation: 'fused' });
    selectiveScan(x.u, x.delta, x.A, x.B, x.C, { implementation: 'naive' }).dispose();
    expect(selectiveScanLastRun()?.implementation).toBe('naive');
    tf.dispose([y, ...Object.values(x)]);
  });

  it.each(GRID.map((c) => [id(c), c] as const))('fused equals naive in values and gradients: %s', async (_, c) => {
    const x = inputs(c, 11);
    const names = Object.keys(x);
    const before = tf.memory().numTensors;
    const run = (impl: 'fused' | 'naive') => (...xs: tf.Tensor[]) => {
      const t = Object.fromEntries(names.map((n, i) => [n, xs[i]]));
      const { y, lastState } = selectiveScan(t.u, t.delta, t.A, t.B, t.C, {
        D: t.D,
        z: t.z,
        deltaBias: t.deltaBias,
        initialState: t.initialState,
        deltaSoftplus: c.softplus,
        returnLastState: true,
        implementation: impl,
      });
      return { y, lastState };
    };
    const wy = uniform([c.Bt, c.D, c.L], 99);
    const wh = uniform([c.Bt, c.D, c.N], 98);
    const loss = (impl: 'fused' | 'naive') => (...xs: tf.Tensor[]) => {
      const { y, lastState } = run(impl)(...xs);
      return tf.add(tf.sum(tf.mul(y, wy)), tf.sum(tf.mul(lastState, wh)));
    };
    const xs = names.map((n) => x[n]);
    const f = run('fused')(...xs);
    const n = run('naive')(...xs);
    const dy = diff(await f.y.data(), await n.y.data());
    const dh = diff(await f.lastState.data(), await n.lastState.data());
    const tol = backend === 'webgpu' ? 1e-5 : 2e-5;
    expect(dy.abs, 'y').toBeLessThanOrEqual(tol * Math.max(1, dy.scale));
    expect(dh.abs, 'lastState').toBeLessThanOrEqual(tol * Math.max(1, dh.scale));
    const gf = tf.grads(loss('fused'))(xs);
    // The fused scan's gradient ran this backend's backward kernel, not tf.grads of the naive scan.
    expect(scanGradientLastRun()).toEqual({ backend, path: 'kernel' });
    const gn = tf.grads(loss('naive'))(xs);
    let worst = 0;
    for (let i = 0; i < names.length; i++) {
      expect(gf[i].shape, names[i]).toEqual(xs[i].shape);
      const d = diff(await gf[i].data(), await gn[i].data());
      worst = Math.max(worst, d.abs);
      expect(d.abs, `d${names[i]}`).toBeLessThanOrEqual(5 * tol * Math.max(1, d.scale));
    }
    tf.dispose([f.y, f.lastState, n.y, n.lastState, ...gf, ...gn]);
    expect(tf.memory().numTensors).toBe(before + 2); // wy, wh
    tf.dispose([wy, wh, ...xs]);
    measured.push(`${label} ${id(c)}: ${Math.max(dy.abs, dh.abs).toExponential(2)} / ${worst.toExponential(2)}`);
  });

  it('matches naive where decays underflow, steps are large and inputs are not finite', async () => {
    const c: Case = { Bt: 1, D: 4, L: 11, N: 8, skip: true, gate: true, bias: false, softplus: true, init: true };
    const x = inputs(c, 21);
    // Steps up to 60 (softplus is the identity above 20) and A down to -e^5: dt·A reaches -9000, far below where
    // float32 exp underflows; a large gate argument saturates the sigmoid.
    const delta = uniform([1, 4, 11], 22, -5, 60);
    const A = tf.neg(tf.exp(uniform([4, 8], 23, -1, 5)));
    const z = uniform([1, 4, 11], 24, -120, 120);
    const opts = { D: x.D, z, initialState: x.initialState, deltaSoftplus: true, returnLastState: true } as const;
    const f = selectiveScan(x.u, delta, A, x.B, x.C, opts);
    const n = selectiveScan(x.u, delta, A, x.B, x.C, { ...opts, implementation: 'naive' });
    for (const k of ['y', 'lastState'] as const) {
      const d = diff(await f[k].data(), await n[k].data());
      expect(d.abs, k).toBeLessThanOrEqual(2e-5 * Math.max(1, d.scale));
    }
    // A NaN input poisons its channel's outputs as it does naive's, never silently becoming a number.
    const u = tf.tensor(Float32Array.from(await x.u.data(), (v, i) => (i === 3 ? NaN : v)), x.u.shape);
    const y = await selectiveScan(u, delta, A, x.B, x.C, { deltaSoftplus: true }).data();
    expect(Number.isNaN(y[3]) && Number.isNaN(y[10])).toBe(true);
    expect(y.slice(11).every(Number.isFinite)).toBe(true);
    tf.dispose([f.y, f.lastState, n.y, n.lastState, delta, A, z, u, ...Object.values(x)]);
  });

  it('a scan of L then k single-step updates equals one scan of L + k', async () => {
    const c: Case = { Bt: 2, D: 4, L: 9, N: 4, skip: true, gate: true, bias: true, softplus: true, init: false };
    const x = inputs(c, 5);
    const opts = { D: x.D, deltaBias: x.deltaBias, deltaSoftplus: true };
    const full = selectiveScan(x.u, x.delta, x.A, x.B, x.C, { ...opts, z: x.z });
    const Lp = 6;
    const head = (t: tf.Tensor, from: number, len: number) => tf.slice(t, [0, 0, from], [t.shape[0], t.shape[1]!, len]);
    const pre = selectiveScan(head(x.u, 0, Lp), head(x.delta, 0, Lp), x.A, head(x.B, 0, Lp), head(x.C, 0, Lp), {
      ...opts,
      z: head(x.z, 0, Lp),
      returnLastState: true,
    });
    const ys = [pre.y];
    let state = pre.lastState;
    for (let t = Lp; t < c.L; t++) {
      const at = (v: tf.Tensor) => tf.squeeze(head(v, t, 1), [2]);
      const step = selectiveStateUpdate(state, at(x.u), at(x.delta), x.A, at(x.B), at(x.C), { ...opts, z: at(x.z) });
      ys.push(tf.expandDims(step.y, 2));
      state.dispose();
      state = step.state;
    }
    const stitched = tf.concat(ys, 2);
    const d = diff(await stitched.data(), await full.data());
    expect(d.abs).toBeLessThanOrEqual(1e-5 * Math.max(1, d.scale));
    tf.dispose([full, stitched, state, ...ys, ...Object.values(x)]);
  });

  it('leaves no tensors behind, nor backend buffers', async () => {
    const x = inputs(GRID[1], 3);
    const before = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    const { y, lastState } = selectiveScan(x.u, x.delta, x.A, x.B, x.C, { D: x.D, z: x.z, returnLastState: true });
    tf.dispose([y, lastState]);
    const [gu, gh0] = tf.grads((u: tf.Tensor, h0: tf.Tensor) =>
      tf.sum(selectiveScan(u, x.delta, x.A, x.B, x.C, { D: x.D, z: x.z, initialState: h0, deltaSoftplus: true })),
    )([x.u, x.initialState]);
    await gu.data(); // on webgpu, buffers used by queued work are released once it is submitted
    tf.dispose([gu, gh0]);
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.engine().backend.numDataIds()).toBe(buffers);
    tf.dispose(Object.values(x));
  });
});

describe.runIf(BACKENDS.includes('webgpu'))('selectiveScan on webgpu beyond its state size', () => {
  beforeAll(async () => {
    await initBackend('webgpu');
  });

  it('throws a BackendError naming N for N > 256, forward and backward', () => {
    const [u, delta] = [tf.ones([1, 1, 2]), tf.ones([1, 1, 2])];
    const A = tf.fill([1, 257], -1);
    const [B, C] = [tf.ones([1, 257, 2]), tf.ones([1, 257, 2])];
    expect(() => selectiveScan(u, delta, A, B, C)).toThrow(BackendError);
    expect(() => selectiveScan(u, delta, A, B, C)).toThrow(/N must be at most 256 .*found 257/);
    const none = tf.zeros([0]);
    const inputs = { u, delta, A, B, C, D: none, z: none, deltaBias: none, initialState: none, dy: u };
    const attrs = { deltaSoftplus: false, returnLastState: false };
    expect(() => tf.engine().runKernel(SCAN_GRAD_KERNEL, inputs, attrs)).toThrow(/N must be at most 256 .*found 257/);
    tf.dispose([u, delta, A, B, C, none]);
  });
});

describe('selectiveScan input errors', () => {
  const x = { u: tf.zeros([1, 4, 5]), delta: tf.zeros([1, 4, 5]), A: tf.zeros([4, 2]), B: tf.zeros([1, 2, 5]), C: tf.zeros([1, 2, 5]) };
  it('names the input whose shape is wrong, with the numbers', () => {
    expect(() => selectiveScan(x.u, tf.zeros([1, 4, 6]), x.A, x.B, x.C)).toThrow(ShapeError);
    expect(() => selectiveScan(x.u, tf.zeros([1, 4, 6]), x.A, x.B, x.C)).toThrow(/delta must be float32 \[B, D, L\] = \[1, 4, 5\]/);
    expect(() => selectiveScan(x.u, x.delta, tf.zeros([3, 2]), x.B, x.C)).toThrow(/A must be/);
    expect(() => selectiveScan(x.u, x.delta, x.A, tf.zeros([1, 3, 5]), x.C)).toThrow(/B must be/);
    expect(() => selectiveScan(x.u, x.delta, x.A, x.B, tf.zeros([1, 2, 4]))).toThrow(/C must be/);
    expect(() => selectiveScan(x.u, x.delta, x.A, tf.zeros([1, 3, 2, 5]), tf.zeros([1, 3, 2, 5]))).toThrow(/G dividing D = 4/);
    expect(() => selectiveScan(x.u, x.delta, x.A, x.B, x.C, { D: tf.zeros([3]) })).toThrow(/D must be/);
    expect(() => selectiveScan(x.u, x.delta, x.A, x.B, x.C, { initialState: tf.zeros([1, 4, 3]) })).toThrow(/initialState must be/);
    expect(() => selectiveScan(tf.zeros([1, 4, 5], 'int32'), x.delta, x.A, x.B, x.C)).toThrow(/u must be float32/);
  });
  it('rejects non-boolean flags', () => {
    expect(() => selectiveScan(x.u, x.delta, x.A, x.B, x.C, { deltaSoftplus: 1 as unknown as boolean })).toThrow(ConfigError);
  });
});

describe('selectiveScan on a backend without the fused kernel', () => {
  // A backend named "plain" with every cpu kernel except the scan's.
  beforeAll(async () => {
    await initBackend('cpu');
    const cpu = tf.findBackend('cpu')!;
    tf.registerBackend('plain', () => cpu);
    for (const k of tf.getKernelsForBackend('cpu')) {
      if (!k.kernelName.startsWith('SlmkitSelectiveScan')) tf.registerKernel({ ...k, backendName: 'plain' });
    }
    await tf.setBackend('plain');
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('throws a ConfigError for implementation "fused", and falls back to naive with one warning otherwise', async () => {
    const x = inputs(GRID[1], 31);
    expect(hasFusedSelectiveScan()).toBe(false);
    expect(() => selectiveScan(x.u, x.delta, x.A, x.B, x.C, { implementation: 'fused' })).toThrow(ConfigError);
    expect(() => selectiveScan(x.u, x.delta, x.A, x.B, x.C, { implementation: 'fused' })).toThrow(/no fused kernel registered for backend "plain"/);
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args.join(' '));
    try {
      const a = selectiveScan(x.u, x.delta, x.A, x.B, x.C, { D: x.D });
      expect(selectiveScanLastRun()).toEqual({ op: 'SlmkitSelectiveScan', backend: 'plain', implementation: 'naive' });
      const b = selectiveScan(x.u, x.delta, x.A, x.B, x.C, { D: x.D });
      expect(warnings).toHaveLength(1);
      expect(String(warnings[0])).toMatch(/no fused kernel on "plain"/);
      await tf.setBackend('cpu');
      const fused = selectiveScan(x.u, x.delta, x.A, x.B, x.C, { D: x.D });
      const d = diff(await fused.data(), await a.data());
      expect(d.abs).toBeLessThanOrEqual(2e-5 * Math.max(1, d.scale));
      tf.dispose([a, b, fused]);
    } finally {
      console.warn = warn;
    }
    tf.dispose(Object.values(x));
  });
});

describe('selectiveScan gradient on a backend with the forward kernel but no backward kernel', () => {
  // A backend named "forwardonly" with every cpu kernel except the backward one: the shared gradient falls back to
  // tf.grads of the naive scan there.
  beforeAll(async () => {
    await initBackend('cpu');
    const cpu = tf.findBackend('cpu')!;
    tf.registerBackend('forwardonly', () => cpu);
    for (const k of tf.getKernelsForBackend('cpu')) {
      if (k.kernelName !== SCAN_GRAD_KERNEL) tf.registerKernel({ ...k, backendName: 'forwardonly' });
    }
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('differentiates the fused forward through the naive scan, as the backward kernel does', async () => {
    const c = GRID[1]; // every option on
    const x = inputs(c, 41);
    const names = Object.keys(x);
    const wy = uniform([c.Bt, c.D, c.L], 42);
    const wh = uniform([c.Bt, c.D, c.N], 43);
    const loss = (...xs: tf.Tensor[]) => {
      const t = Object.fromEntries(names.map((n, i) => [n, xs[i]]));
      const { y, lastState } = selectiveScan(t.u, t.delta, t.A, t.B, t.C, {
        D: t.D,
        z: t.z,
        deltaBias: t.deltaBias,
        initialState: t.initialState,
        deltaSoftplus: true,
        returnLastState: true,
        implementation: 'fused',
      });
      return tf.add(tf.sum(tf.mul(y, wy)), tf.sum(tf.mul(lastState, wh)));
    };
    const xs = names.map((n) => x[n]);
    const viaKernel = tf.grads(loss)(xs);
    expect(scanGradientLastRun()).toEqual({ backend: 'cpu', path: 'kernel' });
    const expected = await Promise.all(viaKernel.map((g) => g.data()));
    await tf.setBackend('forwardonly');
    const before = tf.memory().numTensors;
    const viaNaive = tf.grads(loss)(xs);
    expect(selectiveScanLastRun()).toEqual({ op: 'SlmkitSelectiveScan', backend: 'forwardonly', implementation: 'fused' });
    expect(scanGradientLastRun()).toEqual({ backend: 'forwardonly', path: 'naive' });
    for (let i = 0; i < names.length; i++) {
      const d = diff(await viaNaive[i].data(), expected[i]);
      expect(d.abs, `d${names[i]}`).toBeLessThanOrEqual(1e-4 * Math.max(1, d.scale));
    }
    tf.dispose(viaNaive);
    expect(tf.memory().numTensors).toBe(before);
    await tf.setBackend('cpu');
    tf.dispose([...viaKernel, wy, wh, ...xs]);
  });
});
