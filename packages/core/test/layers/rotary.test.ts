import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendsUnderTest, listCases, readJson } from '@slmkit/fixtures';
import { initBackend } from '../../src/backend.js';
import { ConfigError, ShapeError } from '../../src/errors.js';
import {
  RotaryEmbedding,
  rotaryConfigFromHF,
  type RopeScaling,
  type RotaryConfig,
} from '../../src/layers/rotary.js';
import { prng } from './helpers.js';
import '../../src/register-gradients.node.js';

// ---------------------------------------------------------------------------------------------------------------
// Independent float64 references, written out from the published formulas (RoFormer; kaiokendev's linear
// interpolation; bloc97 / emozilla NTK; YaRN arXiv 2309.00071 as in transformers; Llama 3.1; LongRoPE / Phi-3).
// ---------------------------------------------------------------------------------------------------------------

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** theta^(-2i/d), i < d/2 */
function refPlain(theta: number, d: number): number[] {
  return range(d / 2).map((i) => theta ** (-(2 * i) / d));
}

function refNtkBase(theta: number, d: number, factor: number): number {
  return theta * factor ** (d / (d - 2));
}

function refDynamic(theta: number, d: number, factor: number, orig: number, seqLen: number): number[] {
  const L = seqLen > orig ? seqLen : orig;
  const newTheta = theta * (factor * (L / orig) - factor + 1) ** (d / (d - 2));
  return refPlain(newTheta, d);
}

function refYarn(
  theta: number,
  d: number,
  factor: number,
  orig: number,
  o: { betaFast?: number; betaSlow?: number; truncate?: boolean } = {},
): number[] {
  const betaFast = o.betaFast ?? 32;
  const betaSlow = o.betaSlow ?? 1;
  // dimension at which a frequency completes `r` full turns over the original context:
  //   orig / (2π θ^(2i/d)) = r  =>  i = d·ln(orig / (2π r)) / (2 ln θ)
  const turnsDim = (r: number): number => (d * Math.log(orig / (2 * Math.PI * r))) / (2 * Math.log(theta));
  let lo = turnsDim(betaFast);
  let hi = turnsDim(betaSlow);
  if (o.truncate ?? true) {
    lo = Math.floor(lo);
    hi = Math.ceil(hi);
  }
  lo = Math.max(0, lo);
  hi = Math.min(d - 1, hi);
  if (lo === hi) hi += 0.001;
  return range(d / 2).map((i) => {
    const extrapolation = theta ** (-(2 * i) / d);
    const interpolation = extrapolation / factor;
    const gamma = Math.min(Math.max((i - lo) / (hi - lo), 0), 1); // 0: extrapolate, 1: interpolate
    return (1 - gamma) * extrapolation + gamma * interpolation;
  });
}

function refYarnAttention(factor: number, mscale?: number, mscaleAllDim?: number): number {
  const m = (s: number, k: number): number => (s <= 1 ? 1 : 0.1 * k * Math.log(s) + 1);
  if (mscale && mscaleAllDim) return m(factor, mscale) / m(factor, mscaleAllDim);
  return m(factor, 1);
}

function refLlama3(theta: number, d: number, factor: number, low: number, high: number, orig: number): number[] {
  return refPlain(theta, d).map((f) => {
    const wavelength = (2 * Math.PI) / f;
    const lowWl = orig / low; // longer than this: divide by factor
    const highWl = orig / high; // shorter than this: keep
    if (wavelength < highWl) return f;
    if (wavelength > lowWl) return f / factor;
    const smooth = (orig / wavelength - low) / (high - low);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

function refLongrope(theta: number, d: number, factors: number[]): number[] {
  return range(d / 2).map((i) => 1 / (factors[i] * theta ** ((2 * i) / d)));
}

/** cos/sin [T][r] in HF layout, each the half table duplicated, times the attention factor. */
function refCosSin(inv: number[], positions: number[], att = 1): { cos: number[][]; sin: number[][]; angle: number[][] } {
  const cos: number[][] = [];
  const sin: number[][] = [];
  const angle: number[][] = [];
  for (const p of positions) {
    const a = inv.map((f) => p * f);
    const c = a.map((x) => Math.cos(x) * att);
    const s = a.map((x) => Math.sin(x) * att);
    cos.push([...c, ...c]);
    sin.push([...s, ...s]);
    angle.push([...a, ...a]);
  }
  return { cos, sin, angle };
}

/** rotate_half RoPE on one head vector: y = x·cos + rotate_half(x)·sin on the first r dims. */
function refRotate(x: number[], inv: number[], p: number, att = 1): number[] {
  const h = inv.length;
  const y = [...x];
  for (let i = 0; i < h; i++) {
    const a = p * inv[i];
    const c = Math.cos(a) * att;
    const s = Math.sin(a) * att;
    y[i] = x[i] * c - x[i + h] * s;
    y[i + h] = x[i + h] * c + x[i] * s;
  }
  return y;
}

// float32 angle quantisation: the angle is a float32 product, so its error grows with its size.
const ANGLE_EPS = 2.5e-7;
const tolFor = (angle: number, scale = 1): number => 1e-5 + ANGLE_EPS * Math.abs(angle) * scale;


function randomX(shape: [number, number, number, number], seed: number): { data: Float32Array; x: tf.Tensor4D } {
  const rnd = prng(seed);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => rnd() * 2 - 1);
  return { data, x: tf.tensor4d(data, shape) };
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: (i: number) => number, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let worst = -Infinity;
  let worstAt = -1;
  for (let i = 0; i < expected.length; i++) {
    const excess = Math.abs(actual[i] - expected[i]) - tol(i);
    if (!(excess <= worst)) {
      worst = excess;
      worstAt = i;
    }
  }
  if (worst > 0 || Number.isNaN(worst)) {
    throw new Error(
      `${what}: element ${worstAt} is ${actual[worstAt]}, expected ${expected[worstAt]} (tolerance ${tol(worstAt)})`,
    );
  }
}

/** Checks cosSin and apply of `rope` against the float64 reference at the given positions. */
function checkAgainstReference(
  rope: RotaryEmbedding,
  positions: number[],
  inv: number[],
  att: number,
  label: string,
): void {
  const { headDim, rotaryDim } = rope.config;
  const ref = refCosSin(inv, positions, att);
  const { cos, sin } = rope.cosSin(positions);
  expect(cos.shape).toEqual([positions.length, rotaryDim]);
  const angles = ref.angle.flat();
  expectClose(cos.dataSync(), ref.cos.flat(), (i) => tolFor(angles[i], att), `${label} cos`);
  expectClose(sin.dataSync(), ref.sin.flat(), (i) => tolFor(angles[i], att), `${label} sin`);
  tf.dispose([cos, sin]);

  const H = 2;
  const T = positions.length;
  const { data, x } = randomX([1, H, T, headDim], 7 + T);
  const y = rope.apply(x, positions);
  const got = y.dataSync();
  const expected: number[] = [];
  const tol: number[] = [];
  for (let hd = 0; hd < H; hd++) {
    for (let t = 0; t < T; t++) {
      const vec = Array.from(data.subarray((hd * T + t) * headDim, (hd * T + t + 1) * headDim));
      expected.push(...refRotate(vec, inv, positions[t], att));
      const maxAngle = Math.abs(positions[t]) * Math.max(...inv.map(Math.abs));
      for (let j = 0; j < headDim; j++) tol.push(j < rotaryDim ? tolFor(maxAngle, 2 * att) : 0);
    }
  }
  expectClose(got, expected, (i) => tol[i], `${label} apply`);
  tf.dispose([x, y]);
}

beforeAll(async () => {
  await initBackend('cpu');
});

// ---------------------------------------------------------------------------------------------------------------

describe('RotaryEmbedding: hand-checked values', () => {
  it('is the identity at position 0', () => {
    const rope = new RotaryEmbedding({ headDim: 8, base: 10000, maxPositionEmbeddings: 32 });
    const { data, x } = randomX([2, 3, 1, 8], 1);
    const y = rope.apply(x, [0]);
    expect(Array.from(y.dataSync())).toEqual(Array.from(data));
    tf.dispose([x, y]);
  });

  it('rotates by 1 rad at position 1 with headDim 2', () => {
    const rope = new RotaryEmbedding({ headDim: 2, base: 10000, maxPositionEmbeddings: 8 });
    expect(Array.from(rope.invFreq())).toEqual([1]);
    const x = tf.tensor4d([1, 0, 0, 1, 0.6, -0.8], [1, 3, 1, 2]);
    const y = rope.apply(x, [1]).dataSync();
    const c = Math.cos(1);
    const s = Math.sin(1);
    // [a, b] -> [a cos − b sin, b cos + a sin]
    const expected = [c, s, -s, c, 0.6 * c + 0.8 * s, -0.8 * c + 0.6 * s];
    expectClose(y, expected, () => 1e-6, 'rotation by 1 rad');
    const { cos, sin } = rope.cosSin([0, 1]);
    expectClose(cos.dataSync(), [1, 1, c, c], () => 1e-7, 'cos table');
    expectClose(sin.dataSync(), [0, 0, s, s], () => 1e-7, 'sin table');
    tf.dispose([x, cos, sin]);
  });

  it('preserves the norm of every rotated pair (i, i + r/2)', () => {
    const rope = new RotaryEmbedding({ headDim: 12, base: 10000, maxPositionEmbeddings: 64 });
    const { data, x } = randomX([2, 2, 5, 12], 3);
    const y = rope.apply(x, [3, 10, 17, 40, 63]).dataSync();
    for (let v = 0; v < data.length / 12; v++) {
      for (let i = 0; i < 6; i++) {
        const a = data[v * 12 + i] ** 2 + data[v * 12 + i + 6] ** 2;
        const b = y[v * 12 + i] ** 2 + y[v * 12 + i + 6] ** 2;
        expect(Math.abs(a - b)).toBeLessThan(1e-6);
      }
    }
    tf.dispose(x);
  });

  it('lays out cos/sin as the r/2 frequencies concatenated twice, [T, r]', () => {
    const rope = new RotaryEmbedding({ headDim: 8, base: 100, maxPositionEmbeddings: 32 });
    const { cos, sin } = rope.cosSin({ offset: 2, length: 3 });
    expect(cos.shape).toEqual([3, 8]);
    const c = cos.arraySync();
    const s = sin.arraySync();
    for (let t = 0; t < 3; t++) {
      expect(c[t].slice(0, 4)).toEqual(c[t].slice(4));
      expect(s[t].slice(0, 4)).toEqual(s[t].slice(4));
    }
    tf.dispose([cos, sin]);
  });

  it('makes q·k depend only on the relative position', () => {
    const rope = new RotaryEmbedding({ headDim: 8, base: 10000, maxPositionEmbeddings: 64 });
    const q = tf.tensor4d([0.3, -0.2, 0.5, 0.1, -0.7, 0.4, 0.2, -0.1], [1, 1, 1, 8]);
    const k = tf.tensor4d([-0.4, 0.6, 0.1, -0.3, 0.2, 0.5, -0.6, 0.9], [1, 1, 1, 8]);
    const dot = (pq: number, pk: number): number =>
      tf.tidy(() => tf.sum(tf.mul(rope.apply(q, [pq]), rope.apply(k, [pk]))).dataSync()[0]);
    expect(Math.abs(dot(5, 2) - dot(13, 10))).toBeLessThan(1e-5);
    expect(Math.abs(dot(5, 2) - dot(40, 37))).toBeLessThan(1e-5);
    tf.dispose([q, k]);
  });
});

describe('RotaryEmbedding: every scaling against the float64 formulas', () => {
  const positions = [0, 1, 2, 7, 31, 63, 64, 65, 100, 257, 511];

  it('default', () => {
    const rope = new RotaryEmbedding({ headDim: 16, base: 10000, maxPositionEmbeddings: 64 });
    const inv = refPlain(10000, 16);
    expectClose(rope.invFreq(), inv, () => 1e-15, 'inv_freq');
    checkAgainstReference(rope, positions, inv, 1, 'default');
  });

  it('default with rope_theta 1e6 (qwen2, mixtral)', () => {
    const rope = new RotaryEmbedding({ headDim: 8, base: 1e6, maxPositionEmbeddings: 128 });
    checkAgainstReference(rope, positions, refPlain(1e6, 8), 1, 'theta 1e6');
  });

  it('linear: inv_freq / factor, i.e. positions / factor', () => {
    const rope = new RotaryEmbedding({
      headDim: 16,
      base: 10000,
      maxPositionEmbeddings: 256,
      scaling: { type: 'linear', factor: 4 },
    });
    const inv = refPlain(10000, 16).map((f) => f / 4);
    expectClose(rope.invFreq(), inv, () => 1e-15, 'inv_freq');
    checkAgainstReference(rope, positions, inv, 1, 'linear');
    // positions / factor with default frequencies give the same angles
    const plain = new RotaryEmbedding({ headDim: 16, base: 10000, maxPositionEmbeddings: 256 });
    const a = rope.cosSin([8, 20]);
    const b = plain.cosSin([2, 5]);
    expectClose(a.cos.dataSync(), b.cos.dataSync(), () => 1e-6, 'linear vs positions / 4');
    tf.dispose([a.cos, a.sin, b.cos, b.sin]);
  });

  it('ntk (static, Hymba): base · factor^(d/(d−2))', () => {
    const rope = new RotaryEmbedding({
      headDim: 16,
      base: 10000,
      maxPositionEmbeddings: 128,
      scaling: { type: 'ntk', factor: 3 },
    });
    const inv = refPlain(refNtkBase(10000, 16, 3), 16);
    expectClose(rope.invFreq(), inv, (i) => 1e-15 * inv[i] + 1e-18, 'inv_freq');
    checkAgainstReference(rope, positions, inv, 1, 'ntk');
  });

  it('dynamic NTK: unchanged inside the original context, grown base past it', () => {
    const cfg: RotaryConfig = {
      headDim: 8,
      base: 10000,
      maxPositionEmbeddings: 64,
      scaling: { type: 'dynamic', factor: 2 },
    };
    const rope = new RotaryEmbedding(cfg);
    // inside: max position 63 -> seqLen 64 = orig -> plain frequencies
    checkAgainstReference(rope, [0, 5, 63], refPlain(10000, 8), 1, 'dynamic inside');
    expectClose(rope.invFreq(64), refPlain(10000, 8), () => 1e-15, 'inv_freq at orig');
    // past: max position 100 -> seqLen 101 for every position of the call
    const past = [0, 1, 30, 64, 100];
    const inv101 = refDynamic(10000, 8, 2, 64, 101);
    expect(inv101[1]).toBeLessThan(refPlain(10000, 8)[1]);
    expectClose(rope.invFreq(101), inv101, (i) => 1e-15 + 1e-13 * inv101[i], 'inv_freq at 101');
    checkAgainstReference(rope, past, inv101, 1, 'dynamic past');
    checkAgainstReference(rope, [300, 301, 302, 303], refDynamic(10000, 8, 2, 64, 304), 1, 'dynamic far');
  });

  it('dynamic NTK: the whole batch uses its largest position, and seqLen overrides it', () => {
    const rope = new RotaryEmbedding({
      headDim: 8,
      base: 10000,
      maxPositionEmbeddings: 16,
      scaling: { type: 'dynamic', factor: 4 },
    });
    const inv = refDynamic(10000, 8, 4, 16, 41);
    const rows = [
      [0, 1, 2],
      [38, 39, 40],
    ];
    const { cos } = rope.cosSin(rows);
    expect(cos.shape).toEqual([2, 3, 8]);
    const ref = refCosSin(inv, rows.flat());
    expectClose(cos.dataSync(), ref.cos.flat(), (i) => tolFor(ref.angle.flat()[i]), 'batch uses seqLen 41');
    // a call with only small positions does not grow (stateless) ...
    const small = rope.cosSin([0, 1, 2]);
    const refSmall = refCosSin(refPlain(10000, 8), [0, 1, 2]);
    expectClose(small.cos.dataSync(), refSmall.cos.flat(), () => 1e-6, 'small call');
    // ... unless told the sequence is longer (HF keeps the largest length it has seen)
    const kept = rope.cosSin([0, 1, 2], { seqLen: 41 });
    const refKept = refCosSin(inv, [0, 1, 2]);
    expectClose(kept.cos.dataSync(), refKept.cos.flat(), () => 1e-6, 'seqLen override');
    tf.dispose([cos, small.cos, small.sin, kept.cos, kept.sin]);
  });

  it('dynamic NTK with an explicit original context (Hymba dynamic_ntk)', () => {
    const rope = new RotaryEmbedding({
      headDim: 16,
      base: 10000,
      maxPositionEmbeddings: 128,
      scaling: { type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 64 },
    });
    checkAgainstReference(rope, [0, 10, 63], refPlain(10000, 16), 1, 'inside 64');
    checkAgainstReference(rope, [0, 10, 99], refDynamic(10000, 16, 2, 64, 100), 1, 'past 64');
  });

  it('yarn: correction range, ramp blend and attention factor', () => {
    const s: RopeScaling = { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 64 };
    const rope = new RotaryEmbedding({ headDim: 16, base: 10000, maxPositionEmbeddings: 256, scaling: s });
    const inv = refYarn(10000, 16, 4, 64);
    // the ramp covers dims 0..3 here: the fastest frequency is kept, the slow ones are divided by 4
    const plain = refPlain(10000, 16);
    expect(inv[0]).toBeCloseTo(plain[0], 12);
    expect(inv[7]).toBeCloseTo(plain[7] / 4, 12);
    expect(inv[1]).toBeLessThan(plain[1]);
    expect(inv[1]).toBeGreaterThan(plain[1] / 4);
    expectClose(rope.invFreq(), inv, () => 1e-14, 'inv_freq');
    const att = 0.1 * Math.log(4) + 1;
    expect(rope.attentionFactor()).toBeCloseTo(att, 12);
    checkAgainstReference(rope, positions, inv, att, 'yarn');
  });

  it('yarn: mscale / mscaleAllDim, explicit attentionFactor, betas and truncate false', () => {
    const base = { headDim: 16, base: 10000, maxPositionEmbeddings: 4096 };
    const ds = new RotaryEmbedding({
      ...base,
      scaling: { type: 'yarn', factor: 40, originalMaxPositionEmbeddings: 128, mscale: 1, mscaleAllDim: 0.5 },
    });
    const dsAtt = refYarnAttention(40, 1, 0.5);
    expect(ds.attentionFactor()).toBeCloseTo(dsAtt, 12);
    checkAgainstReference(ds, [0, 3, 127, 128, 1000], refYarn(10000, 16, 40, 128), dsAtt, 'yarn mscale');

    const explicit = new RotaryEmbedding({
      ...base,
      scaling: { type: 'yarn', factor: 8, originalMaxPositionEmbeddings: 512, attentionFactor: 1.25, betaFast: 16, betaSlow: 2 },
    });
    expect(explicit.attentionFactor()).toBe(1.25);
    checkAgainstReference(
      explicit,
      [0, 511, 512, 2000],
      refYarn(10000, 16, 8, 512, { betaFast: 16, betaSlow: 2 }),
      1.25,
      'yarn explicit',
    );

    const noTruncate = new RotaryEmbedding({
      ...base,
      scaling: { type: 'yarn', factor: 32, originalMaxPositionEmbeddings: 128, truncate: false },
    });
    const invNt = refYarn(10000, 16, 32, 128, { truncate: false });
    expectClose(noTruncate.invFreq(), invNt, () => 1e-14, 'inv_freq truncate false');
    expect(Math.abs(invNt[2] - refYarn(10000, 16, 32, 128)[2])).toBeGreaterThan(1e-6); // the flag matters here
    checkAgainstReference(noTruncate, [0, 50, 129, 3000], invNt, refYarnAttention(32), 'yarn no truncate');
  });

  it('llama3: high frequencies kept, low divided by factor, medium smoothed', () => {
    const rope = new RotaryEmbedding({
      headDim: 16,
      base: 10000,
      maxPositionEmbeddings: 512,
      scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
    });
    const inv = refLlama3(10000, 16, 8, 1, 4, 64);
    const plain = refPlain(10000, 16);
    const wl = plain.map((f) => (2 * Math.PI) / f);
    // the config spans all three regimes
    expect(wl.some((w) => w < 16)).toBe(true);
    expect(wl.some((w) => w >= 16 && w <= 64)).toBe(true);
    expect(wl.some((w) => w > 64)).toBe(true);
    expect(inv[0]).toBe(plain[0]);
    expect(inv[7]).toBeCloseTo(plain[7] / 8, 14);
    expectClose(rope.invFreq(), inv, () => 1e-15, 'inv_freq');
    checkAgainstReference(rope, positions, inv, 1, 'llama3');
  });

  it('longrope: short factors inside the original context, long past it, attention factor', () => {
    const shortFactor = [1, 1.1, 1.5, 2];
    const longFactor = [1.2, 2, 4, 8];
    const rope = new RotaryEmbedding({
      headDim: 8,
      base: 10000,
      maxPositionEmbeddings: 128,
      scaling: { type: 'longrope', shortFactor, longFactor, originalMaxPositionEmbeddings: 32 },
    });
    const att = Math.sqrt(1 + Math.log(128 / 32) / Math.log(32));
    expect(rope.attentionFactor()).toBeCloseTo(att, 14);
    const invShort = refLongrope(10000, 8, shortFactor);
    const invLong = refLongrope(10000, 8, longFactor);
    expectClose(rope.invFreq(32), invShort, () => 1e-15, 'inv_freq short');
    expectClose(rope.invFreq(33), invLong, () => 1e-15, 'inv_freq long');
    // largest position 31 -> seqLen 32 = orig -> short; 32 -> seqLen 33 -> long (for every position of the call)
    checkAgainstReference(rope, [0, 1, 31], invShort, att, 'longrope short');
    checkAgainstReference(rope, [0, 1, 32], invLong, att, 'longrope long');
    checkAgainstReference(rope, [5, 100, 127, 400], invLong, att, 'longrope far');
  });

  it('longrope: attention factor 1 when the context is not extended; explicit factor and attentionFactor', () => {
    const f = [1, 1, 1, 1];
    const same = new RotaryEmbedding({
      headDim: 8,
      base: 10000,
      maxPositionEmbeddings: 32,
      scaling: { type: 'longrope', shortFactor: f, longFactor: f, originalMaxPositionEmbeddings: 32 },
    });
    expect(same.attentionFactor()).toBe(1);
    const withFactor = new RotaryEmbedding({
      headDim: 8,
      base: 10000,
      maxPositionEmbeddings: 32,
      scaling: { type: 'longrope', shortFactor: f, longFactor: f, originalMaxPositionEmbeddings: 32, factor: 16 },
    });
    expect(withFactor.attentionFactor()).toBeCloseTo(Math.sqrt(1 + Math.log(16) / Math.log(32)), 14);
    const explicit = new RotaryEmbedding({
      headDim: 8,
      base: 10000,
      maxPositionEmbeddings: 32,
      scaling: { type: 'longrope', shortFactor: f, longFactor: f, originalMaxPositionEmbeddings: 32, attentionFactor: 1.5 },
    });
    expect(explicit.attentionFactor()).toBe(1.5);
  });

  it('matches transformers float32 (float32 inv_freq × float32 position) within 1e-6 even at large positions', () => {
    const rope = new RotaryEmbedding({ headDim: 16, base: 10000, maxPositionEmbeddings: 131072 });
    const pos = [1000, 4097, 65535, 131071];
    const { cos, sin } = rope.cosSin(pos);
    const c = cos.dataSync();
    const s = sin.dataSync();
    const inv32 = refPlain(10000, 16).map(Math.fround);
    pos.forEach((p, t) => {
      inv32.forEach((f, i) => {
        const a = Math.fround(f * Math.fround(p)); // torch: float32 matmul of inv_freq and position_ids
        expect(Math.abs(c[t * 16 + i] - Math.cos(a))).toBeLessThan(1e-6);
        expect(Math.abs(s[t * 16 + i] - Math.sin(a))).toBeLessThan(1e-6);
      });
    });
    tf.dispose([cos, sin]);
  });
});

describe('RotaryEmbedding: partial rotary, positions forms, shapes', () => {
  it('stablelm-like partial rotary (headDim 16, rotaryDim 4): tail dims pass through unchanged', () => {
    const rope = new RotaryEmbedding({ headDim: 16, rotaryDim: 4, base: 10000, maxPositionEmbeddings: 64 });
    const inv = refPlain(10000, 4); // frequencies from rotaryDim, not headDim
    expectClose(rope.invFreq(), inv, () => 1e-15, 'inv_freq from rotaryDim');
    const { data, x } = randomX([2, 3, 5, 16], 11);
    const y = rope.apply(x, [0, 3, 9, 20, 63]).dataSync();
    for (let v = 0; v < data.length / 16; v++) {
      for (let j = 4; j < 16; j++) expect(y[v * 16 + j]).toBe(data[v * 16 + j]);
    }
    checkAgainstReference(rope, [0, 3, 9, 20, 63], inv, 1, 'partial');
    const { cos } = rope.cosSin([1, 2]);
    expect(cos.shape).toEqual([2, 4]);
    tf.dispose([x, cos]);
  });

  it('phi-like partial rotary with yarn uses rotaryDim everywhere', () => {
    const rope = new RotaryEmbedding({
      headDim: 16,
      rotaryDim: 8,
      base: 10000,
      maxPositionEmbeddings: 256,
      scaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 64 },
    });
    checkAgainstReference(rope, [0, 70, 255], refYarn(10000, 8, 4, 64), refYarnAttention(4), 'partial yarn');
  });

  it('accepts number[], { offset, length }, Tensor1D (int32 and float32) alike', () => {
    const rope = new RotaryEmbedding({ headDim: 8, base: 10000, maxPositionEmbeddings: 64 });
    const { x } = randomX([1, 2, 4, 8], 5);
    const a = rope.apply(x, [3, 4, 5, 6]);
    const b = rope.apply(x, { offset: 3, length: 4 });
    const pi = tf.tensor1d([3, 4, 5, 6], 'int32');
    const pf = tf.tensor1d([3, 4, 5, 6], 'float32');
    const c = rope.apply(x, pi);
    const d = rope.apply(x, pf);
    const ref = a.dataSync();
    expect(Array.from(b.dataSync())).toEqual(Array.from(ref));
    expect(Array.from(c.dataSync())).toEqual(Array.from(ref));
    expect(Array.from(d.dataSync())).toEqual(Array.from(ref));
    tf.dispose([x, a, b, c, d, pi, pf]);
  });

  it('per-batch positions [B, T] (left padding) rotate each row by its own positions', () => {
    const rope = new RotaryEmbedding({ headDim: 8, base: 10000, maxPositionEmbeddings: 64 });
    const { x } = randomX([2, 2, 4, 8], 9);
    const rows = [
      [1, 1, 0, 1], // a padded row, HF style (pads filled with 1)
      [0, 1, 2, 3],
    ];
    const y = rope.apply(x, rows);
    const y2 = rope.apply(x, tf.tensor2d(rows, [2, 4], 'int32'));
    for (let b = 0; b < 2; b++) {
      const xb = tf.slice(x, [b, 0, 0, 0], [1, 2, 4, 8]) as tf.Tensor4D;
      const yb = rope.apply(xb, rows[b]);
      const sliced = tf.slice(y, [b, 0, 0, 0], [1, 2, 4, 8]);
      expect(Array.from(sliced.dataSync())).toEqual(Array.from(yb.dataSync()));
      tf.dispose([xb, yb, sliced]);
    }
    expect(Array.from(y2.dataSync())).toEqual(Array.from(y.dataSync()));
    // a single row of positions broadcasts over the batch
    const one = rope.apply(x, [[0, 1, 2, 3]]);
    const shared = rope.apply(x, [0, 1, 2, 3]);
    expect(Array.from(one.dataSync())).toEqual(Array.from(shared.dataSync()));
    tf.getBackend();
    tf.dispose([x, y, y2, one, shared]);
  });

  it('apply with precomputed tables equals apply with positions (shared and per-batch)', () => {
    const rope = new RotaryEmbedding({
      headDim: 8,
      base: 10000,
      maxPositionEmbeddings: 64,
      scaling: { type: 'yarn', factor: 2, originalMaxPositionEmbeddings: 32 },
    });
    const { x } = randomX([2, 1, 3, 8], 4);
    const shared = rope.cosSin([4, 5, 6]);
    const rows = rope.cosSin([
      [0, 1, 2],
      [7, 8, 9],
    ]);
    const a = rope.apply(x, shared);
    const b = rope.apply(x, [4, 5, 6]);
    const c = rope.apply(x, rows);
    const d = rope.apply(x, [
      [0, 1, 2],
      [7, 8, 9],
    ]);
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    expect(Array.from(c.dataSync())).toEqual(Array.from(d.dataSync()));
    tf.dispose([x, shared.cos, shared.sin, rows.cos, rows.sin, a, b, c, d]);
  });

  it('one rotary reused across calls (its recent tables) gives what a fresh one gives, whatever the order of positions and seqLen', () => {
    const config = { headDim: 8, base: 10000, maxPositionEmbeddings: 16, scaling: { type: 'dynamic', factor: 2 } } as const;
    const reused = new RotaryEmbedding(config);
    const { x } = randomX([1, 2, 3, 8], 9);
    // Repeats, a new set, a reordering and a seqLen that changes the dynamic frequencies: each against a fresh rotary.
    const calls: [number[], number | undefined][] = [
      [[0, 1, 2], undefined],
      [[0, 1, 2], undefined],
      [[1, 2, 3], undefined],
      [[2, 1, 0], undefined],
      [[0, 1, 2], 40],
      [[0, 1, 2], undefined],
    ];
    for (const [positions, seqLen] of calls) {
      const options = seqLen == null ? {} : { seqLen };
      const got = reused.apply(x, positions, options);
      const want = new RotaryEmbedding(config).apply(x, positions, options);
      expect(Array.from(got.dataSync()), `${positions} seqLen ${seqLen}`).toEqual(Array.from(want.dataSync()));
      tf.dispose([got, want]);
    }
    // cosSin hands out tensors of their own: writing into one's values does not reach the next call.
    const first = reused.cosSin([0, 1, 2]);
    (first.cos.dataSync() as Float32Array).fill(7);
    const second = reused.cosSin([0, 1, 2]);
    expect(Array.from(second.cos.dataSync())).not.toContain(7);
    tf.dispose([x, first.cos, first.sin, second.cos, second.sin]);
  });

  it('rejects bad shapes with ShapeError', () => {
    const rope = new RotaryEmbedding({ headDim: 8, base: 10000, maxPositionEmbeddings: 64 });
    const x3 = tf.zeros([2, 3, 8]);
    const x = tf.zeros([2, 1, 3, 8]) as tf.Tensor4D;
    const wrongD = tf.zeros([2, 1, 3, 6]) as tf.Tensor4D;
    const xi = tf.zeros([2, 1, 3, 8], 'int32') as tf.Tensor4D;
    const before = tf.memory().numTensors;
    expect(() => rope.apply(x3 as unknown as tf.Tensor4D, [0, 1, 2])).toThrow(ShapeError);
    expect(() => rope.apply(wrongD, [0, 1, 2])).toThrow(/headDim 8/);
    expect(() => rope.apply(xi, [0, 1, 2])).toThrow(/float32/);
    expect(() => rope.apply(x, [0, 1])).toThrow(/2 positions for a sequence of 3/);
    expect(() => rope.apply(x, [[0, 1, 2], [0, 1, 2], [0, 1, 2]])).toThrow(/3 rows of positions for a batch of 2/);
    expect(() => rope.apply(x, [[0, 1, 2], [0, 1]])).toThrow(ShapeError);
    expect(() => rope.apply(x, [0, NaN, 2])).toThrow(/finite/);
    const badTables = rope.cosSin([0, 1]);
    expect(() => rope.apply(x, badTables)).toThrow(ShapeError);
    tf.dispose([badTables.cos, badTables.sin]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x3, x, wrongD, xi]);
  });
});

describe('RotaryEmbedding: the one-kernel path of cpu and wasm', () => {
  // apply runs one kernel (SlmkitRotary) on cpu and wasm and the op sequence elsewhere (webgpu, which the model
  // fixture tests cover). Here the kernel, on both backends, against the float64 formula, values and gradients.
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`${backend}: partial rotary with per-row positions, values and the gradient with respect to x`, async () => {
      await initBackend(backend);
      try {
        const [B, H, T, D, r] = [2, 3, 5, 16, 8];
        const rope = new RotaryEmbedding({ headDim: D, rotaryDim: r, base: 10000, maxPositionEmbeddings: 64 });
        const inv = refPlain(10000, r);
        const positions = [[0, 0, 1, 2, 3], [7, 8, 9, 10, 11]];
        const rand = prng(5);
        const xs = Float64Array.from({ length: B * H * T * D }, () => rand() * 2 - 1);
        const ws = Float64Array.from({ length: B * H * T * D }, () => rand() * 2 - 1);
        const x = tf.tensor4d(Float32Array.from(xs), [B, H, T, D]);
        const w = tf.tensor4d(Float32Array.from(ws), [B, H, T, D]);
        const before = tf.memory().numTensors;
        const y = rope.apply(x, positions);
        const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(rope.apply(v as tf.Tensor4D, positions), w)))(x);
        const [got, gotGrad] = [await y.data(), await dx.data()];
        tf.dispose([y, dx]);
        expect(tf.memory().numTensors).toBe(before);
        const expected: number[] = [];
        const expectedGrad: number[] = [];
        for (let b = 0; b < B; b++) {
          for (let h = 0; h < H; h++) {
            for (let t = 0; t < T; t++) {
              const at = ((b * H + h) * T + t) * D;
              expected.push(...refRotate(Array.from(xs.subarray(at, at + D)), inv, positions[b][t]));
              // The gradient of sum(w · R x) with respect to x is Rᵀ w: w rotated back by the same angle.
              expectedGrad.push(...refRotate(Array.from(ws.subarray(at, at + D)), inv, -positions[b][t]));
            }
          }
        }
        expectClose(got, expected, () => 1e-5, `${backend} kernel`);
        expectClose(gotGrad, expectedGrad, () => 1e-5, `${backend} kernel gradient`);
        tf.dispose([x, w]);
      } finally {
        await initBackend('cpu');
      }
    });
  }
});

describe('RotaryEmbedding: config validation', () => {
  const ok: RotaryConfig = { headDim: 8, base: 10000, maxPositionEmbeddings: 64 };
  const bad: Array<[string, RotaryConfig, string]> = [
    ['odd rotaryDim', { ...ok, rotaryDim: 5 }, 'rotaryDim'],
    ['rotaryDim > headDim', { ...ok, rotaryDim: 10 }, 'rotaryDim'],
    ['non-integer headDim', { ...ok, headDim: 7.5 }, 'headDim'],
    ['zero base', { ...ok, base: 0 }, 'base'],
    ['negative base', { ...ok, base: -1 }, 'base'],
    ['maxPositionEmbeddings 0', { ...ok, maxPositionEmbeddings: 0 }, 'maxPositionEmbeddings'],
    ['unknown type', { ...ok, scaling: { type: 'mystery' } as unknown as RopeScaling }, 'scaling.type'],
    ['linear factor 0', { ...ok, scaling: { type: 'linear', factor: 0 } }, 'scaling.factor'],
    ['dynamic with rotaryDim 2', { ...ok, rotaryDim: 2, scaling: { type: 'dynamic', factor: 2 } }, 'rotaryDim'],
    [
      'yarn without originalMaxPositionEmbeddings',
      { ...ok, scaling: { type: 'yarn', factor: 2 } as unknown as RopeScaling },
      'scaling.originalMaxPositionEmbeddings',
    ],
    [
      'llama3 high <= low',
      {
        ...ok,
        scaling: { type: 'llama3', factor: 8, lowFreqFactor: 4, highFreqFactor: 1, originalMaxPositionEmbeddings: 32 },
      },
      'scaling.highFreqFactor',
    ],
    [
      'longrope factor length != rotaryDim/2',
      {
        ...ok,
        scaling: { type: 'longrope', shortFactor: [1, 1, 1], longFactor: [1, 1, 1, 1], originalMaxPositionEmbeddings: 32 },
      },
      'scaling.shortFactor',
    ],
    [
      'longrope negative factor',
      {
        ...ok,
        scaling: { type: 'longrope', shortFactor: [1, 1, 1, 1], longFactor: [1, -1, 1, 1], originalMaxPositionEmbeddings: 32 },
      },
      'scaling.longFactor[1]',
    ],
  ];
  for (const [name, config, field] of bad) {
    it(`rejects ${name} with a ConfigError naming ${field}`, () => {
      let err: unknown;
      try {
        new RotaryEmbedding(config);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).details.field).toBe(field);
      expect((err as Error).message).toContain(field);
      expect((err as Error).message).toMatch(/expected .*, found /);
    });
  }

  it('keeps a frozen, JSON-serialisable copy of the config with defaults filled in', () => {
    const scaling: RopeScaling = { type: 'linear', factor: 2 };
    const rope = new RotaryEmbedding({ ...ok, scaling });
    scaling.factor = 100; // the caller's object is not aliased
    expect(rope.config).toEqual({ headDim: 8, rotaryDim: 8, base: 10000, maxPositionEmbeddings: 64, scaling: { type: 'linear', factor: 2 } });
    expect(Object.isFrozen(rope.config)).toBe(true);
    expect(JSON.parse(JSON.stringify(rope.config))).toEqual(rope.config);
    expect(new RotaryEmbedding(rope.config).config).toEqual(rope.config);
  });
});

describe('rotaryConfigFromHF', () => {
  const hasRope = (c: Record<string, unknown>): boolean =>
    c.rope_theta !== undefined || (c.rope_scaling !== undefined && c.rope_scaling !== null) || typeof c.rope_type === 'string';

  // hand-derived from the fixture configs: [headDim, rotaryDim]
  const expectedDims: Record<string, [number, number]> = {
    llama: [12, 12],
    mistral: [12, 12],
    mixtral: [8, 8],
    qwen2: [12, 12],
    qwen2_moe: [8, 8],
    gemma: [16, 16],
    phi3: [12, 12],
    olmoe: [8, 8],
    stablelm: [16, 4],
    phi: [16, 8],
    hymba: [16, 16],
  };

  it('maps every fixture config.json that has rope fields', () => {
    const checked: string[] = [];
    for (const name of listCases()) {
      const cfg = readJson<Record<string, unknown>>(name, 'config.json');
      if (!hasRope(cfg)) continue;
      const rc = rotaryConfigFromHF(cfg);
      const headDim =
        typeof cfg.head_dim === 'number'
          ? cfg.head_dim
          : Math.floor((cfg.hidden_size as number) / (cfg.num_attention_heads as number));
      const prf = typeof cfg.partial_rotary_factor === 'number' ? cfg.partial_rotary_factor : 1;
      expect(rc.base, name).toBe(cfg.rope_theta);
      expect(rc.headDim, name).toBe(headDim);
      expect(rc.rotaryDim, name).toBe(Math.floor(headDim * prf));
      expect(rc.maxPositionEmbeddings, name).toBe(cfg.max_position_embeddings);
      expect([rc.headDim, rc.rotaryDim], name).toEqual(expectedDims[name]);
      if (name === 'hymba') {
        // NVIDIA's code: base · (2·max/orig − 1)^(d/(d−2)) with max 128, orig 64 -> static NTK factor 3
        expect(cfg.rope_type).toBe('ntk');
        expect(rc.scaling).toEqual({ type: 'ntk', factor: (2 * 128) / 64 - 1 });
        const rope = new RotaryEmbedding(rc);
        expectClose(rope.invFreq(), refPlain(10000 * 3 ** (16 / 14), 16), () => 1e-15, 'hymba inv_freq');
      } else {
        expect(rc.scaling, name).toEqual({ type: 'default' });
      }
      expect(() => new RotaryEmbedding(rc)).not.toThrow();
      checked.push(name);
    }
    expect(checked.sort()).toEqual(Object.keys(expectedDims).sort());
  });

  it('llama3 (Llama 3.1 8B)', () => {
    const rc = rotaryConfigFromHF({
      hidden_size: 4096,
      num_attention_heads: 32,
      max_position_embeddings: 131072,
      rope_theta: 500000.0,
      rope_scaling: {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
        rope_type: 'llama3',
      },
    });
    expect(rc).toEqual({
      headDim: 128,
      rotaryDim: 128,
      base: 500000,
      maxPositionEmbeddings: 131072,
      scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
    });
  });

  it('yarn (Qwen2.5 style, legacy "type" key) and DeepSeek-style mscale', () => {
    const qwen = rotaryConfigFromHF({
      hidden_size: 64,
      num_attention_heads: 4,
      max_position_embeddings: 32768,
      rope_theta: 1000000.0,
      rope_scaling: { type: 'yarn', factor: 4.0, original_max_position_embeddings: 32768 },
    });
    expect(qwen.scaling).toEqual({ type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 32768 });
    const ds = rotaryConfigFromHF({
      head_dim: 64,
      hidden_size: 1024,
      num_attention_heads: 8,
      max_position_embeddings: 163840,
      rope_theta: 10000,
      rope_scaling: {
        type: 'yarn',
        factor: 40,
        original_max_position_embeddings: 4096,
        beta_fast: 32,
        beta_slow: 1,
        mscale: 1.0,
        mscale_all_dim: 0.707,
      },
    });
    expect(ds.headDim).toBe(64);
    expect(ds.scaling).toEqual({
      type: 'yarn',
      factor: 40,
      originalMaxPositionEmbeddings: 4096,
      betaFast: 32,
      betaSlow: 1,
      mscale: 1,
      mscaleAllDim: 0.707,
    });
    // no factor: max / original; beta 0 / null mean the defaults (Python `or`)
    const noFactor = rotaryConfigFromHF({
      hidden_size: 64,
      num_attention_heads: 4,
      max_position_embeddings: 4096,
      rope_scaling: { rope_type: 'yarn', original_max_position_embeddings: 1024, beta_fast: null, attention_factor: 1.1, truncate: false },
    });
    expect(noFactor.base).toBe(10000);
    expect(noFactor.scaling).toEqual({
      type: 'yarn',
      factor: 4,
      originalMaxPositionEmbeddings: 1024,
      attentionFactor: 1.1,
      truncate: false,
    });
  });

  it('longrope (Phi-3 128k: legacy "su", legacy "yarn" with factors, and "longrope")', () => {
    const short = [1, 1.02, 1.05, 1.1, 1.2, 1.3, 1.5, 2];
    const long = [1, 1.5, 2, 4, 8, 16, 24, 32];
    for (const type of ['su', 'yarn', 'longrope']) {
      const rc = rotaryConfigFromHF({
        hidden_size: 64,
        num_attention_heads: 4,
        max_position_embeddings: 131072,
        original_max_position_embeddings: 4096,
        rope_theta: 10000.0,
        rope_scaling: { type, short_factor: short, long_factor: long },
      });
      expect(rc.scaling, type).toEqual({
        type: 'longrope',
        shortFactor: short,
        longFactor: long,
        originalMaxPositionEmbeddings: 4096,
      });
      const rope = new RotaryEmbedding(rc);
      expect(rope.attentionFactor()).toBeCloseTo(Math.sqrt(1 + Math.log(32) / Math.log(4096)), 14);
    }
  });

  it('dynamic, linear, partial_rotary_factor and v5 rope_parameters', () => {
    const dyn = rotaryConfigFromHF({
      hidden_size: 64,
      num_attention_heads: 4,
      max_position_embeddings: 2048,
      rope_theta: 10000,
      rope_scaling: { type: 'dynamic', factor: 2.0, original_max_position_embeddings: 999 },
    });
    // transformers' dynamic NTK measures growth against max_position_embeddings
    expect(dyn.scaling).toEqual({ type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 2048 });
    const lin = rotaryConfigFromHF({
      hidden_size: 64,
      num_attention_heads: 4,
      max_position_embeddings: 8192,
      rope_theta: 10000,
      partial_rotary_factor: 0.5,
      rope_scaling: { rope_type: 'linear', type: 'ignored-when-rope_type-present', factor: 4.0 },
    });
    expect(lin).toEqual({
      headDim: 16,
      rotaryDim: 8,
      base: 10000,
      maxPositionEmbeddings: 8192,
      scaling: { type: 'linear', factor: 4 },
    });
    const v5 = rotaryConfigFromHF({
      hidden_size: 64,
      num_attention_heads: 4,
      max_position_embeddings: 8192,
      rope_parameters: { rope_type: 'yarn', rope_theta: 1e6, factor: 4, original_max_position_embeddings: 2048, partial_rotary_factor: 0.25 },
    });
    expect(v5).toEqual({
      headDim: 16,
      rotaryDim: 4,
      base: 1e6,
      maxPositionEmbeddings: 8192,
      scaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 2048 },
    });
    const perLayer = {
      hidden_size: 64,
      num_attention_heads: 4,
      max_position_embeddings: 8192,
      layer_types: ['sliding_attention', 'full_attention'],
      rope_parameters: {
        sliding_attention: { rope_type: 'default', rope_theta: 10000 },
        full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 },
      },
    };
    expect(rotaryConfigFromHF(perLayer, { layerType: 'full_attention' }).scaling).toEqual({ type: 'linear', factor: 8 });
    expect(rotaryConfigFromHF(perLayer, { layerType: 'sliding_attention' }).base).toBe(10000);
    expect(() => rotaryConfigFromHF(perLayer)).toThrow(/layerType/);
  });

  it('Hymba dynamic_ntk', () => {
    const cfg = { ...readJson<Record<string, unknown>>('hymba', 'config.json'), rope_type: 'dynamic_ntk' };
    expect(rotaryConfigFromHF(cfg).scaling).toEqual({ type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 64 });
  });

  const base = { hidden_size: 64, num_attention_heads: 4, max_position_embeddings: 128, rope_theta: 10000 };
  const badConfigs: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['unknown rope type', { ...base, rope_scaling: { type: 'mystery', factor: 2 } }, 'rope_scaling.type', /"mystery"/],
    ['unknown rope_type', { ...base, rope_scaling: { rope_type: 'mrope' } }, 'rope_scaling.rope_type', /"mrope"/],
    ['llama3 without low_freq_factor', { ...base, rope_scaling: { rope_type: 'llama3', factor: 8, high_freq_factor: 4, original_max_position_embeddings: 64 } }, 'rope_scaling.low_freq_factor', /required/],
    ['linear without factor', { ...base, rope_scaling: { type: 'linear' } }, 'rope_scaling.factor', /found undefined/],
    ['linear with a string factor', { ...base, rope_scaling: { type: 'linear', factor: '2' } }, 'rope_scaling.factor', /found "2"/],
    ['longrope with short_factor of the wrong length', { ...base, rope_scaling: { type: 'longrope', short_factor: [1, 1], long_factor: [1, 1, 1, 1, 1, 1, 1, 1] } }, 'rope_scaling.short_factor', /8 entries/],
    ['longrope without long_factor', { ...base, rope_scaling: { type: 'longrope', short_factor: [1, 1, 1, 1, 1, 1, 1, 1] } }, 'rope_scaling.long_factor', /array/],
    ['no max_position_embeddings', { hidden_size: 64, num_attention_heads: 4, rope_theta: 10000 }, 'max_position_embeddings', /positive integer/],
    ['no head_dim or hidden_size', { num_attention_heads: 4, max_position_embeddings: 128 }, 'hidden_size', /head_dim/],
    ['string rope_theta', { ...base, rope_theta: '10000' }, 'rope_theta', /found "10000"/],
    ['rope_scaling not an object', { ...base, rope_scaling: 'linear' }, 'rope_scaling', /object/],
    ['rope disabled (Hymba flag)', { ...base, rope: false }, 'rope', /true/],
    ['Hymba ntk without orig_max_position_embeddings', { ...base, rope_type: 'ntk' }, 'orig_max_position_embeddings', /ntk/],
    ['odd rotary dim from partial_rotary_factor', { ...base, partial_rotary_factor: 0.3125 }, 'partial_rotary_factor', /16 × 0.3125 gives 5/],
    ['partial_rotary_factor above 1', { ...base, partial_rotary_factor: 1.5 }, 'partial_rotary_factor', /\(0, 1\]/],
  ];
  for (const [name, cfg, field, message] of badConfigs) {
    it(`rejects ${name} with a ConfigError naming ${field}`, () => {
      let err: unknown;
      try {
        rotaryConfigFromHF(cfg);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).details.field).toBe(field);
      expect((err as Error).message).toContain(field);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).toMatch(/expected .*found/);
    });
  }
});

describe('RotaryEmbedding: every backend agrees with cpu', () => {
  let names: string[] = [];
  beforeAll(async () => {
    names = await backendsUnderTest(initBackend);
    await initBackend('cpu');
  });
  afterAll(async () => {
    await initBackend('cpu');
  });

  const cases: Array<[string, RotaryConfig, number[] | number[][]]> = [
    ['default', { headDim: 8, base: 10000, maxPositionEmbeddings: 64 }, [0, 1, 2]],
    ['partial', { headDim: 8, rotaryDim: 4, base: 10000, maxPositionEmbeddings: 64 }, [5, 6, 7]],
    [
      'yarn, per-batch',
      { headDim: 8, base: 10000, maxPositionEmbeddings: 256, scaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 64 } },
      [
        [0, 1, 2],
        [100, 101, 102],
      ],
    ],
    [
      'longrope past the original context',
      {
        headDim: 8,
        base: 10000,
        maxPositionEmbeddings: 128,
        scaling: { type: 'longrope', shortFactor: [1, 1, 1, 1], longFactor: [1, 2, 3, 4], originalMaxPositionEmbeddings: 32 },
      },
      [40, 41, 42],
    ],
  ];

  it('apply matches cpu within 1e-5 on every backend', async () => {
    expect(names).toContain('cpu');
    const { data } = (() => {
      const r = randomX([2, 2, 3, 8], 21);
      r.x.dispose();
      return r;
    })();
    const results: Record<string, Float32Array[]> = {};
    for (const name of names) {
      await initBackend(name as 'cpu');
      results[name] = cases.map(([, cfg, pos]) => {
        const rope = new RotaryEmbedding(cfg);
        const x = tf.tensor4d(data, [2, 2, 3, 8]);
        const y = rope.apply(x, pos);
        const out = y.dataSync() as Float32Array;
        tf.dispose([x, y]);
        return Float32Array.from(out);
      });
    }
    await initBackend('cpu');
    for (const name of names) {
      cases.forEach(([label], i) => {
        expectClose(results[name][i], results.cpu[i], () => 1e-5, `${name} ${label}`);
      });
    }
  });
});

describe('RotaryEmbedding: no tensor leaks', () => {
  it('keeps tf.memory().numTensors flat over repeated calls', () => {
    const rope = new RotaryEmbedding({
      headDim: 8,
      rotaryDim: 4,
      base: 10000,
      maxPositionEmbeddings: 64,
      scaling: { type: 'dynamic', factor: 2 },
    });
    const x = tf.randomNormal([2, 2, 3, 8]) as tf.Tensor4D;
    const posT = tf.tensor1d([70, 71, 72], 'int32');
    const warm = rope.apply(x, [0, 1, 2]);
    warm.dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      rope.apply(x, { offset: i, length: 3 }).dispose();
      rope.apply(x, posT).dispose();
      rope.apply(x, [[0, 1, 2], [3, 4, 5]]).dispose();
      const t = rope.cosSin([1, 2, 3]);
      rope.apply(x, t).dispose();
      tf.dispose([t.cos, t.sin]);
      expect(() => rope.apply(x, [1, 2])).toThrow(ShapeError);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, posT]);
  });
});
