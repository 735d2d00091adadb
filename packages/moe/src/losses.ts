/**
 * Auxiliary training losses of sparse MoE routers (the Switch / Mixtral load-balancing loss and the ST-MoE
 * router z-loss) and the per-expert token counts used to watch the load.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, checkPositiveInt } from '@slmkit/core';
import { oneHotFloat, topKIndices } from './ops.js';

/**
 * Options of {@link loadBalancingLoss}.
 *
 * @example
 * ```ts
 * import type { LoadBalancingLossOptions } from '@slmkit/moe';
 * const mixtral: LoadBalancingLossOptions = { numExperts: 8, topK: 2 };
 * ```
 */
export interface LoadBalancingLossOptions {
  /** The number of experts E (the logits' last dimension). */
  numExperts: number;
  /** Experts per token, k. */
  topK: number;
  /**
   * `[B, S]`, 1 for a real token and 0 for padding, where each layer's logits are the `B·S` tokens of the batch
   * in row-major order. Padding tokens are left out of both averages.
   */
  attentionMask?: tf.Tensor2D;
}

/**
 * Options of {@link routerZLoss}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { RouterZLossOptions } from '@slmkit/moe';
 * const options: RouterZLossOptions = { attentionMask: tf.tensor2d([[1, 1, 0]]) };
 * ```
 */
export interface RouterZLossOptions {
  /** `[B, S]` padding mask as in {@link LoadBalancingLossOptions.attentionMask}. */
  attentionMask?: tf.Tensor2D;
}

/** The logits of every layer as one `[L·N, E]` tensor, checked; the caller owns it. */
function concatLogits(owner: string, routerLogits: tf.Tensor | readonly tf.Tensor[], numExperts?: number): tf.Tensor2D {
  const list = Array.isArray(routerLogits) ? routerLogits : [routerLogits as tf.Tensor];
  if (list.length === 0) {
    throw new ShapeError(`${owner}: routerLogits must hold at least one [N, E] tensor, found an empty list`, {
      field: 'routerLogits',
      expected: 'one or more [N, E] tensors',
      found: 0,
    });
  }
  const E = numExperts ?? (list[0] instanceof tf.Tensor ? list[0].shape[list[0].rank - 1] : undefined);
  list.forEach((t, i) => {
    if (!(t instanceof tf.Tensor) || t.rank !== 2 || t.dtype !== 'float32' || t.shape[1] !== E) {
      const found = t instanceof tf.Tensor ? `${t.dtype} [${t.shape.join(', ')}]` : typeof t;
      throw new ShapeError(`${owner}: routerLogits[${i}] must be float32 [N, ${E ?? 'E'}], found ${found}`, {
        field: `routerLogits[${i}]`,
        expected: `float32 [N, ${E ?? 'E'}]`,
        found,
      });
    }
  });
  return (list.length === 1 ? tf.clone(list[0]) : tf.concat(list as tf.Tensor[], 0)) as tf.Tensor2D; // [L·N, E]
}

/** The padding mask as float32 `[L·N]`, repeated once per layer; null without one. */
function tokenMask(owner: string, mask: tf.Tensor2D | undefined, rows: number): tf.Tensor1D | null {
  if (mask == null) return null;
  if (!(mask instanceof tf.Tensor) || mask.rank !== 2) {
    const found = mask instanceof tf.Tensor ? `[${mask.shape.join(', ')}]` : typeof mask;
    throw new ShapeError(`${owner}: attentionMask must be a [B, S] tensor, found ${found}`, {
      field: 'attentionMask',
      expected: '[B, S]',
      found,
    });
  }
  const tokens = mask.shape[0] * mask.shape[1];
  if (tokens === 0 || rows % tokens !== 0) {
    throw new ShapeError(
      `${owner}: the router logits have ${rows} rows, which is not a whole number of layers of B·S = ${tokens} tokens (attentionMask [${mask.shape.join(', ')}])`,
      { field: 'attentionMask', expected: `B·S dividing ${rows}`, found: mask.shape.slice() },
    );
  }
  return tf.tidy(() => tf.tile(tf.reshape(tf.cast(mask, 'float32'), [tokens]), [rows / tokens]) as tf.Tensor1D); // [L·N]
}

/**
 * The auxiliary load-balancing loss of Switch Transformer (Fedus et al. 2021, eqs. 4–6) as Hugging Face's
 * `load_balancing_loss_func` computes it for Mixtral, Qwen2-MoE, OLMoE and Jamba: with the logits of every layer
 * stacked into `[M, E]`,
 *
 * ```text
 * p = softmax(logits)                                 [M, E]
 * f[j, e] = mean over tokens of [topk(p)_j == e]      [k, E]   (fraction routed, per choice j)
 * P[e]   = mean over tokens of p[:, e]                [E]
 * loss   = E · Σ_j Σ_e f[j, e] · P[e]
 * ```
 *
 * With an attention mask, both means run over the unmasked tokens only. The loss is 1 (times k) when load is
 * uniform and grows as it concentrates; it is differentiable through `P` (the counts `f` are not).
 *
 * As in `transformers`, the scores are always a softmax of the logits, whatever the router's scoring, and the
 * experts are the top k of those scores.
 *
 * @param routerLogits - one `[N, E]` tensor, or one per layer (Hugging Face's tuple of `router_logits`), each
 *   over the same `N` tokens.
 * @returns a scalar; the caller owns it.
 * @throws {@link @slmkit/core!ShapeError | ShapeError} for logits that are not float32 `[N, E]`, or a mask whose
 *   `B·S` does not divide the rows; {@link @slmkit/core!ConfigError | ConfigError} for a bad `numExperts` / `topK`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { loadBalancingLoss } from '@slmkit/moe';
 * const layer0 = tf.tensor2d([[2, 0, 0, 0], [0, 2, 0, 0]]); // two tokens, four experts
 * const layer1 = tf.tensor2d([[0, 0, 2, 0], [0, 0, 0, 2]]);
 * const loss = loadBalancingLoss([layer0, layer1], { numExperts: 4, topK: 1 });
 * console.log(loss.dataSync()[0]); // 1 (balanced: each expert gets a quarter of the tokens and of the probability)
 * tf.dispose([layer0, layer1, loss]);
 * ```
 */
export function loadBalancingLoss(routerLogits: tf.Tensor | readonly tf.Tensor[], options: LoadBalancingLossOptions): tf.Scalar {
  const owner = 'loadBalancingLoss';
  checkPositiveInt(owner, 'numExperts', options?.numExperts);
  checkPositiveInt(owner, 'topK', options.topK);
  const { numExperts: E, topK: k } = options;
  if (k > E) {
    throw new ConfigError(`${owner}: topK must be at most numExperts (${E}), found ${k}`, { field: 'topK', expected: `<= ${E}`, found: k });
  }
  const logits = concatLogits(owner, routerLogits, E); // [M, E]
  let mask: tf.Tensor1D | null = null;
  try {
    mask = tokenMask(owner, options.attentionMask, logits.shape[0]);
    const m = mask;
    return tf.tidy(() => {
      const probs = tf.softmax(logits, -1); // [M, E]
      const chosen = oneHotFloat(topKIndices(probs as tf.Tensor2D, k), E); // [M, k, E]
      // Without a mask every token counts; one code path either way (tfjs-backend-webgpu's mean over axis 0 of
      // these shapes fails to compile its shader, so the means are sums over a count).
      const weight = m ?? tf.ones([logits.shape[0]]); // [M]
      const count = tf.sum(weight);
      const fraction = tf.div(tf.sum(tf.mul(chosen, tf.reshape(weight, [-1, 1, 1])), 0), count); // [k, E]
      const probability = tf.div(tf.sum(tf.mul(probs, tf.reshape(weight, [-1, 1])), 0), count); // [E]
      return tf.mul(tf.sum(tf.mul(fraction, tf.expandDims(probability, 0))), E) as tf.Scalar;
    });
  } finally {
    tf.dispose([logits, ...(mask == null ? [] : [mask])]);
  }
}

/**
 * The router z-loss of ST-MoE (Zoph et al. 2022, eq. 5): the mean over tokens of `(log Σ_e exp(logits_e))²`. It
 * keeps router logits small, which keeps the softmax numerically stable; ST-MoE weights it by 1e-3.
 *
 * @param routerLogits - one `[N, E]` tensor or one per layer; with an attention mask, only real tokens count.
 * @returns a scalar; the caller owns it.
 * @throws {@link @slmkit/core!ShapeError | ShapeError} for logits that are not float32 `[N, E]` or a mask that
 *   does not fit them.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { routerZLoss } from '@slmkit/moe';
 * const logits = tf.zeros([3, 4]) as tf.Tensor2D;
 * const z = routerZLoss(logits);
 * console.log(z.dataSync()[0]); // (ln 4)² = 1.9218...
 * tf.dispose([logits, z]);
 * ```
 */
export function routerZLoss(routerLogits: tf.Tensor | readonly tf.Tensor[], options: RouterZLossOptions = {}): tf.Scalar {
  const owner = 'routerZLoss';
  const logits = concatLogits(owner, routerLogits); // [M, E]
  let mask: tf.Tensor1D | null = null;
  try {
    mask = tokenMask(owner, options.attentionMask, logits.shape[0]);
    const m = mask;
    return tf.tidy(() => {
      const z2 = tf.square(tf.logSumExp(logits, -1)); // [M]
      if (m == null) return tf.mean(z2) as tf.Scalar;
      return tf.div(tf.sum(tf.mul(z2, m)), tf.sum(m)) as tf.Scalar;
    });
  } finally {
    tf.dispose([logits, ...(mask == null ? [] : [mask])]);
  }
}

/**
 * How many token-to-expert assignments each expert received: `counts[e]` is the number of entries of `experts`
 * equal to `e` (each token counts once per choice, so the counts sum to `N·k`).
 *
 * @param experts - int32 `[N, k]`, as {@link TopKRouter.route} returns them.
 * @returns int32 `[E]`; the caller owns it.
 * @throws {@link @slmkit/core!ShapeError | ShapeError} when `experts` is not an int32 `[N, k]` tensor.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { tokensPerExpert } from '@slmkit/moe';
 * const experts = tf.tensor2d([[0, 1], [0, 3], [2, 0]], undefined, 'int32');
 * const counts = tokensPerExpert(experts, 4);
 * console.log(Array.from(counts.dataSync())); // [3, 1, 1, 1]
 * tf.dispose([experts, counts]);
 * ```
 */
export function tokensPerExpert(experts: tf.Tensor2D, numExperts: number): tf.Tensor1D {
  checkPositiveInt('tokensPerExpert', 'numExperts', numExperts);
  if (!(experts instanceof tf.Tensor) || experts.rank !== 2 || experts.dtype !== 'int32') {
    const found = experts instanceof tf.Tensor ? `${experts.dtype} [${experts.shape.join(', ')}]` : typeof experts;
    throw new ShapeError(`tokensPerExpert: experts must be an int32 [N, k] tensor, found ${found}`, {
      field: 'experts',
      expected: 'int32 [N, k]',
      found,
    });
  }
  return tf.tidy(() => tf.cast(tf.sum(tf.oneHot(tf.reshape(experts, [-1]), numExperts), 0), 'int32') as tf.Tensor1D); // [E]
}
