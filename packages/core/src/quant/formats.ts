/**
 * Low-bit weight formats: how a float32 weight `[out, in]` becomes packed integer codes plus scales, and back.
 * Pure typed-array code, shared by `QuantizedLinear`, its kernels and the tests.
 *
 * @module
 */
import { ConfigError } from '../errors.js';

/**
 * The weight formats of {@link QuantizedLinear}:
 *
 * - `int8`: symmetric, one scale per output channel: `s_o = max_i |W_oi| / 127`, `q = round(W / s_o)` in
 *   `[−127, 127]`, `Ŵ = s_o · q`. Four codes per 32-bit word.
 * - `int4`: asymmetric, one scale and zero point per group of `groupSize` input features of each output channel:
 *   over the group's range widened to include 0, `s = (max − min) / 15`, `z = round(−min / s)` in `[0, 15]`,
 *   `q = clamp(round(W / s) + z, 0, 15)`, `Ŵ = s · (q − z)`. Eight codes per word; the zero points are packed
 *   too, eight per word over the whole tensor (group `(o, g)` is number `o · groups + g`), so a group of 64 costs
 *   32 bytes of codes, 4 of scale and ½ of zero point: 7x smaller than float32.
 * - `ternary`: BitNet b1.58's absmean quantisation, one scale per tensor: `γ = mean |W|`,
 *   `q = clamp(round(W / (γ + 1e−8)), −1, 1)`, `Ŵ = γ · q`. Sixteen codes per word (2 bits each).
 *
 * @example
 * ```ts
 * import type { QuantScheme } from '@slmkit/core';
 * const scheme: QuantScheme = 'int4';
 * ```
 */
export type QuantScheme = 'int8' | 'int4' | 'ternary';

/**
 * Codes per 32-bit word of each scheme.
 *
 * @example
 * ```ts
 * import { CODES_PER_WORD } from '@slmkit/core';
 * console.log(CODES_PER_WORD.int4); // 8
 * ```
 */
export const CODES_PER_WORD: Readonly<Record<QuantScheme, number>> = Object.freeze({ int8: 4, int4: 8, ternary: 16 });

/**
 * A weight in one of the {@link QuantScheme} formats, as typed arrays. Codes are packed row by row (output channel
 * by output channel), `wordsPerRow = ceil(in / codesPerWord)` words per row, the last word of a row zero-padded.
 *
 * @example
 * ```ts
 * import { quantizeWeight, type PackedWeight } from '@slmkit/core';
 * const q: PackedWeight = quantizeWeight(new Float32Array([0.5, -1, 0.25, 1]), 2, 2, 'int8');
 * console.log(q.packed.length, q.scales.length); // 2 2
 * ```
 */
export interface PackedWeight {
  /** The format. */
  scheme: QuantScheme;
  /** Output features (rows). */
  outFeatures: number;
  /** Input features (columns). */
  inFeatures: number;
  /** Input features per scale: `inFeatures` for `int8`, the group size for `int4`, every weight for `ternary`. */
  groupSize: number;
  /** The codes, `[out, wordsPerRow]` 32-bit words. */
  packed: Int32Array;
  /** `int8`: `[out]`; `int4`: `[out, groups]`; `ternary`: `[1]`. */
  scales: Float32Array;
  /** `int4` only: the zero points (integers in `[0, 15]`) of the `out · groups` groups, 4 bits each, packed; empty otherwise. */
  zeros: Int32Array;
}

/**
 * Words per packed row: `ceil(inFeatures / codesPerWord)`.
 *
 * @example
 * ```ts
 * import { wordsPerRow } from '@slmkit/core';
 * console.log(wordsPerRow('int8', 10)); // 3
 * ```
 */
export function wordsPerRow(scheme: QuantScheme, inFeatures: number): number {
  return Math.ceil(inFeatures / CODES_PER_WORD[scheme]);
}

/** Groups per row of an `int4` weight. */
function groupsPerRow(inFeatures: number, groupSize: number): number {
  return Math.ceil(inFeatures / groupSize);
}

/**
 * Quantises a float32 weight `w` `[out, in]` (row-major, the layout of a Hugging Face `Linear.weight`).
 *
 * @param groupSize - `int4` only: input features per scale (default 64; 32, 64 and 128 are the usual choices).
 * @throws {@link ConfigError} for an unknown scheme, a group size that is not a positive integer, a `w` of the
 *   wrong length, or a weight that is not finite.
 *
 * @example
 * ```ts
 * import { dequantizeWeight, quantizeWeight } from '@slmkit/core';
 * const w = new Float32Array([0.1, -0.2, 0.3, 0.05, 0, 0.7, -0.7, 0.2]);
 * const q = quantizeWeight(w, 2, 4, 'int4', 4);
 * console.log(dequantizeWeight(q)); // close to w: 16 levels per group of 4
 * ```
 */
export function quantizeWeight(w: Float32Array, outFeatures: number, inFeatures: number, scheme: QuantScheme, groupSize = 64): PackedWeight {
  if (!(scheme in CODES_PER_WORD)) {
    throw new ConfigError(`quantizeWeight: scheme must be "int8", "int4" or "ternary", found ${JSON.stringify(scheme)}`, {
      field: 'scheme',
      expected: ['int8', 'int4', 'ternary'],
      found: scheme,
    });
  }
  if (scheme === 'int4' && (!Number.isInteger(groupSize) || groupSize <= 0)) {
    throw new ConfigError(`quantizeWeight: groupSize must be a positive integer, found ${String(groupSize)}`, {
      field: 'groupSize',
      expected: 'a positive integer (32, 64 or 128 usually)',
      found: groupSize,
    });
  }
  if (w.length !== outFeatures * inFeatures) {
    throw new ConfigError(`quantizeWeight: the weight has ${w.length} values, expected [${outFeatures}, ${inFeatures}] = ${outFeatures * inFeatures}`, {
      field: 'weight',
      expected: outFeatures * inFeatures,
      found: w.length,
    });
  }
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(w[i])) {
      throw new ConfigError(`quantizeWeight: weight value ${i} (row ${Math.floor(i / inFeatures)}) is ${w[i]}`, {
        field: 'weight',
        expected: 'finite values',
        found: w[i],
      });
    }
  }
  const per = CODES_PER_WORD[scheme];
  const words = wordsPerRow(scheme, inFeatures);
  const packed = new Int32Array(outFeatures * words);
  const put = (o: number, i: number, code: number): void => {
    const bits = 32 / per;
    packed[o * words + Math.floor(i / per)] |= (code & ((1 << bits) - 1)) << (bits * (i % per));
  };
  if (scheme === 'int8') {
    const scales = new Float32Array(outFeatures);
    for (let o = 0; o < outFeatures; o++) {
      let max = 0;
      for (let i = 0; i < inFeatures; i++) max = Math.max(max, Math.abs(w[o * inFeatures + i]));
      const s = Math.fround(max / 127);
      scales[o] = s;
      for (let i = 0; i < inFeatures; i++) put(o, i, s === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(w[o * inFeatures + i] / s))));
    }
    return { scheme, outFeatures, inFeatures, groupSize: inFeatures, packed, scales, zeros: new Int32Array(0) };
  }
  if (scheme === 'int4') {
    const groups = groupsPerRow(inFeatures, groupSize);
    const scales = new Float32Array(outFeatures * groups);
    const zeros = new Int32Array(Math.ceil((outFeatures * groups) / 8));
    for (let o = 0; o < outFeatures; o++) {
      for (let g = 0; g < groups; g++) {
        const from = g * groupSize;
        const to = Math.min(inFeatures, from + groupSize);
        let min = 0;
        let max = 0;
        for (let i = from; i < to; i++) {
          min = Math.min(min, w[o * inFeatures + i]);
          max = Math.max(max, w[o * inFeatures + i]);
        }
        const s = Math.fround((max - min) / 15);
        const z = s === 0 ? 0 : Math.max(0, Math.min(15, Math.round(-min / s)));
        scales[o * groups + g] = s;
        const f = o * groups + g;
        zeros[f >> 3] |= z << (4 * (f & 7));
        for (let i = from; i < to; i++) put(o, i, s === 0 ? z : Math.max(0, Math.min(15, Math.round(w[o * inFeatures + i] / s) + z)));
      }
    }
    return { scheme, outFeatures, inFeatures, groupSize, packed, scales, zeros };
  }
  let sum = 0;
  for (let i = 0; i < w.length; i++) sum += Math.abs(w[i]);
  const gamma = Math.fround(sum / w.length);
  for (let o = 0; o < outFeatures; o++) {
    for (let i = 0; i < inFeatures; i++) put(o, i, Math.max(-1, Math.min(1, Math.round(w[o * inFeatures + i] / (gamma + 1e-8)))) + 1);
  }
  return { scheme, outFeatures, inFeatures, groupSize: outFeatures * inFeatures, packed, scales: Float32Array.of(gamma), zeros: new Int32Array(0) };
}

/**
 * The integer code of weight `(o, i)`: `int8` in `[−127, 127]`, `int4` in `[0, 15]`, `ternary` in `{−1, 0, 1}`.
 *
 * @example
 * ```ts
 * import { quantizeWeight, weightCode } from '@slmkit/core';
 * const q = quantizeWeight(new Float32Array([1, -1, 0, 0.5]), 1, 4, 'ternary');
 * console.log([0, 1, 2, 3].map((i) => weightCode(q, 0, i))); // [1, -1, 0, 1]
 * ```
 */
export function weightCode(q: PackedWeight, o: number, i: number): number {
  const per = CODES_PER_WORD[q.scheme];
  const word = q.packed[o * wordsPerRow(q.scheme, q.inFeatures) + Math.floor(i / per)];
  const k = i % per;
  if (q.scheme === 'int8') return (word << (24 - 8 * k)) >> 24;
  if (q.scheme === 'int4') return (word >>> (4 * k)) & 15;
  return ((word >>> (2 * k)) & 3) - 1;
}

/**
 * The zero point of `int4` group `g` of output channel `o`.
 *
 * @example
 * ```ts
 * import { quantizeWeight, zeroPoint } from '@slmkit/core';
 * const q = quantizeWeight(new Float32Array([-1, 1, 0, 2]), 1, 4, 'int4', 2);
 * console.log(zeroPoint(q, 0, 0), zeroPoint(q, 0, 1)); // 8 0
 * ```
 */
export function zeroPoint(q: PackedWeight, o: number, g: number): number {
  const f = o * Math.ceil(q.inFeatures / q.groupSize) + g;
  return (q.zeros[f >> 3] >>> (4 * (f & 7))) & 15;
}

/**
 * The float32 weight `[out, in]` a {@link PackedWeight} stands for: the reference formula of each scheme
 * (`s · q`, `s · (q − z)`, `γ · q`).
 *
 * @example
 * ```ts
 * import { dequantizeWeight, quantizeWeight } from '@slmkit/core';
 * const q = quantizeWeight(new Float32Array([0.5, -1]), 1, 2, 'int8');
 * console.log(dequantizeWeight(q)); // Float32Array [0.5, -1] up to a step of 1/127
 * ```
 */
export function dequantizeWeight(q: PackedWeight): Float32Array {
  const { outFeatures: O, inFeatures: I } = q;
  const out = new Float32Array(O * I);
  const groups = q.scheme === 'int4' ? groupsPerRow(I, q.groupSize) : 1;
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) {
      const code = weightCode(q, o, i);
      if (q.scheme === 'int8') out[o * I + i] = q.scales[o] * code;
      else if (q.scheme === 'int4') {
        const g = Math.floor(i / q.groupSize);
        out[o * I + i] = q.scales[o * groups + g] * (code - zeroPoint(q, o, g));
      } else out[o * I + i] = q.scales[0] * code;
    }
  }
  return out;
}
