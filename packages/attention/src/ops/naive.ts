/**
 * The naive attention kernel: the whole `[B, H, T, S]` score tensor at once. The oracle every other kernel is
 * tested against, and the fastest choice for decoding and short prefill.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkKernelInputs, softcapScores, type AttentionKernelOptions } from './common.js';
import { MASKED_SCORE, structuralTile, tileVisibility } from './mask.js';

/**
 * Scaled dot-product attention, materialising all scores:
 *
 * ```text
 * s = scale · q kᵀ                 [B, H, T, S]
 * s = c · tanh(s / c)              (soft cap, optional)
 * p = exp(s − max s) · visible     (masked keys get weight 0)
 * o = (p v) / Σ p                  [B, H, T, Dv]
 * ```
 *
 * Grouped-query attention without copying K/V: query head `h` uses key/value head `⌊h / G⌋` (`G = H / KV`, the
 * Hugging Face `repeat_kv` order), so `q [B, H, T, Dh]` is viewed as `[B·KV, G·T, Dh]` (a free reshape, heads being
 * contiguous) and multiplied batch-wise against `k [B·KV, S, Dh]`; no broadcasting matmul and no tiling of K/V.
 *
 * A query row with no visible key (a padding token with everything masked) returns zeros, not NaN and not the mean
 * of the values (which is what Hugging Face's float-min masking gives).
 *
 * @param q - queries `[B, H, T, Dh]`, float32, positions already rotated.
 * @param k - keys `[B, KV, S, Dh]`; `KV` divides `H`.
 * @param v - values `[B, KV, S, Dv]`.
 * @returns `[B, H, T, Dv]`; the caller owns it.
 * @throws ShapeError when the shapes disagree; ConfigError for a non-finite scale or a bad soft cap.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { naiveAttention } from '@slmkit/attention';
 * const q = tf.randomNormal([1, 4, 3, 8]) as tf.Tensor4D; // 4 query heads
 * const k = tf.randomNormal([1, 2, 3, 8]) as tf.Tensor4D; // 2 KV heads (GQA)
 * const v = tf.randomNormal([1, 2, 3, 8]) as tf.Tensor4D;
 * const o = naiveAttention(q, k, v, {
 *   scale: 1 / Math.sqrt(8),
 *   rules: { causal: true, slidingWindow: null, prefixLength: 0 },
 *   queryPositions: [0, 1, 2],
 *   keyPositions: [0, 1, 2],
 * });
 * console.log(o.shape); // [1, 4, 3, 8]
 * tf.dispose([q, k, v, o]);
 * ```
 */
export function naiveAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: AttentionKernelOptions): tf.Tensor4D {
  const { B, H, KV, G, T, S, Dh, Dv } = checkKernelInputs('naiveAttention', q, k, v, options);
  const tile = structuralTile(options.queryPositions, options.keyPositions, options.rules);
  return tf.tidy(() => {
    if (tile.kind === 'none') return tf.zeros([B, H, T, Dv]) as tf.Tensor4D;
    const qg = tf.reshape(q, [B * KV, G * T, Dh]); // [B·KV, G·T, Dh]
    const kg = tf.reshape(k, [B * KV, S, Dh]); // [B·KV, S, Dh]
    const vg = tf.reshape(v, [B * KV, S, Dv]); // [B·KV, S, Dv]
    let s = tf.mul(tf.matMul(qg, kg, false, true), options.scale); // [B·KV, G·T, S]
    s = softcapScores(s, options.softcap);
    let s4 = tf.reshape(s, [B, H, T, S]); // [B, H, T, S]
    const vis = tileVisibility(tile, T, S, options.keyMask ?? null); // [B | 1, 1, T, S] or null
    if (vis != null) s4 = tf.add(s4, tf.mul(tf.sub(vis, 1), -MASKED_SCORE)); // masked: ≈ MASKED_SCORE
    let p = tf.exp(tf.sub(s4, tf.max(s4, -1, true))); // [B, H, T, S]
    if (vis != null) p = tf.mul(p, vis); // a fully masked row is all zeros here
    // Σp is 0 for a fully masked row and ≥ 1 otherwise (the max contributes exp(0)), so a floor of 1 changes only
    // the masked rows (0 / 1 = 0). A tiny floor would do for the values, but not for the gradient: d(p / n)/dn =
    // −p / n² underflows n² to 0 and gives 0 / 0 = NaN on those rows.
    const denom = tf.maximum(tf.sum(p, -1, true), 1); // [B, H, T, 1]
    const pg = tf.reshape(tf.div(p, denom), [B * KV, G * T, S]); // [B·KV, G·T, S]
    return tf.reshape(tf.matMul(pg, vg), [B, H, T, Dv]) as tf.Tensor4D; // [B, H, T, Dv]
  });
}
