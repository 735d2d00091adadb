/**
 * The memory-efficient attention kernel: online softmax over key blocks, one query block at a time, so no more than
 * a `[qBlock, kBlock]` tile of scores per head exists at once.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { checkPositiveInt } from '@slmkit/core';
import { checkKernelInputs, softcapScores, type AttentionKernelOptions } from './common.js';
import { MASKED_SCORE, structuralTile, tileVisibility } from './mask.js';

/**
 * Options of {@link chunkedAttention}: those of the naive kernel plus the tile sizes.
 *
 * @example
 * ```ts
 * import type { ChunkedAttentionOptions } from '@slmkit/attention';
 * const options: ChunkedAttentionOptions = {
 *   scale: 0.125,
 *   rules: { causal: true, slidingWindow: 256, prefixLength: 0 },
 *   queryPositions: Array.from({ length: 1000 }, (_, i) => i),
 *   keyPositions: Array.from({ length: 1000 }, (_, i) => i),
 *   queryBlockSize: 64,
 *   keyBlockSize: 128,
 * };
 * ```
 */
export interface ChunkedAttentionOptions extends AttentionKernelOptions {
  /** Queries per tile (default 64). */
  queryBlockSize?: number;
  /** Keys per tile (default 128). */
  keyBlockSize?: number;
}

/**
 * Attention computed tile by tile with the online softmax (Milakov & Gimelshein 2018, "Online normalizer
 * calculation for softmax"; tiled over queries and keys as in Dao et al. 2022, "FlashAttention"). For each query
 * block, with running max `m`, normaliser `l` and accumulator `acc` per query row, each key block does
 *
 * ```text
 * s     = scale · q kᵀ (soft-capped, masked)        [B, H, qBlock, kBlock]
 * m'    = max(m, rowmax s)
 * p     = exp(s − m') · visible
 * l     = l · exp(m − m') + Σ p
 * acc   = acc · exp(m − m') + p v
 * ```
 *
 * and the block's output is `acc / l`. Key blocks that the causal / window / prefix rules hide from the whole query
 * block are skipped without computing anything (decided on the host from the positions), so a sliding-window
 * prefill costs `O(T · w)`, not `O(T · S)`. Each tile runs in its own `tf.tidy`, so its scores are freed before the
 * next tile: memory is `O(B · H · (qBlock · kBlock + T · Dv))`. K/V are not copied per query-head group (see
 * {@link naiveAttention}). Same results as the naive kernel (to float32 rounding), including zeros for a query
 * row with nothing visible.
 *
 * @returns `[B, H, T, Dv]`; the caller owns it.
 * @throws ShapeError / ConfigError as {@link naiveAttention}, and ConfigError for a tile size that is not a
 *   positive integer.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { chunkedAttention } from '@slmkit/attention';
 * const T = 100;
 * const positions = Array.from({ length: T }, (_, i) => i);
 * const q = tf.randomNormal([1, 2, T, 8]) as tf.Tensor4D;
 * const k = tf.randomNormal([1, 1, T, 8]) as tf.Tensor4D; // MQA
 * const v = tf.randomNormal([1, 1, T, 8]) as tf.Tensor4D;
 * const o = chunkedAttention(q, k, v, {
 *   scale: 1 / Math.sqrt(8),
 *   rules: { causal: true, slidingWindow: 16, prefixLength: 0 },
 *   queryPositions: positions,
 *   keyPositions: positions,
 *   queryBlockSize: 32,
 *   keyBlockSize: 32,
 * });
 * console.log(o.shape); // [1, 2, 100, 8]
 * tf.dispose([q, k, v, o]);
 * ```
 */
export function chunkedAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: ChunkedAttentionOptions): tf.Tensor4D {
  const { B, H, KV, G, T, S, Dh, Dv } = checkKernelInputs('chunkedAttention', q, k, v, options);
  const qBlock = options.queryBlockSize ?? 64;
  const kBlock = options.keyBlockSize ?? 128;
  checkPositiveInt('chunkedAttention', 'queryBlockSize', qBlock);
  checkPositiveInt('chunkedAttention', 'keyBlockSize', kBlock);
  const { queryPositions, keyPositions, rules, softcap } = options;
  const keyMask = options.keyMask ?? null;

  return tf.tidy(() => {
    const qs = tf.mul(tf.reshape(q, [B * KV, G, T, Dh]), options.scale); // [B·KV, G, T, Dh], pre-scaled
    const kg = tf.reshape(k, [B * KV, S, Dh]); // [B·KV, S, Dh]
    const vg = tf.reshape(v, [B * KV, S, Dv]); // [B·KV, S, Dv]
    const outputs: tf.Tensor[] = [];
    for (let q0 = 0; q0 < T; q0 += qBlock) {
      const qb = Math.min(qBlock, T - q0);
      const qTile = tf.reshape(tf.slice(qs, [0, 0, q0, 0], [B * KV, G, qb, Dh]), [B * KV, G * qb, Dh]); // [B·KV, G·qb, Dh]
      let m: tf.Tensor = tf.fill([B, H, qb, 1], MASKED_SCORE); // running max, [B, H, qb, 1]
      let l: tf.Tensor = tf.zeros([B, H, qb, 1]); // running normaliser, [B, H, qb, 1]
      let acc: tf.Tensor = tf.zeros([B, H, qb, Dv]); // running numerator, [B, H, qb, Dv]
      for (let k0 = 0; k0 < S; k0 += kBlock) {
        const kb = Math.min(kBlock, S - k0);
        const tile = structuralTile(queryPositions, keyPositions, rules, q0, q0 + qb, k0, k0 + kb);
        if (tile.kind === 'none') continue;
        const next = tf.tidy(() => {
          const kTile = tf.slice(kg, [0, k0, 0], [B * KV, kb, Dh]); // [B·KV, kb, Dh]
          const vTile = tf.slice(vg, [0, k0, 0], [B * KV, kb, Dv]); // [B·KV, kb, Dv]
          const padTile = keyMask == null ? null : (tf.slice(keyMask, [0, k0], [B, kb]) as tf.Tensor2D); // [B, kb]
          const vis = tileVisibility(tile, qb, kb, padTile); // [B | 1, 1, qb, kb] or null
          let s = tf.reshape(softcapScores(tf.matMul(qTile, kTile, false, true), softcap), [B, H, qb, kb]); // [B, H, qb, kb]
          if (vis != null) s = tf.add(s, tf.mul(tf.sub(vis, 1), -MASKED_SCORE)); // masked: ≈ MASKED_SCORE
          const mNew = tf.maximum(m, tf.max(s, -1, true)); // [B, H, qb, 1]
          let p = tf.exp(tf.sub(s, mNew)); // [B, H, qb, kb]
          if (vis != null) p = tf.mul(p, vis);
          const alpha = tf.exp(tf.sub(m, mNew)); // [B, H, qb, 1]
          const pv = tf.reshape(tf.matMul(tf.reshape(p, [B * KV, G * qb, kb]), vTile), [B, H, qb, Dv]); // [B, H, qb, Dv]
          return {
            m: mNew,
            l: tf.add(tf.mul(l, alpha), tf.sum(p, -1, true)), // [B, H, qb, 1]
            acc: tf.add(tf.mul(acc, alpha), pv), // [B, H, qb, Dv]
          };
        });
        tf.dispose([m, l, acc]);
        ({ m, l, acc } = next);
      }
      // l is 0 for a row with nothing visible and ≥ 1 otherwise, so a floor of 1 changes only those rows (and, unlike
      // a tiny floor, keeps their gradient finite: see naiveAttention).
      outputs.push(tf.div(acc, tf.maximum(l, 1))); // [B, H, qb, Dv]
      tf.dispose([qTile, m, l, acc]);
    }
    return (outputs.length === 1 ? outputs[0] : tf.concat(outputs, 2)) as tf.Tensor4D; // [B, H, T, Dv]
  });
}
