/**
 * What both attention kernels take, and the shape checks they share.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '@slmkit/core';
import type { MaskRules } from './mask.js';

/**
 * Options of {@link naiveAttention} and {@link chunkedAttention}: the scale, the soft cap, the position rules with
 * the absolute positions of the queries and keys, and the padding mask over the keys.
 *
 * @example
 * ```ts
 * import type { AttentionKernelOptions } from '@slmkit/attention';
 * const options: AttentionKernelOptions = {
 *   scale: 1 / Math.sqrt(8),
 *   softcap: 50,
 *   rules: { causal: true, slidingWindow: null, prefixLength: 0 },
 *   queryPositions: [0, 1, 2],
 *   keyPositions: [0, 1, 2],
 * };
 * ```
 */
export interface AttentionKernelOptions {
  /** Multiplies `q·k` (usually `1/√headDim`). */
  scale: number;
  /** Logit soft cap `c`: scores become `c · tanh(s / c)` (Gemma 2); `null` or absent for none. */
  softcap?: number | null;
  /** Causal, window and prefix rules. */
  rules: MaskRules;
  /** Absolute position of each query, length `T`. */
  queryPositions: readonly number[];
  /** Absolute position of each key, length `S`. */
  keyPositions: readonly number[];
  /** Padding over the keys, `[B, S]`, 1 for a real token and 0 for padding (float32); absent: all real. */
  keyMask?: tf.Tensor2D | null;
}

/** Validated dimensions of a kernel call. */
export interface KernelDims {
  B: number;
  H: number;
  KV: number;
  G: number;
  T: number;
  S: number;
  Dh: number;
  Dv: number;
}

/** Checks q `[B, H, T, Dh]`, k `[B, KV, S, Dh]`, v `[B, KV, S, Dv]` and the options; returns the dimensions. */
export function checkKernelInputs(owner: string, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, o: AttentionKernelOptions): KernelDims {
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (!(t instanceof tf.Tensor) || t.rank !== 4 || t.dtype !== 'float32') {
      throw new ShapeError(`${owner}: ${name} must be a float32 rank-4 tensor, found ${t instanceof tf.Tensor ? `${t.dtype} [${t.shape.join(', ')}]` : typeof t}`, {
        field: name,
        expected: 'float32 rank 4',
        found: t instanceof tf.Tensor ? t.shape : typeof t,
      });
    }
  }
  const [B, H, T, Dh] = q.shape;
  const [kb, KV, S, kd] = k.shape;
  const [vb, vh, vs, Dv] = v.shape;
  const bad = (field: string, msg: string, expected: unknown, found: unknown): never => {
    throw new ShapeError(`${owner}: ${msg}`, { field, expected, found });
  };
  if (kb !== B || vb !== B) bad('k', `batch of q (${B}), k (${kb}) and v (${vb}) must agree`, B, [kb, vb]);
  if (vh !== KV || vs !== S) bad('v', `v [${v.shape.join(', ')}] must have the heads and length of k [${k.shape.join(', ')}]`, [KV, S], [vh, vs]);
  if (kd !== Dh) bad('k', `k's head dim (${kd}) must equal q's (${Dh})`, Dh, kd);
  if (H % KV !== 0) bad('k', `k's heads (${KV}) must divide q's heads (${H})`, `a divisor of ${H}`, KV);
  if (o.queryPositions.length !== T) bad('queryPositions', `${o.queryPositions.length} query positions for ${T} queries`, T, o.queryPositions.length);
  if (o.keyPositions.length !== S) bad('keyPositions', `${o.keyPositions.length} key positions for ${S} keys`, S, o.keyPositions.length);
  if (o.keyMask != null) {
    const m = o.keyMask;
    if (m.rank !== 2 || m.shape[0] !== B || m.shape[1] !== S) bad('keyMask', `keyMask must be [${B}, ${S}], found [${m.shape.join(', ')}]`, [B, S], m.shape);
  }
  if (!Number.isFinite(o.scale)) {
    throw new ConfigError(`${owner}: scale must be a finite number, found ${String(o.scale)}`, { field: 'scale', expected: 'finite', found: o.scale });
  }
  if (o.softcap != null && !(Number.isFinite(o.softcap) && o.softcap > 0)) {
    throw new ConfigError(`${owner}: softcap must be a finite number > 0 or null, found ${String(o.softcap)}`, {
      field: 'softcap',
      expected: 'a finite number > 0, or null',
      found: o.softcap,
    });
  }
  return { B, H, KV, G: H / KV, T, S, Dh, Dv };
}

/** `c · tanh(s / c)`, or `s` when there is no cap. */
export function softcapScores<T extends tf.Tensor>(s: T, softcap: number | null | undefined): T {
  if (softcap == null) return s;
  return tf.mul(tf.tanh(tf.div(s, softcap)), softcap) as T;
}
