/**
 * Which keys a query may see: the causal, sliding-window and always-visible-prefix rules, decided from absolute
 * positions on the host (plain numbers, no device read), and the padding mask, gathered on the device.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * The position rules of an attention layer. Key `j` is visible to query `i` (absolute positions) iff
 *
 * - `causal`: `j <= i`;
 * - `slidingWindow = w` (Mistral semantics, needs `causal`): `i - j < w`, unless `j < prefixLength`;
 * - `prefixLength = p`: keys at positions `< p` (Hymba's meta tokens) stay visible to every later query, even
 *   outside the window.
 *
 * Padding is not a position rule; it is a `[B, S]` tensor passed next to these rules.
 *
 * @example
 * ```ts
 * import type { MaskRules } from '@slmkit/attention';
 * const mistral: MaskRules = { causal: true, slidingWindow: 4096, prefixLength: 0 };
 * const hymbaLocal: MaskRules = { causal: true, slidingWindow: 1024, prefixLength: 128 };
 * ```
 */
export interface MaskRules {
  /** Whether query `i` sees only keys `j <= i`. */
  causal: boolean;
  /** The window `w`: query `i` sees keys with `i - j < w`; `null` for none. */
  slidingWindow: number | null;
  /** Keys at positions `< prefixLength` are visible to every later query, window or not. */
  prefixLength: number;
}

/**
 * Whether the key at absolute position `key` is visible to the query at absolute position `query` under `rules`.
 *
 * @example
 * ```ts
 * import { isKeyVisible } from '@slmkit/attention';
 * const rules = { causal: true, slidingWindow: 3, prefixLength: 1 };
 * console.log(isKeyVisible(5, 3, rules), isKeyVisible(5, 2, rules), isKeyVisible(5, 0, rules)); // true false true
 * ```
 */
export function isKeyVisible(query: number, key: number, rules: MaskRules): boolean {
  const d = query - key;
  if (rules.causal && d < 0) return false;
  if (rules.slidingWindow != null && d >= rules.slidingWindow && key >= rules.prefixLength) return false;
  return true;
}

/** What the position rules allow for a block of queries against a block of keys. */
export interface StructuralTile {
  /** `none`: no key visible to any query; `all`: every key visible to every query; `some`: see `mask`. */
  kind: 'none' | 'all' | 'some';
  /** Row-major `[queries, keys]` of 0/1, only when `kind` is `some`. */
  mask?: Float32Array;
}

/**
 * Applies {@link isKeyVisible} to every (query, key) pair of `queryPositions[q0, q1)` × `keyPositions[k0, k1)`.
 * Host work only: positions are numbers the caller already has.
 */
export function structuralTile(
  queryPositions: readonly number[],
  keyPositions: readonly number[],
  rules: MaskRules,
  q0 = 0,
  q1 = queryPositions.length,
  k0 = 0,
  k1 = keyPositions.length,
): StructuralTile {
  const rows = q1 - q0;
  const cols = k1 - k0;
  const mask = new Float32Array(rows * cols);
  let visible = 0;
  for (let t = 0; t < rows; t++) {
    const qp = queryPositions[q0 + t];
    for (let s = 0; s < cols; s++) {
      if (isKeyVisible(qp, keyPositions[k0 + s], rules)) {
        mask[t * cols + s] = 1;
        visible++;
      }
    }
  }
  if (visible === 0) return { kind: 'none' };
  if (visible === rows * cols) return { kind: 'all' };
  return { kind: 'some', mask };
}

/**
 * The combined 0/1 visibility of a tile, `[B | 1, 1, rows, cols]`, or `null` when every key is visible (nothing
 * to mask). `keyMask` is the padding mask over the tile's keys, `[B, cols]`.
 */
export function tileVisibility(tile: StructuralTile, rows: number, cols: number, keyMask: tf.Tensor2D | null): tf.Tensor4D | null {
  let vis: tf.Tensor4D | null = null;
  if (tile.kind === 'some') vis = tf.tensor4d(tile.mask!, [1, 1, rows, cols]); // [1, 1, rows, cols]
  if (keyMask != null) {
    const pad = tf.reshape(keyMask, [keyMask.shape[0], 1, 1, cols]) as tf.Tensor4D; // [B, 1, 1, cols]
    vis = vis == null ? pad : (tf.mul(vis, pad) as tf.Tensor4D); // [B, 1, rows, cols]
  }
  return vis;
}

/**
 * The value masked scores are set to. Finite on purpose: `exp(NEG - max)` is 0 while `-Infinity - -Infinity` would
 * be NaN for a row with nothing visible. Probabilities are also multiplied by the visibility, so even such a row
 * (whose max is `NEG` itself) gets weights 0 rather than a uniform average.
 */
export const MASKED_SCORE = -1e30;
