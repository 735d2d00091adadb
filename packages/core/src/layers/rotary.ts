/**
 * Rotary position embeddings (RoPE) with the frequency scalings real checkpoints use: linear, static and dynamic NTK,
 * YaRN, Llama 3.1 and LongRoPE (Phi-3). Hugging Face `transformers` semantics (`modeling_rope_utils.py`, the Llama
 * `rotate_half` layout).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { defineFusedOp, recomputeGradients, registerFusedKernel, runTypedKernel } from '../kernels.js';

/**
 * How the rotary frequencies are scaled, as a discriminated union on `type`. Field names are the camelCase forms of
 * the Hugging Face `rope_scaling` keys; {@link rotaryConfigFromHF} builds one from a `config.json`.
 *
 * - `default`: plain RoPE, `inv_freq[i] = base^(-2i/rotaryDim)`.
 * - `linear`: position interpolation, `inv_freq / factor`.
 * - `ntk`: static NTK-aware scaling, `base' = base · factor^(d/(d-2))` (the `ntk` type of `transformers` 4.4x and
 *   Hymba's `rope_type: "ntk"`).
 * - `dynamic`: dynamic NTK; once the sequence length `L` (largest position + 1) exceeds `originalMaxPositionEmbeddings`
 *   (default: `maxPositionEmbeddings`, which is what Hugging Face uses), `base' = base · (factor·L/orig − (factor−1))^(d/(d−2))`.
 * - `yarn`: YaRN (arXiv 2309.00071); `betaFast` 32 and `betaSlow` 1 by default, `truncate` (default true) rounds the
 *   correction range outwards to whole dimensions, the attention factor multiplies cos and sin.
 * - `llama3`: Llama 3.1's smooth per-wavelength interpolation.
 * - `longrope`: LongRoPE / Phi-3; per-frequency `shortFactor` or `longFactor` (the latter once `L > orig`), the
 *   attention factor defaults to `sqrt(1 + ln(f)/ln(orig))` with `f = factor ?? maxPositionEmbeddings / orig`.
 *
 * @example
 * ```ts
 * import type { RopeScaling } from '@slmkit/core';
 * const llama31: RopeScaling = {
 *   type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192,
 * };
 * const yarn: RopeScaling = { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 32768 };
 * ```
 */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'ntk'; factor: number }
  | { type: 'dynamic'; factor: number; originalMaxPositionEmbeddings?: number }
  | {
      type: 'yarn';
      factor: number;
      originalMaxPositionEmbeddings: number;
      /** Rotations per original context above which a frequency is left alone (extrapolated). Default 32. */
      betaFast?: number;
      /** Rotations per original context below which a frequency is fully interpolated. Default 1. */
      betaSlow?: number;
      /** DeepSeek-style numerator of the attention factor (used with `mscaleAllDim`). */
      mscale?: number;
      /** DeepSeek-style denominator of the attention factor (used with `mscale`). */
      mscaleAllDim?: number;
      /** Explicit factor on cos and sin; default `0.1·ln(factor) + 1` (1 when factor <= 1). */
      attentionFactor?: number;
      /** Round the correction range to whole dimensions (floor / ceil). Default true; gpt-oss uses false. */
      truncate?: boolean;
    }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    }
  | {
      type: 'longrope';
      /** One factor per frequency (rotaryDim / 2 of them), used while the sequence fits the original context. */
      shortFactor: number[];
      /** One factor per frequency, used once the sequence length exceeds `originalMaxPositionEmbeddings`. */
      longFactor: number[];
      originalMaxPositionEmbeddings: number;
      /** Explicit factor on cos and sin; default `sqrt(1 + ln(f)/ln(orig))`, or 1 when `f <= 1`. */
      attentionFactor?: number;
      /** The context extension `f` used for the default attention factor; default `maxPositionEmbeddings / orig`. */
      factor?: number;
    };

/**
 * The JSON-serialisable description of a {@link RotaryEmbedding}. Validated eagerly by the constructor.
 *
 * @example
 * ```ts
 * import { RotaryEmbedding, type RotaryConfig } from '@slmkit/core';
 * // StableLM-style partial rotary: only the first 4 of 16 head dims rotate.
 * const config: RotaryConfig = { headDim: 16, rotaryDim: 4, base: 10000, maxPositionEmbeddings: 4096 };
 * const rope = new RotaryEmbedding(config);
 * console.log(JSON.stringify(rope.config));
 * ```
 */
export interface RotaryConfig {
  /** Size of each attention head. */
  headDim: number;
  /**
   * How many leading dims of each head rotate (even, at most `headDim`); the rest pass through unchanged. Defaults to
   * `headDim`. Frequencies are computed from this, `base^(-2i/rotaryDim)`, as Hugging Face does for partial rotary.
   */
  rotaryDim?: number;
  /** `rope_theta`. */
  base: number;
  /** `max_position_embeddings` of the (possibly extended) model. */
  maxPositionEmbeddings: number;
  /** Frequency scaling; defaults to `{ type: 'default' }`. */
  scaling?: RopeScaling;
}

/**
 * Positions accepted by {@link RotaryEmbedding.cosSin} and {@link RotaryEmbedding.apply}: one sequence of positions
 * shared by the whole batch (`number[]`, a 1-D tensor, or a contiguous `{ offset, length }` range), or one row per
 * batch element (`number[][]` or a 2-D tensor `[B, T]`, e.g. for left padding). Tensors are read back to JavaScript
 * (a synchronous download), so prefer plain numbers where you have them.
 *
 * @example
 * ```ts
 * import type { RotaryPositions } from '@slmkit/core';
 * const prefill: RotaryPositions = { offset: 0, length: 16 };
 * const decodeStep: RotaryPositions = { offset: 16, length: 1 };
 * const leftPadded: RotaryPositions = [[0, 0, 0, 1], [0, 1, 2, 3]];
 * ```
 */
export type RotaryPositions =
  | number[]
  | number[][]
  | tf.Tensor1D
  | tf.Tensor2D
  | { offset: number; length: number };

/**
 * The cos and sin tables in the Hugging Face layout: the `rotaryDim / 2` frequencies concatenated twice along the
 * last axis, already multiplied by the attention factor. `[T, rotaryDim]` for shared positions, `[B, T, rotaryDim]`
 * for per-batch positions. The caller owns (and disposes) them.
 *
 * @example
 * ```ts
 * import { RotaryEmbedding, type RotaryTables } from '@slmkit/core';
 * const rope = new RotaryEmbedding({ headDim: 8, base: 10000, maxPositionEmbeddings: 64 });
 * const tables: RotaryTables = rope.cosSin({ offset: 0, length: 4 });
 * console.log(tables.cos.shape); // [4, 8]
 * tables.cos.dispose();
 * tables.sin.dispose();
 * ```
 */
export interface RotaryTables<T extends tf.Tensor = tf.Tensor> {
  /** `cos(position · inv_freq) · attentionFactor`. */
  cos: T;
  /** `sin(position · inv_freq) · attentionFactor`. */
  sin: T;
}

/**
 * Per-call options of {@link RotaryEmbedding.cosSin} and {@link RotaryEmbedding.apply}.
 *
 * @example
 * ```ts
 * import { RotaryEmbedding, type RotaryCallOptions } from '@slmkit/core';
 * const rope = new RotaryEmbedding({
 *   headDim: 8, base: 10000, maxPositionEmbeddings: 64, scaling: { type: 'dynamic', factor: 2 },
 * });
 * // Keep the frequencies of the longest sequence seen so far (Hugging Face's cached dynamic state).
 * const options: RotaryCallOptions = { seqLen: 100 };
 * const { cos, sin } = rope.cosSin([70], options);
 * cos.dispose();
 * sin.dispose();
 * ```
 */
export interface RotaryCallOptions {
  /**
   * The sequence length that selects the frequencies of `dynamic` and `longrope` scaling. Default: the largest
   * position in the call + 1 (over the whole batch). Other scalings ignore it.
   */
  seqLen?: number;
}

type ResolvedScaling = RopeScaling;

interface NormalisedPositions {
  /** Row-major positions, batch rows first. */
  values: ArrayLike<number>;
  /** Rows: null for positions shared by the batch. */
  batch: number | null;
  /** Positions per row. */
  length: number;
}

function fail(field: string, expected: unknown, found: unknown, what?: string): never {
  const shown = typeof found === 'string' ? `"${found}"` : JSON.stringify(found) ?? String(found);
  throw new ConfigError(`${field}: expected ${what ?? String(expected)}, found ${shown}`, { field, expected, found });
}

function isFiniteNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function checkPositive(field: string, v: unknown): void {
  if (!isFiniteNumber(v) || v <= 0) fail(field, 'a positive number', v);
}

function checkPositiveInt(field: string, v: unknown): void {
  if (!isFiniteNumber(v) || v <= 0 || !Number.isInteger(v)) fail(field, 'a positive integer', v);
}

function checkFactorList(field: string, v: unknown, length: number): void {
  if (!Array.isArray(v)) fail(field, `an array of ${length} positive numbers`, v);
  if (v.length !== length) {
    fail(field, length, v.length, `${length} entries (rotaryDim / 2), one per frequency`);
  }
  v.forEach((x, i) => {
    if (!isFiniteNumber(x) || x <= 0) fail(`${field}[${i}]`, 'a positive number', x);
  });
}

const SCALING_TYPES = ['default', 'linear', 'ntk', 'dynamic', 'yarn', 'llama3', 'longrope'] as const;

/** Checks a whole config; throws a ConfigError naming the first bad field. Returns a normalised deep copy. */
function validateConfig(config: RotaryConfig): Required<RotaryConfig> {
  if (config == null || typeof config !== 'object') fail('config', 'a RotaryConfig object', config);
  checkPositiveInt('headDim', config.headDim);
  const rotaryDim = config.rotaryDim ?? config.headDim;
  checkPositiveInt('rotaryDim', rotaryDim);
  if (rotaryDim % 2 !== 0) fail('rotaryDim', 'an even number', rotaryDim);
  if (rotaryDim > config.headDim) fail('rotaryDim', `at most headDim (${config.headDim})`, rotaryDim);
  checkPositive('base', config.base);
  checkPositiveInt('maxPositionEmbeddings', config.maxPositionEmbeddings);
  const s = (config.scaling ?? { type: 'default' }) as RopeScaling;
  if (s == null || typeof s !== 'object') fail('scaling', 'a RopeScaling object', s);
  if (!(SCALING_TYPES as readonly string[]).includes(s.type)) {
    fail('scaling.type', SCALING_TYPES, s.type, `one of ${SCALING_TYPES.join(', ')}`);
  }
  const half = rotaryDim / 2;
  switch (s.type) {
    case 'default':
      break;
    case 'linear':
      checkPositive('scaling.factor', s.factor);
      break;
    case 'ntk':
    case 'dynamic':
      checkPositive('scaling.factor', s.factor);
      if (rotaryDim <= 2) fail('rotaryDim', 'more than 2 for NTK scaling (the exponent is d/(d-2))', rotaryDim);
      if (s.type === 'dynamic' && s.originalMaxPositionEmbeddings !== undefined) {
        checkPositiveInt('scaling.originalMaxPositionEmbeddings', s.originalMaxPositionEmbeddings);
      }
      break;
    case 'yarn':
      checkPositive('scaling.factor', s.factor);
      checkPositiveInt('scaling.originalMaxPositionEmbeddings', s.originalMaxPositionEmbeddings);
      if (config.base <= 1) fail('base', 'more than 1 for YaRN (its correction range divides by ln(base))', config.base);
      if (s.betaFast !== undefined) checkPositive('scaling.betaFast', s.betaFast);
      if (s.betaSlow !== undefined) checkPositive('scaling.betaSlow', s.betaSlow);
      if (s.mscale !== undefined && !isFiniteNumber(s.mscale)) fail('scaling.mscale', 'a number', s.mscale);
      if (s.mscaleAllDim !== undefined && !isFiniteNumber(s.mscaleAllDim)) {
        fail('scaling.mscaleAllDim', 'a number', s.mscaleAllDim);
      }
      if (s.attentionFactor !== undefined) checkPositive('scaling.attentionFactor', s.attentionFactor);
      if (s.truncate !== undefined && typeof s.truncate !== 'boolean') fail('scaling.truncate', 'a boolean', s.truncate);
      break;
    case 'llama3':
      checkPositive('scaling.factor', s.factor);
      checkPositive('scaling.lowFreqFactor', s.lowFreqFactor);
      checkPositive('scaling.highFreqFactor', s.highFreqFactor);
      if (s.highFreqFactor <= s.lowFreqFactor) {
        fail('scaling.highFreqFactor', `more than lowFreqFactor (${s.lowFreqFactor})`, s.highFreqFactor);
      }
      checkPositiveInt('scaling.originalMaxPositionEmbeddings', s.originalMaxPositionEmbeddings);
      break;
    case 'longrope':
      checkFactorList('scaling.shortFactor', s.shortFactor, half);
      checkFactorList('scaling.longFactor', s.longFactor, half);
      checkPositiveInt('scaling.originalMaxPositionEmbeddings', s.originalMaxPositionEmbeddings);
      if (s.originalMaxPositionEmbeddings < 2) {
        fail('scaling.originalMaxPositionEmbeddings', 'at least 2 (the attention factor divides by its log)', s.originalMaxPositionEmbeddings);
      }
      if (s.attentionFactor !== undefined) checkPositive('scaling.attentionFactor', s.attentionFactor);
      if (s.factor !== undefined) checkPositive('scaling.factor', s.factor);
      break;
  }
  const copy = JSON.parse(JSON.stringify(s)) as RopeScaling;
  return {
    headDim: config.headDim,
    rotaryDim,
    base: config.base,
    maxPositionEmbeddings: config.maxPositionEmbeddings,
    scaling: copy,
  };
}

function deepFreeze<T>(o: T): T {
  if (o != null && typeof o === 'object') {
    for (const v of Object.values(o as object)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** `base^(-2i/dim)` for i in [0, dim/2), in float64. */
function plainInvFreq(base: number, dim: number): Float64Array {
  const out = new Float64Array(dim / 2);
  for (let i = 0; i < out.length; i++) out[i] = 1 / Math.pow(base, (2 * i) / dim);
  return out;
}

/** YaRN's attention scale for a context extension `scale`: 0.1·m·ln(scale) + 1, or 1 when scale <= 1. */
function yarnMscale(scale: number, m = 1): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

/**
 * `y = x·cos + rotate_half(x)·sin` on the first `rotaryDim` dims of each head (Hugging Face's `rotate_half` layout:
 * `[x1, x2] -> [-x2, x1]`); the rest pass through. `x` is `[B, H, T, D]`, `cos` and `sin` the half-width tables
 * `[B | 1, 1, T, rotaryDim / 2]`. In tfjs ops: the reference, and the path of backends without the kernel.
 */
function rotateHalf(x: tf.Tensor, c: tf.Tensor, s: tf.Tensor, r: number): tf.Tensor {
  const [B, H, T, D] = x.shape as [number, number, number, number];
  const h = r / 2;
  const x1 = tf.slice(x, [0, 0, 0, 0], [B, H, T, h]); // [B, H, T, r/2]
  const x2 = tf.slice(x, [0, 0, 0, h], [B, H, T, h]); // [B, H, T, r/2]
  const y1 = tf.sub(tf.mul(x1, c), tf.mul(x2, s)); // [B, H, T, r/2]
  const y2 = tf.add(tf.mul(x2, c), tf.mul(x1, s)); // [B, H, T, r/2]
  const parts = [y1, y2];
  if (r < D) parts.push(tf.slice(x, [0, 0, 0, r], [B, H, T, D - r])); // [B, H, T, D - r]
  return tf.concat(parts, 3); // [B, H, T, D]
}

type RotateInputs = { x: tf.Tensor; cos: tf.Tensor; sin: tf.Tensor };
const ROTARY_KERNEL = 'SlmkitRotary';
const rotate = defineFusedOp<RotateInputs, { rotaryDim: number }>({
  kernelName: ROTARY_KERNEL,
  naive: ({ x, cos, sin }, { rotaryDim }) => rotateHalf(x, cos, sin, rotaryDim),
});

/**
 * The kernel's loop: `out = rotate(x)` with the tables' sin times `sign` (−1 rotates back: the transpose of the
 * rotation, which is the gradient with respect to `x`).
 */
function rotateLoop(x: Float32Array, c: Float32Array, s: Float32Array, out: Float32Array, shape: number[], rows: number, r: number, sign: number): void {
  const [B, H, T, D] = shape as [number, number, number, number];
  const h = r / 2;
  for (let b = 0; b < B; b++) {
    const row = rows === 1 ? 0 : b;
    for (let head = 0; head < H; head++) {
      for (let t = 0; t < T; t++) {
        const at = ((b * H + head) * T + t) * D;
        const tab = (row * T + t) * h;
        for (let i = 0; i < h; i++) {
          const x1 = x[at + i];
          const x2 = x[at + h + i];
          const cc = c[tab + i];
          const ss = sign * s[tab + i];
          out[at + i] = x1 * cc - x2 * ss;
          out[at + h + i] = x2 * cc + x1 * ss;
        }
        for (let i = r; i < D; i++) out[at + i] = x[at + i];
      }
    }
  }
}

function rotaryKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, cos, sin } = inputs as unknown as Record<'x' | 'cos' | 'sin', tf.TensorInfo>;
  const { rotaryDim, sign = 1 } = attrs as unknown as { rotaryDim: number; sign?: number };
  const [y] = runTypedKernel(backend, [x, cos, sin], [x.shape], ([xv, c, s], [out]) => rotateLoop(xv, c, s, out, x.shape, cos.shape[0], rotaryDim, sign));
  return y;
}

for (const backendName of ['cpu', 'wasm']) {
  registerFusedKernel({
    kernelName: ROTARY_KERNEL,
    backendName,
    kernelFunc: rotaryKernel as tf.KernelFunc,
    gradient: {
      inputsToSave: ['x', 'cos', 'sin'],
      gradFunc: (dy, [x, cos, sin], attrs) => {
        const { rotaryDim } = attrs as unknown as { rotaryDim: number };
        // The tables are constants in every use; their gradients (never needed so far) go through the op sequence.
        const tables = (i: 1 | 2) => (): tf.Tensor =>
          recomputeGradients(['x', 'cos', 'sin'], { x, cos, sin }, (t) => rotateHalf(t.x, t.cos, t.sin, rotaryDim), dy as tf.Tensor)[i];
        return {
          x: () => tf.engine().runKernel(ROTARY_KERNEL, { x: dy as tf.Tensor, cos, sin }, { rotaryDim, sign: -1 }) as tf.Tensor,
          cos: tables(1),
          sin: tables(2),
        };
      },
    },
  });
}

function isTables(p: unknown): p is RotaryTables {
  // Not a tensor of positions: with the full @tensorflow/tfjs loaded, tensors have `cos` and `sin` methods too.
  return p != null && typeof p === 'object' && !(p instanceof tf.Tensor) && 'cos' in p && 'sin' in p;
}

function isRange(p: unknown): p is { offset: number; length: number } {
  return p != null && typeof p === 'object' && !Array.isArray(p) && !(p instanceof tf.Tensor) && 'offset' in p;
}

/**
 * Rotary position embeddings (RoPE; Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding",
 * arXiv 2104.09864). For a head vector `x` at position `p`, the first `rotaryDim = r` dims are rotated pairwise, in
 * Hugging Face's `rotate_half` layout where dim `i` pairs with dim `i + r/2`:
 *
 * ```text
 * θ_i  = p · inv_freq_i,      inv_freq_i = base^(-2i/r),  i = 0 … r/2 − 1
 * y_i       = a · (x_i · cos θ_i − x_{i+r/2} · sin θ_i)
 * y_{i+r/2} = a · (x_{i+r/2} · cos θ_i + x_i · sin θ_i)
 * y_j       = x_j                                   for j >= r   (partial rotary passes the tail through)
 * ```
 *
 * so `q·k` depends only on the relative position. `a` is the attention factor (1 except for YaRN and LongRoPE). The
 * scalings of {@link RopeScaling} change `inv_freq` (and `a`): linear position interpolation; NTK-aware base scaling,
 * static or dynamic; YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension of Large Language Models",
 * arXiv 2309.00071); Llama 3.1's wavelength-dependent interpolation (Meta, Llama 3.1 release, July 2024); and
 * LongRoPE's per-frequency factors as released with Phi-3 (Ding et al. 2024, arXiv 2402.13753; Microsoft Phi-3,
 * April 2024). The formulas follow `transformers`' `modeling_rope_utils.py`.
 *
 * `inv_freq` is computed in float64 and rounded to float32; the angle is the float32 product of the float32
 * frequency and the float32 position, as in `transformers`; cos and sin are then evaluated in float64 in JavaScript
 * (identical on every backend; GPU `sin`/`cos` are not accurate enough for large angles) and uploaded as float32.
 * `dynamic` and `longrope` pick their frequencies from the largest position + 1 in each call (over the whole batch),
 * or from {@link RotaryCallOptions.seqLen}. Unlike `transformers`, the object keeps no state between calls; to
 * reproduce its dynamic-NTK cache (frequencies only ever grow until the sequence is back under the original context),
 * pass the largest length seen so far as `seqLen`.
 *
 * It has no parameters, so it is not a `Module`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { RotaryEmbedding } from '@slmkit/core';
 * const rope = new RotaryEmbedding({ headDim: 8, base: 10000, maxPositionEmbeddings: 2048 });
 * const q = tf.randomNormal([1, 2, 5, 8]) as tf.Tensor4D; // [B, H, T, D]
 * const qRot = rope.apply(q, { offset: 0, length: 5 }); // positions 0..4
 * console.log(qRot.shape); // [1, 2, 5, 8]
 * ```
 */
export class RotaryEmbedding {
  /** The validated configuration (a frozen copy, with `rotaryDim` and `scaling` filled in). */
  readonly config: Readonly<Required<RotaryConfig>>;
  /**
   * The tables of the last few calls by their positions: every layer of a model, and q and k in each, rotate by the
   * same positions, so one computation serves them all (the arrays are only read: the tensors made from them inside
   * `apply` are read by the rotation and disposed; {@link RotaryEmbedding.cosSin} hands out copies).
   */
  private readonly recentTables: { seqLen: number; full: boolean; positions: Float64Array; cos: Float32Array; sin: Float32Array }[] = [];

  /**
   * @param config - the rotary configuration; validated here, so a bad one throws a {@link ConfigError} naming the
   *   field, the expected and the found value.
   *
   * @example
   * ```ts
   * import { RotaryEmbedding } from '@slmkit/core';
   * const rope = new RotaryEmbedding({
   *   headDim: 64, base: 500000, maxPositionEmbeddings: 131072,
   *   scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
   * });
   * console.log(rope.rotaryDim); // 64
   * ```
   */
  constructor(config: RotaryConfig) {
    this.config = deepFreeze(validateConfig(config));
  }

  /**
   * Size of each head.
   *
   * @example
   * ```ts
   * import { RotaryEmbedding } from '@slmkit/core';
   * console.log(new RotaryEmbedding({ headDim: 16, rotaryDim: 4, base: 1e4, maxPositionEmbeddings: 64 }).headDim); // 16
   * ```
   */
  get headDim(): number {
    return this.config.headDim;
  }

  /**
   * How many leading dims of each head rotate.
   *
   * @example
   * ```ts
   * import { RotaryEmbedding } from '@slmkit/core';
   * console.log(new RotaryEmbedding({ headDim: 16, rotaryDim: 4, base: 1e4, maxPositionEmbeddings: 64 }).rotaryDim); // 4
   * ```
   */
  get rotaryDim(): number {
    return this.config.rotaryDim;
  }

  /**
   * The inverse frequencies (`rotaryDim / 2` of them, float64, before rounding to float32) used for a sequence of
   * length `seqLen`. Only `dynamic` and `longrope` depend on `seqLen`; it defaults to 1 (the unextended frequencies).
   *
   * @example
   * ```ts
   * import { RotaryEmbedding } from '@slmkit/core';
   * const rope = new RotaryEmbedding({ headDim: 4, base: 10000, maxPositionEmbeddings: 64 });
   * console.log(Array.from(rope.invFreq())); // [1, 0.01]
   * ```
   */
  invFreq(seqLen = 1): Float64Array {
    checkSeqLen(seqLen);
    const { base, rotaryDim: dim, maxPositionEmbeddings } = this.config;
    const s = this.config.scaling as ResolvedScaling;
    switch (s.type) {
      case 'default':
        return plainInvFreq(base, dim);
      case 'linear':
        return plainInvFreq(base, dim).map((f) => f / s.factor);
      case 'ntk':
        return plainInvFreq(base * Math.pow(s.factor, dim / (dim - 2)), dim);
      case 'dynamic': {
        const orig = s.originalMaxPositionEmbeddings ?? maxPositionEmbeddings;
        const len = Math.max(seqLen, orig);
        const grown = base * Math.pow((s.factor * len) / orig - (s.factor - 1), dim / (dim - 2));
        return plainInvFreq(grown, dim);
      }
      case 'yarn': {
        const betaFast = s.betaFast ?? 32;
        const betaSlow = s.betaSlow ?? 1;
        const truncate = s.truncate ?? true;
        // The dimension index whose wavelength fits `rotations` times into the original context.
        const dimFor = (rotations: number): number =>
          (dim * Math.log(s.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
        let low = dimFor(betaFast);
        let high = dimFor(betaSlow);
        if (truncate) {
          low = Math.floor(low);
          high = Math.ceil(high);
        }
        low = Math.max(low, 0);
        high = Math.min(high, dim - 1);
        if (low === high) high += 0.001;
        const plain = plainInvFreq(base, dim);
        return plain.map((extrapolated, i) => {
          // ramp = 0: keep the original frequency (high frequencies); ramp = 1: interpolate by `factor`.
          const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
          const interpolated = extrapolated / s.factor;
          return interpolated * ramp + extrapolated * (1 - ramp);
        });
      }
      case 'llama3': {
        const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
        const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
        return plainInvFreq(base, dim).map((f) => {
          const wavelen = (2 * Math.PI) / f;
          if (wavelen < highFreqWavelen) return f; // high frequency: unchanged
          if (wavelen > lowFreqWavelen) return f / s.factor; // low frequency: interpolated
          const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
          return (1 - smooth) * (f / s.factor) + smooth * f;
        });
      }
      case 'longrope': {
        const ext = seqLen > s.originalMaxPositionEmbeddings ? s.longFactor : s.shortFactor;
        return plainInvFreq(base, dim).map((f, i) => f / ext[i]);
      }
    }
  }

  /**
   * The factor that multiplies cos and sin (YaRN's and LongRoPE's attention scaling; 1 for the other scalings).
   *
   * @example
   * ```ts
   * import { RotaryEmbedding } from '@slmkit/core';
   * const rope = new RotaryEmbedding({
   *   headDim: 8, base: 10000, maxPositionEmbeddings: 256,
   *   scaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 64 },
   * });
   * console.log(rope.attentionFactor()); // 1 + 0.1 * ln 4 ≈ 1.1386
   * ```
   */
  attentionFactor(): number {
    const s = this.config.scaling as ResolvedScaling;
    if (s.type === 'yarn') {
      if (s.attentionFactor !== undefined) return s.attentionFactor;
      // Python truthiness: a zero mscale or mscaleAllDim falls back to the plain formula, as in transformers.
      if (s.mscale && s.mscaleAllDim) return yarnMscale(s.factor, s.mscale) / yarnMscale(s.factor, s.mscaleAllDim);
      return yarnMscale(s.factor);
    }
    if (s.type === 'longrope') {
      if (s.attentionFactor !== undefined) return s.attentionFactor;
      const f = s.factor ?? this.config.maxPositionEmbeddings / s.originalMaxPositionEmbeddings;
      return f <= 1 ? 1 : Math.sqrt(1 + Math.log(f) / Math.log(s.originalMaxPositionEmbeddings));
    }
    return 1;
  }

  /**
   * The cos and sin tables for some positions, in the Hugging Face layout (the `rotaryDim / 2` frequencies
   * concatenated twice): `[T, rotaryDim]` for shared positions, `[B, T, rotaryDim]` for per-batch positions. Compute
   * them once per forward pass and pass them to {@link RotaryEmbedding.apply} for every layer's q and k. The caller
   * owns the result.
   *
   * @example
   * ```ts
   * import { RotaryEmbedding } from '@slmkit/core';
   * const rope = new RotaryEmbedding({ headDim: 2, base: 10000, maxPositionEmbeddings: 16 });
   * const { cos, sin } = rope.cosSin([0, 1]);
   * console.log(cos.arraySync(), sin.arraySync()); // [[1, 1], [cos 1, cos 1]] [[0, 0], [sin 1, sin 1]]
   * cos.dispose();
   * sin.dispose();
   * ```
   */
  cosSin(
    positions: number[] | tf.Tensor1D | { offset: number; length: number },
    options?: RotaryCallOptions,
  ): RotaryTables<tf.Tensor2D>;
  cosSin(positions: number[][] | tf.Tensor2D, options?: RotaryCallOptions): RotaryTables<tf.Tensor3D>;
  cosSin(positions: RotaryPositions, options?: RotaryCallOptions): RotaryTables;
  cosSin(positions: RotaryPositions, options: RotaryCallOptions = {}): RotaryTables {
    const pos = normalisePositions(positions);
    const { cos, sin } = this.tables(pos, options, true);
    const r = this.config.rotaryDim;
    const shape = pos.batch == null ? [pos.length, r] : [pos.batch, pos.length, r];
    return {
      // Copies: the cpu backend keeps the array it is given, and these tensors are the caller's.
      cos: tf.tensor(cos.slice(), shape, 'float32'), // [T, r] or [B, T, r]
      sin: tf.tensor(sin.slice(), shape, 'float32'), // [T, r] or [B, T, r]
    };
  }

  /**
   * Rotates `x` (`[B, H, T, headDim]`, queries or keys) by its positions: `positions` gives them (shared by the batch,
   * or `[B, T]` per batch element), or pass tables from {@link RotaryEmbedding.cosSin} to reuse them across layers.
   * Dims past `rotaryDim` pass through unchanged. Returns a new tensor; `x` is not disposed.
   *
   * @throws {@link ShapeError} when `x` is not a float32 rank-4 tensor with `headDim` last, or the positions' `T`
   *   (or batch) does not match `x`.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { RotaryEmbedding } from '@slmkit/core';
   * const rope = new RotaryEmbedding({ headDim: 4, base: 10000, maxPositionEmbeddings: 64 });
   * const k = tf.ones([2, 1, 3, 4]) as tf.Tensor4D; // [B, H, T, D]
   * // Left padding: row 0 has one pad token, so its real tokens sit at positions 0 and 1.
   * const rotated = rope.apply(k, [[0, 0, 1], [0, 1, 2]]);
   * const tables = rope.cosSin({ offset: 0, length: 3 }); // or share tables across layers
   * const again = rope.apply(k, tables);
   * console.log(rotated.shape, again.shape); // [2, 1, 3, 4] [2, 1, 3, 4]
   * ```
   */
  apply(x: tf.Tensor4D, positions: RotaryPositions | RotaryTables, options: RotaryCallOptions = {}): tf.Tensor4D {
    if (!(x instanceof tf.Tensor) || x.rank !== 4) {
      throw new ShapeError(`RotaryEmbedding.apply: x must be rank 4 [B, H, T, headDim], found shape ${describe(x)}`, {
        field: 'x',
        expected: 'rank 4',
        found: x instanceof tf.Tensor ? x.shape : typeof x,
      });
    }
    const [B, H, T, D] = x.shape;
    if (D !== this.config.headDim) {
      throw new ShapeError(`RotaryEmbedding.apply: x's last dimension must be headDim ${this.config.headDim}, found ${D}`, {
        field: 'x',
        expected: this.config.headDim,
        found: D,
      });
    }
    if (x.dtype !== 'float32') {
      throw new ShapeError(`RotaryEmbedding.apply: x must be float32, found ${x.dtype}`, {
        field: 'x',
        expected: 'float32',
        found: x.dtype,
      });
    }
    const r = this.config.rotaryDim;
    const h = r / 2;
    // Validate and compute everything that can throw before allocating tensors.
    let halfCos: Float32Array | undefined;
    let halfSin: Float32Array | undefined;
    let rows: number | null;
    if (isTables(positions)) {
      const { cos, sin } = positions;
      const ok = (t: tf.Tensor): boolean =>
        t instanceof tf.Tensor &&
        (t.rank === 2 || t.rank === 3) &&
        t.shape[t.rank - 1] === r &&
        t.shape[t.rank - 2] === T &&
        (t.rank === 2 || t.shape[0] === 1 || t.shape[0] === B);
      if (!ok(cos) || !ok(sin) || cos.rank !== sin.rank || cos.shape[0] !== sin.shape[0]) {
        throw new ShapeError(
          `RotaryEmbedding.apply: cos and sin must both be [${T}, ${r}] or [B, ${T}, ${r}], found ${describe(cos)} and ${describe(sin)}`,
          { field: 'positions', expected: [T, r], found: [describe(cos), describe(sin)] },
        );
      }
      rows = cos.rank === 3 ? cos.shape[0] : null;
    } else {
      const pos = normalisePositions(positions);
      if (pos.length !== T) {
        throw new ShapeError(`RotaryEmbedding.apply: ${pos.length} positions for a sequence of ${T}`, {
          field: 'positions',
          expected: T,
          found: pos.length,
        });
      }
      if (pos.batch != null && pos.batch !== B && pos.batch !== 1) {
        throw new ShapeError(`RotaryEmbedding.apply: ${pos.batch} rows of positions for a batch of ${B}`, {
          field: 'positions',
          expected: B,
          found: pos.batch,
        });
      }
      ({ cos: halfCos, sin: halfSin } = this.tables(pos, options, false));
      rows = pos.batch;
    }
    return tf.tidy(() => {
      let c: tf.Tensor;
      let s: tf.Tensor;
      const tableShape = rows == null ? [1, 1, T, h] : [rows, 1, T, h];
      if (halfCos != null && halfSin != null) {
        c = tf.tensor(halfCos, tableShape, 'float32'); // [B|1, 1, T, r/2]
        s = tf.tensor(halfSin, tableShape, 'float32'); // [B|1, 1, T, r/2]
      } else {
        const { cos, sin } = positions as RotaryTables;
        const begin = cos.rank === 3 ? [0, 0, 0] : [0, 0];
        const size = cos.rank === 3 ? [-1, -1, h] : [-1, h];
        c = tf.reshape(tf.slice(cos, begin, size), tableShape); // [B|1, 1, T, r/2]
        s = tf.reshape(tf.slice(sin, begin, size), tableShape); // [B|1, 1, T, r/2]
      }
      // One kernel on cpu / wasm; the op sequence of `rotateHalf` elsewhere.
      const implementation = rotate.hasKernel() ? 'fused' : 'naive';
      return rotate({ x, cos: c, sin: s }, { rotaryDim: r }, { implementation }) as tf.Tensor4D; // [B, H, T, D]
    });
  }

  /** cos/sin values in float32, `half` (r/2 per position) or full HF layout (r per position). */
  private tables(
    pos: NormalisedPositions,
    options: RotaryCallOptions,
    full: boolean,
  ): { cos: Float32Array; sin: Float32Array } {
    const n = pos.values.length;
    let seqLen = options.seqLen;
    if (seqLen === undefined) {
      let maxPos = -Infinity;
      for (let i = 0; i < n; i++) maxPos = Math.max(maxPos, pos.values[i]);
      seqLen = n === 0 ? 1 : maxPos + 1;
    } else {
      checkSeqLen(seqLen);
    }
    const hit = this.recentTables.find(
      (t) => t.seqLen === seqLen && t.full === full && t.positions.length === n && t.positions.every((p, i) => p === pos.values[i]),
    );
    if (hit != null) return hit;
    const inv = Float32Array.from(this.invFreq(Math.max(seqLen, 1)));
    const a = this.attentionFactor();
    const h = inv.length;
    const width = full ? 2 * h : h;
    const cos = new Float32Array(n * width);
    const sin = new Float32Array(n * width);
    for (let k = 0; k < n; k++) {
      const p = Math.fround(pos.values[k]);
      const row = k * width;
      for (let i = 0; i < h; i++) {
        // float32 angle, as transformers' float32 matmul of inv_freq and position_ids gives it.
        const angle = Math.fround(inv[i] * p);
        const c = a === 1 ? Math.cos(angle) : Math.fround(Math.cos(angle)) * a;
        const sn = a === 1 ? Math.sin(angle) : Math.fround(Math.sin(angle)) * a;
        cos[row + i] = c;
        sin[row + i] = sn;
        if (full) {
          cos[row + h + i] = c;
          sin[row + h + i] = sn;
        }
      }
    }
    // Two entries: a decode step's position and a prefill's, or the half tables and the full ones.
    this.recentTables.unshift({ seqLen, full, positions: Float64Array.from(pos.values), cos, sin });
    this.recentTables.length = Math.min(this.recentTables.length, 2);
    return { cos, sin };
  }
}

function checkSeqLen(seqLen: unknown): void {
  if (!isFiniteNumber(seqLen) || seqLen <= 0) {
    throw new ConfigError(`seqLen: expected a positive number, found ${String(seqLen)}`, {
      field: 'seqLen',
      expected: 'a positive number',
      found: seqLen,
    });
  }
}

function describe(t: unknown): string {
  if (t instanceof tf.Tensor) return `[${t.shape.join(', ')}]`;
  return t === null ? 'null' : typeof t;
}

function positionsError(message: string, found: unknown): never {
  throw new ShapeError(`RotaryEmbedding positions: ${message}`, { field: 'positions', found });
}

function normalisePositions(p: RotaryPositions): NormalisedPositions {
  if (p instanceof tf.Tensor) {
    if (p.rank !== 1 && p.rank !== 2) positionsError(`a tensor must be [T] or [B, T], found [${p.shape.join(', ')}]`, p.shape);
    const values = p.dataSync() as ArrayLike<number>;
    checkFinite(values);
    return p.rank === 1
      ? { values, batch: null, length: p.shape[0] }
      : { values, batch: p.shape[0], length: p.shape[1] as number };
  }
  if (Array.isArray(p)) {
    if (p.length > 0 && Array.isArray(p[0])) {
      const rows = p as number[][];
      const length = rows[0].length;
      const values = new Float64Array(rows.length * length);
      rows.forEach((row, b) => {
        if (!Array.isArray(row) || row.length !== length) {
          positionsError(`every row must have ${length} positions, row ${b} has ${Array.isArray(row) ? row.length : typeof row}`, row);
        }
        for (let t = 0; t < length; t++) values[b * length + t] = row[t];
      });
      checkFinite(values);
      return { values, batch: rows.length, length };
    }
    const values = p as number[];
    checkFinite(values);
    return { values, batch: null, length: values.length };
  }
  if (isRange(p)) {
    const { offset, length } = p;
    if (!isFiniteNumber(offset)) positionsError(`offset must be a finite number, found ${String(offset)}`, offset);
    if (!isFiniteNumber(length) || length < 0 || !Number.isInteger(length)) {
      positionsError(`length must be a non-negative integer, found ${String(length)}`, length);
    }
    const values = new Float64Array(length);
    for (let t = 0; t < length; t++) values[t] = offset + t;
    return { values, batch: null, length };
  }
  return positionsError('expected number[], number[][], a 1-D or 2-D tensor, or { offset, length }', p);
}

function checkFinite(values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    if (typeof values[i] !== 'number' || !Number.isFinite(values[i])) {
      positionsError(`position ${i} is ${String(values[i])}, expected a finite number`, values[i]);
    }
  }
}

/**
 * Options of {@link rotaryConfigFromHF}.
 *
 * @example
 * ```ts
 * import { rotaryConfigFromHF, type RotaryFromHFOptions } from '@slmkit/core';
 * const options: RotaryFromHFOptions = { layerType: 'sliding_attention' };
 * const config = rotaryConfigFromHF({
 *   hidden_size: 64, num_attention_heads: 4, max_position_embeddings: 128,
 *   layer_types: ['sliding_attention', 'full_attention'],
 *   rope_parameters: {
 *     sliding_attention: { rope_type: 'default', rope_theta: 10000 },
 *     full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1000000 },
 *   },
 * }, options);
 * console.log(config.base); // 10000
 * ```
 */
export interface RotaryFromHFOptions {
  /**
   * For configs whose `rope_parameters` hold one entry per layer type (`full_attention`, `sliding_attention`), which
   * one to read. Required for such configs.
   */
  layerType?: string;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v != null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function present(v: unknown): boolean {
  return v !== undefined && v !== null;
}

/**
 * Maps a Hugging Face `config.json` (as parsed JSON) to a {@link RotaryConfig}, with `transformers`' defaults and
 * legacy spellings: `rope_scaling` (or v5's `rope_parameters`) with `rope_type` or the older `type`; Phi-3's legacy
 * `su` and `yarn` (with short/long factors) both mean `longrope`; `rope_theta` (default 10000); `head_dim`, else
 * `hidden_size / num_attention_heads`; `partial_rotary_factor`; `max_position_embeddings`; and a top-level
 * `original_max_position_embeddings` (Phi-3), which takes precedence over the one inside `rope_scaling` for yarn,
 * llama3 and longrope. Dynamic NTK uses `max_position_embeddings` as the original context, as `transformers` does.
 * Hymba's remote-code fields (`rope`, top-level `rope_type` `ntk` / `dynamic_ntk` with `orig_max_position_embeddings`,
 * `kq_head_dim`, `attn_hidden_size`) are understood too.
 *
 * @param config - the parsed `config.json`.
 * @param options - see {@link RotaryFromHFOptions}.
 * @returns a validated {@link RotaryConfig}.
 * @throws {@link ConfigError} for an unknown rope type or a missing or malformed field; the message names the field
 *   (e.g. `rope_scaling.low_freq_factor`) with the expected and found values.
 *
 * @example
 * ```ts
 * import { RotaryEmbedding, rotaryConfigFromHF } from '@slmkit/core';
 * const config = rotaryConfigFromHF({
 *   hidden_size: 4096, num_attention_heads: 32, max_position_embeddings: 131072, rope_theta: 500000,
 *   rope_scaling: {
 *     rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4,
 *     original_max_position_embeddings: 8192,
 *   },
 * });
 * const rope = new RotaryEmbedding(config);
 * console.log(config.headDim, config.scaling); // 128 { type: 'llama3', ... }
 * ```
 */
export function rotaryConfigFromHF(config: Record<string, unknown>, options: RotaryFromHFOptions = {}): RotaryConfig {
  const cfg = obj(config);
  if (cfg == null) fail('config', 'a parsed config.json object', config);
  if (cfg.rope === false) fail('rope', 'true (this model does not use rotary embeddings)', cfg.rope, 'true: the config says this model has no rotary embeddings');

  // Where the rope parameters live: v5 `rope_parameters` (maybe per layer type), else `rope_scaling`.
  let params: Record<string, unknown> | undefined;
  let paramsName = 'rope_scaling';
  const ropeParameters = obj(cfg.rope_parameters);
  if (ropeParameters != null) {
    paramsName = 'rope_parameters';
    const layerTypes = Array.isArray(cfg.layer_types) ? (cfg.layer_types as unknown[]).map(String) : [];
    const keys = Object.keys(ropeParameters);
    const perLayer = keys.length > 0 && keys.every((k) => obj(ropeParameters[k]) != null && (layerTypes.length === 0 || layerTypes.includes(k)));
    if (perLayer) {
      if (options.layerType == null) {
        fail('rope_parameters', 'a layerType option', undefined, `options.layerType naming one of ${keys.join(', ')} (rope_parameters is per layer type)`);
      }
      params = obj(ropeParameters[options.layerType]);
      paramsName = `rope_parameters.${options.layerType}`;
      if (params == null) fail(paramsName, keys, undefined, `one of ${keys.join(', ')}`);
    } else {
      params = ropeParameters;
    }
  } else if (present(cfg.rope_scaling)) {
    params = obj(cfg.rope_scaling);
    if (params == null) fail('rope_scaling', 'an object or null', cfg.rope_scaling);
  }
  const p = params ?? {};
  const field = (k: string): string => `${paramsName}.${k}`;

  const num = (name: string, v: unknown, opts: { int?: boolean } = {}): number => {
    if (!isFiniteNumber(v) || v <= 0 || (opts.int === true && !Number.isInteger(v))) {
      fail(name, opts.int === true ? 'a positive integer' : 'a positive number', v);
    }
    return v;
  };
  const required = (k: string, opts: { int?: boolean } = {}): number => {
    if (!present(p[k])) fail(field(k), 'a positive number', p[k], `a positive ${opts.int === true ? 'integer' : 'number'} (required for this rope type)`);
    return num(field(k), p[k], opts);
  };
  const optional = (k: string): number | undefined => (present(p[k]) ? num(field(k), p[k]) : undefined);

  // base
  const thetaSource = present(p.rope_theta) ? field('rope_theta') : present(cfg.rope_theta) ? 'rope_theta' : 'rotary_emb_base';
  const thetaValue = p.rope_theta ?? cfg.rope_theta ?? cfg.rotary_emb_base ?? 10000;
  const base = num(thetaSource, thetaValue);

  // head dim
  let headDim: number;
  const positiveOrNull = (v: unknown): number | undefined => (isFiniteNumber(v) && v > 0 ? v : undefined);
  const explicitHeadDim = positiveOrNull(cfg.head_dim) ?? positiveOrNull(cfg.kq_head_dim) ?? positiveOrNull(cfg.attention_head_dim);
  if (explicitHeadDim != null) {
    const name = positiveOrNull(cfg.head_dim) != null ? 'head_dim' : positiveOrNull(cfg.kq_head_dim) != null ? 'kq_head_dim' : 'attention_head_dim';
    headDim = num(name, explicitHeadDim, { int: true });
  } else {
    const hiddenName = positiveOrNull(cfg.attn_hidden_size) != null ? 'attn_hidden_size' : 'hidden_size';
    const hidden = positiveOrNull(cfg.attn_hidden_size) ?? cfg.hidden_size;
    if (!present(hidden)) fail('hidden_size', 'a positive integer (or head_dim)', hidden, 'a positive integer, or head_dim');
    const h = num(hiddenName, hidden, { int: true });
    if (!present(cfg.num_attention_heads)) fail('num_attention_heads', 'a positive integer (or head_dim)', cfg.num_attention_heads, 'a positive integer, or head_dim');
    const heads = num('num_attention_heads', cfg.num_attention_heads, { int: true });
    headDim = Math.floor(h / heads);
  }

  // partial rotary
  const prfName = present(p.partial_rotary_factor) ? field('partial_rotary_factor') : present(cfg.partial_rotary_factor) ? 'partial_rotary_factor' : 'rotary_pct';
  const prfValue = p.partial_rotary_factor ?? cfg.partial_rotary_factor ?? cfg.rotary_pct ?? 1;
  const prf = num(prfName, prfValue);
  if (prf > 1) fail(prfName, 'a fraction in (0, 1]', prf);
  const rotaryDim = Math.floor(headDim * prf);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    fail(prfName, 'a fraction giving an even rotary dim', prf, `a fraction giving an even rotary dim of at least 2 (head dim ${headDim} × ${prf} gives ${rotaryDim})`);
  }

  if (!present(cfg.max_position_embeddings)) {
    fail('max_position_embeddings', 'a positive integer', cfg.max_position_embeddings);
  }
  const maxPositionEmbeddings = num('max_position_embeddings', cfg.max_position_embeddings, { int: true });

  // rope type
  let ropeType: unknown = p.rope_type ?? p.type;
  let typeField = present(p.rope_type) ? field('rope_type') : field('type');
  let scaling: RopeScaling;
  if (params == null && typeof cfg.rope_type === 'string') {
    // Hymba (NVIDIA remote code): top-level rope_type with orig_max_position_embeddings and a fixed factor of 2.
    typeField = 'rope_type';
    ropeType = cfg.rope_type;
    if (ropeType === 'ntk' || ropeType === 'dynamic_ntk') {
      if (!present(cfg.orig_max_position_embeddings)) {
        fail('orig_max_position_embeddings', 'a positive integer', cfg.orig_max_position_embeddings, `a positive integer (required by rope_type "${ropeType}")`);
      }
      const orig = num('orig_max_position_embeddings', cfg.orig_max_position_embeddings, { int: true });
      const hymbaFactor = 2;
      scaling =
        ropeType === 'ntk'
          ? // base · (2·max/orig − 1)^(d/(d−2)): static NTK with factor 2·max/orig − 1.
            { type: 'ntk', factor: (hymbaFactor * maxPositionEmbeddings) / orig - (hymbaFactor - 1) }
          : { type: 'dynamic', factor: hymbaFactor, originalMaxPositionEmbeddings: orig };
    } else if (ropeType === 'default') {
      scaling = { type: 'default' };
    } else {
      return fail('rope_type', ['default', 'ntk', 'dynamic_ntk'], ropeType, 'one of default, ntk, dynamic_ntk (Hymba)');
    }
  } else {
    ropeType ??= 'default';
    if (typeof ropeType !== 'string') fail(typeField, 'a string', ropeType);
    const topOrig = present(cfg.original_max_position_embeddings) ? cfg.original_max_position_embeddings : undefined;
    const origFor = (): number => {
      if (topOrig !== undefined) return num('original_max_position_embeddings', topOrig, { int: true });
      if (present(p.original_max_position_embeddings)) return num(field('original_max_position_embeddings'), p.original_max_position_embeddings, { int: true });
      return maxPositionEmbeddings;
    };
    const isPhi3LegacyYarn = ropeType === 'yarn' && present(p.short_factor) && present(p.long_factor);
    if (ropeType === 'su' || isPhi3LegacyYarn) ropeType = 'longrope';
    switch (ropeType) {
      case 'default':
        scaling = { type: 'default' };
        break;
      case 'linear':
        scaling = { type: 'linear', factor: required('factor') };
        break;
      case 'ntk':
        scaling = { type: 'ntk', factor: required('factor') };
        break;
      case 'dynamic':
        scaling = { type: 'dynamic', factor: required('factor'), originalMaxPositionEmbeddings: maxPositionEmbeddings };
        break;
      case 'yarn': {
        const orig = origFor();
        const yarn: Extract<RopeScaling, { type: 'yarn' }> = {
          type: 'yarn',
          factor: optional('factor') ?? maxPositionEmbeddings / orig,
          originalMaxPositionEmbeddings: orig,
        };
        // `or` defaults, as transformers reads them: 0 / null mean the default.
        if (p.beta_fast) yarn.betaFast = num(field('beta_fast'), p.beta_fast);
        if (p.beta_slow) yarn.betaSlow = num(field('beta_slow'), p.beta_slow);
        if (present(p.mscale)) {
          if (!isFiniteNumber(p.mscale)) fail(field('mscale'), 'a number', p.mscale);
          yarn.mscale = p.mscale;
        }
        if (present(p.mscale_all_dim)) {
          if (!isFiniteNumber(p.mscale_all_dim)) fail(field('mscale_all_dim'), 'a number', p.mscale_all_dim);
          yarn.mscaleAllDim = p.mscale_all_dim;
        }
        const af = optional('attention_factor');
        if (af !== undefined) yarn.attentionFactor = af;
        if (present(p.truncate)) {
          if (typeof p.truncate !== 'boolean') fail(field('truncate'), 'a boolean', p.truncate);
          yarn.truncate = p.truncate;
        }
        scaling = yarn;
        break;
      }
      case 'llama3':
        scaling = {
          type: 'llama3',
          factor: required('factor'),
          lowFreqFactor: required('low_freq_factor'),
          highFreqFactor: required('high_freq_factor'),
          originalMaxPositionEmbeddings: origFor(),
        };
        break;
      case 'longrope': {
        const list = (k: string): number[] => {
          const v = p[k];
          if (!Array.isArray(v)) fail(field(k), `an array of ${rotaryDim / 2} positive numbers`, v);
          v.forEach((x, i) => {
            if (!isFiniteNumber(x) || x <= 0) fail(`${field(k)}[${i}]`, 'a positive number', x);
          });
          if (v.length !== rotaryDim / 2) fail(field(k), rotaryDim / 2, v.length, `${rotaryDim / 2} entries (rotary dim / 2)`);
          return [...(v as number[])];
        };
        const longrope: Extract<RopeScaling, { type: 'longrope' }> = {
          type: 'longrope',
          shortFactor: list('short_factor'),
          longFactor: list('long_factor'),
          originalMaxPositionEmbeddings: origFor(),
        };
        const af = optional('attention_factor');
        if (af !== undefined) longrope.attentionFactor = af;
        const f = optional('factor');
        if (f !== undefined) longrope.factor = f;
        scaling = longrope;
        break;
      }
      default:
        return fail(typeField, ['default', 'linear', 'dynamic', 'ntk', 'yarn', 'llama3', 'longrope', 'su'], ropeType, 'one of default, linear, dynamic, ntk, yarn, llama3, longrope (or the legacy su)');
    }
  }

  const result: RotaryConfig = { headDim, rotaryDim, base, maxPositionEmbeddings, scaling };
  validateConfig(result);
  return result;
}
