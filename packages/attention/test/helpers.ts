// Test support: a seeded PRNG, an independent float64 attention reference written with plain loops over number[]
// (never tfjs ops, so a shared tfjs bug cannot hide), builders of blocks with known weights, and backend runners.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { backendsUnderTest, prng, randn } from '@slmkit/fixtures';

export { prng, randn };
export { expectClose } from '@slmkit/fixtures/assert';
import { Linear, RMSNorm, initBackend } from '@slmkit/core';

/** Reads a tensor and disposes it. */
export async function take(t: tf.Tensor): Promise<number[]> {
  const v = Array.from(await t.data());
  t.dispose();
  return v;
}

/** A Linear with seeded random weights (scaled), and those weights as numbers. */
export function linear(inF: number, outF: number, seed: number, bias = false, scale = 1): Linear {
  const lin = new Linear(inF, outF, { bias, seed });
  if (scale !== 1) {
    const scaled = tf.mul(lin.weight, scale);
    lin.weight.assign(scaled);
    scaled.dispose();
  }
  return lin;
}

/** An RMSNorm whose weight is seeded random around 1. */
export function rmsNorm(dim: number, seed: number): RMSNorm {
  const n = new RMSNorm(dim, { eps: 1e-6 });
  const w = randn(dim, seed, 0.2).map((x) => 1 + x);
  const t = tf.tensor1d(w);
  n.weight!.assign(t);
  t.dispose();
  return n;
}

export function values(v: tf.Variable | undefined): number[] | null {
  return v == null ? null : Array.from(v.dataSync());
}

/** A Linear's weight in Hugging Face's layout `[out, in]` (the variable itself is `[in, out]`); the caller owns it. */
export function hfWeight(lin: Linear): tf.Tensor2D {
  const { weight, ...rest } = lin.stateDict();
  tf.dispose(Object.values(rest));
  return weight as tf.Tensor2D;
}

/** A Linear's parameters as the float64 reference takes them: `w` `[out, in]` row-major, `b` or null. */
export function refLinearOf(lin: Linear): RefLinear {
  const w = hfWeight(lin);
  const out = { w: Array.from(w.dataSync()), b: values(lin.bias) };
  w.dispose();
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The float64 reference.

export interface RefLinear {
  w: number[]; // [out, in]
  b: number[] | null;
}

export interface RefParams {
  B: number;
  T: number;
  D: number;
  H: number;
  KV: number;
  Dh: number;
  Dv: number;
  x: number[]; // [B, T, D]
  q: RefLinear;
  k: RefLinear;
  v: RefLinear;
  o: RefLinear;
  scale: number;
  softcap?: number | null;
  causal?: boolean;
  window?: number | null;
  prefix?: number;
  /** [B, T] 1/0 */
  mask?: number[][];
  qNorm?: number[] | null; // RMSNorm weight
  kNorm?: number[] | null;
  normScope?: 'head' | 'projection';
  /** rotary: base and rotaryDim; positions [B][T] (default slot positions) */
  rotary?: { base: number; rotaryDim: number } | null;
  ropePositions?: number[][];
  /** first slot position (default 0) */
  start?: number;
}

export function refLinear(x: number[], rows: number, inF: number, p: RefLinear): number[] {
  const outF = p.w.length / inF;
  const y = new Array<number>(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = p.b == null ? 0 : p.b[o];
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * p.w[o * inF + i];
      y[r * outF + o] = s;
    }
  }
  return y;
}

function refRms(x: number[], dim: number, w: number[]): number[] {
  const y = new Array<number>(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let ms = 0;
    for (let i = 0; i < dim; i++) ms += x[r * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ms / dim + 1e-6);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return y;
}

/** Rotates one head vector (length Dh) in place, HF rotate_half layout, float64 angles. */
function refRope(vec: number[], pos: number, base: number, r: number): number[] {
  const out = vec.slice();
  const h = r / 2;
  for (let i = 0; i < h; i++) {
    const inv = Math.pow(base, (-2 * i) / r);
    const a = pos * inv;
    const c = Math.cos(a);
    const s = Math.sin(a);
    out[i] = vec[i] * c - vec[i + h] * s;
    out[i + h] = vec[i + h] * c + vec[i] * s;
  }
  return out;
}

export function refVisible(qp: number, kp: number, causal: boolean, window: number | null, prefix: number): boolean {
  if (causal && kp > qp) return false;
  if (window != null && qp - kp >= window && kp >= prefix) return false;
  return true;
}

/** The whole block, in float64 loops. Returns [B, T, D]. A row with nothing visible attends to nothing (zeros). */
export function refAttention(p: RefParams): number[] {
  const { B, T, D, H, KV, Dh, Dv } = p;
  const G = H / KV;
  const start = p.start ?? 0;
  const scope = p.normScope ?? 'head';
  const rows = B * T;
  let q = refLinear(p.x, rows, D, p.q); // [B*T, H*Dh]
  let k = refLinear(p.x, rows, D, p.k); // [B*T, KV*Dh]
  const v = refLinear(p.x, rows, D, p.v); // [B*T, KV*Dv]
  if (p.qNorm) q = scope === 'head' ? refRms(q, Dh, p.qNorm) : refRms(q, H * Dh, p.qNorm);
  if (p.kNorm) k = scope === 'head' ? refRms(k, Dh, p.kNorm) : refRms(k, KV * Dh, p.kNorm);
  const head = (arr: number[], n: number, d: number, b: number, t: number, h: number): number[] =>
    arr.slice(((b * T + t) * n + h) * d, ((b * T + t) * n + h + 1) * d);
  const ropePos = (b: number, t: number): number => (p.ropePositions ? p.ropePositions[b][t] : start + t);
  const rot = (vec: number[], b: number, t: number): number[] =>
    p.rotary ? refRope(vec, ropePos(b, t), p.rotary.base, p.rotary.rotaryDim) : vec;
  const attn = new Array<number>(rows * H * Dv).fill(0);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / G);
      for (let t = 0; t < T; t++) {
        const qv = rot(head(q, H, Dh, b, t, h), b, t);
        const scores: number[] = [];
        const vis: boolean[] = [];
        for (let s = 0; s < T; s++) {
          const kv = rot(head(k, KV, Dh, b, s, kvh), b, s);
          let dot = 0;
          for (let i = 0; i < Dh; i++) dot += qv[i] * kv[i];
          let sc = dot * p.scale;
          if (p.softcap != null) sc = p.softcap * Math.tanh(sc / p.softcap);
          scores.push(sc);
          const real = p.mask ? p.mask[b][s] === 1 : true;
          vis.push(real && refVisible(start + t, start + s, p.causal ?? true, p.window ?? null, p.prefix ?? 0));
        }
        let m = -Infinity;
        for (let s = 0; s < T; s++) if (vis[s]) m = Math.max(m, scores[s]);
        if (m === -Infinity) continue; // nothing visible: zeros
        let z = 0;
        const w = scores.map((sc, s) => (vis[s] ? Math.exp(sc - m) : 0));
        for (const e of w) z += e;
        for (let s = 0; s < T; s++) {
          if (w[s] === 0) continue;
          const vv = head(v, KV, Dv, b, s, kvh);
          for (let i = 0; i < Dv; i++) attn[((b * T + t) * H + h) * Dv + i] += (w[s] / z) * vv[i];
        }
      }
    }
  }
  return refLinear(attn, rows, H * Dv, p.o);
}

// ---------------------------------------------------------------------------------------------------------------
// Backends.

let backendsPromise: Promise<string[]> | undefined;

/** The backends under test here (cached), leaving cpu current. */
export async function backends(): Promise<string[]> {
  backendsPromise ??= backendsUnderTest(initBackend).then(async (names) => {
    await initBackend('cpu');
    return names;
  });
  return backendsPromise;
}

/** Asserts `run` (which disposes what it returns) leaves the live tensor count unchanged over `times` calls. */
export function expectNoLeak(run: () => void, times = 3): void {
  const before = tf.memory().numTensors;
  for (let i = 0; i < times; i++) run();
  expect(tf.memory().numTensors).toBe(before);
}

/** Disposes the tensors given, skipping undefined ones. */
export function disposeAll(...ts: (tf.Tensor | undefined | null)[]): void {
  for (const t of ts) t?.dispose();
}
