/**
 * `TopKRouter`: the gate of a sparse mixture-of-experts layer. It scores every expert for every token and picks
 * the k best, with the weights the layer mixes their outputs by.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Linear, ShapeError, checkFlag, checkLastDim, checkPositiveInt } from '@slmkit/core';
import { oneHotFloat, topKIndices } from './ops.js';

/**
 * How a router turns its logits into scores: `softmax` over all experts (Switch, Mixtral, Qwen2-MoE, OLMoE,
 * Jamba) or an independent `sigmoid` per expert (DeepSeek-V3 style scoring).
 *
 * @example
 * ```ts
 * import type { RouterScoring } from '@slmkit/moe';
 * const scoring: RouterScoring = 'softmax';
 * ```
 */
export type RouterScoring = 'softmax' | 'sigmoid';

/**
 * Options of {@link TopKRouter}.
 *
 * @example
 * ```ts
 * import type { TopKRouterOptions } from '@slmkit/moe';
 * const mixtral: TopKRouterOptions = { topK: 2, normalize: true };
 * const qwen2Moe: TopKRouterOptions = { topK: 4, normalize: false }; // norm_topk_prob: false
 * ```
 */
export interface TopKRouterOptions {
  /** How many experts each token goes to (`num_experts_per_tok`), at most the number of experts. */
  topK: number;
  /**
   * Whether the k chosen scores are rescaled to sum to 1 (Mixtral: true; Jamba, and Qwen2-MoE / OLMoE with
   * `norm_topk_prob: false`: false). Required, because the two give different outputs for the same weights.
   */
  normalize: boolean;
  /** `softmax` (default) or `sigmoid`; see {@link RouterScoring}. */
  scoring?: RouterScoring;
  /**
   * Multiplicative jitter on the router's input while training (Switch Transformer): each input value is scaled
   * by a draw from `U(1 − j, 1 + j)`. Default 0; must be in `[0, 1)`. Ignored unless the call says `training`.
   */
  jitterNoise?: number;
  /** Whether the scoring projection has a bias (default false, as in every family slmkit loads). */
  bias?: boolean;
  /** Seed of the initial weights; see `LinearOptions.seed`. */
  seed?: number;
}

/**
 * Per-call options of {@link TopKRouter.route}.
 *
 * @example
 * ```ts
 * import type { RouteOptions } from '@slmkit/moe';
 * const options: RouteOptions = { training: true, seed: 7 };
 * ```
 */
export interface RouteOptions {
  /** Training mode: applies the router's jitter noise, if it has any (default false). */
  training?: boolean;
  /** Seed of the jitter draw (default: unseeded). */
  seed?: number;
}

/**
 * What a router decided for `N` tokens. Every tensor is owned by the caller.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { Routing } from '@slmkit/moe';
 * function release(r: Routing): void {
 *   tf.dispose([r.logits, r.scores, r.experts, r.weights]);
 * }
 * ```
 */
export interface Routing {
  /** The router's logits, float32 `[N, E]` (Hugging Face's `router_logits`: what the auxiliary losses read). */
  logits: tf.Tensor2D;
  /** The scores of every expert, float32 `[N, E]`: the softmax (or sigmoid) of the logits. */
  scores: tf.Tensor2D;
  /** The chosen experts, int32 `[N, k]`, best first. */
  experts: tf.Tensor2D;
  /** The chosen experts' weights, float32 `[N, k]` (renormalised when the router normalises). Differentiable. */
  weights: tf.Tensor2D;
}

/**
 * Top-k routing (Shazeer et al. 2017, "Outrageously Large Neural Networks"; Fedus et al. 2021, Switch
 * Transformer):
 *
 * ```text
 * logits = x Wᵀ                      [N, E]
 * scores = softmax(logits)           (or sigmoid)
 * experts = topk(scores, k)          [N, k]
 * weights = scores[experts]          [N, k]   (÷ their sum when normalize)
 * ```
 *
 * The router is a {@link @slmkit/core!Linear | Linear} `hidden → numExperts` (its `weight` loads from a checkpoint's
 * `gate.weight`, `router.weight`, …: the {@link SparseMoE} that holds it decides the name) with the routing on
 * top. The weights are differentiable through the scores (the choice of experts is not), so a training step
 * moves the router.
 *
 * How this differs from other libraries: the renormalisation and the scoring are options of one router rather
 * than one class per model, so Mixtral, Qwen2-MoE, OLMoE and Jamba route with the same code.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { TopKRouter } from '@slmkit/moe';
 * const router = new TopKRouter(16, 4, { topK: 2, normalize: true, seed: 0 });
 * const x = tf.randomNormal([5, 16]);
 * const r = router.route(x);
 * console.log(r.experts.shape, r.weights.shape); // [5, 2] [5, 2]
 * tf.dispose([x, r.logits, r.scores, r.experts, r.weights]);
 * router.dispose();
 * ```
 */
export class TopKRouter extends Linear {
  /** The number of experts E (the projection's output width). */
  readonly numExperts: number;
  /** Experts per token, k. */
  readonly topK: number;
  /** Whether the k weights are rescaled to sum to 1. */
  readonly normalize: boolean;
  /** Softmax or sigmoid scores. */
  readonly scoring: RouterScoring;
  /** The training-time multiplicative jitter on the input (0: none). */
  readonly jitterNoise: number;

  /**
   * @param hiddenSize - the width of the tokens routed (a positive integer).
   * @param numExperts - the number of experts E (a positive integer).
   * @param options - k, renormalisation, scoring, jitter; see {@link TopKRouterOptions}.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the option when one is invalid (`topK` greater
   *   than `numExperts`, an unknown scoring, jitter outside `[0, 1)`).
   */
  constructor(hiddenSize: number, numExperts: number, options: TopKRouterOptions) {
    checkPositiveInt('TopKRouter', 'hiddenSize', hiddenSize);
    checkPositiveInt('TopKRouter', 'numExperts', numExperts);
    if (options == null || typeof options !== 'object') {
      throw new ConfigError(`TopKRouter: options must be an object with topK and normalize, found ${String(options)}`, {
        field: 'options',
        expected: '{ topK, normalize }',
        found: options,
      });
    }
    checkPositiveInt('TopKRouter', 'topK', options.topK);
    if (options.topK > numExperts) {
      throw new ConfigError(`TopKRouter: topK must be at most numExperts (${numExperts}), found ${options.topK}`, {
        field: 'topK',
        expected: `an integer in [1, ${numExperts}]`,
        found: options.topK,
      });
    }
    if (typeof options.normalize !== 'boolean') {
      throw new ConfigError(`TopKRouter: normalize must be a boolean (true: Mixtral; false: Jamba, norm_topk_prob false), found ${String(options.normalize)}`, {
        field: 'normalize',
        expected: 'a boolean',
        found: options.normalize,
      });
    }
    const scoring = options.scoring ?? 'softmax';
    if (scoring !== 'softmax' && scoring !== 'sigmoid') {
      throw new ConfigError(`TopKRouter: scoring must be "softmax" or "sigmoid", found ${JSON.stringify(scoring)}`, {
        field: 'scoring',
        expected: '"softmax" | "sigmoid"',
        found: scoring,
      });
    }
    const jitter = options.jitterNoise ?? 0;
    if (typeof jitter !== 'number' || !(jitter >= 0 && jitter < 1)) {
      throw new ConfigError(`TopKRouter: jitterNoise must be a number in [0, 1), found ${String(jitter)}`, {
        field: 'jitterNoise',
        expected: 'a number in [0, 1)',
        found: jitter,
      });
    }
    const bias = checkFlag('TopKRouter', 'bias', options.bias, false);
    super(hiddenSize, numExperts, { bias, seed: options.seed });
    this.numExperts = numExperts;
    this.topK = options.topK;
    this.normalize = options.normalize;
    this.scoring = scoring;
    this.jitterNoise = jitter;
  }

  /**
   * Routes tokens: logits, scores, the k chosen experts per token and their weights.
   *
   * @param x - float32 `[N, hidden]` (or any `[..., hidden]`, flattened to `N` rows).
   * @param options - training mode (jitter) and its seed; see {@link RouteOptions}.
   * @returns the {@link Routing}; the caller owns its tensors.
   * @throws {@link @slmkit/core!ShapeError | ShapeError} when the last dimension is not `hiddenSize` or `x` is not
   *   float32.
   */
  route(x: tf.Tensor, options: RouteOptions = {}): Routing {
    const logits = this.logits(x, options); // [N, E]
    return tf.tidy(() => {
      const E = this.numExperts;
      const k = this.topK;
      const scores = (this.scoring === 'softmax' ? tf.softmax(logits, -1) : tf.sigmoid(logits)) as tf.Tensor2D; // [N, E]
      const experts = topKIndices(scores, k); // [N, k] int32
      // The chosen scores, taken through a one-hot product so that the gradient reaches the scores.
      const chosen = oneHotFloat(experts, E); // [N, k, E]
      let weights = tf.sum(tf.mul(tf.expandDims(scores, 1), chosen), -1) as tf.Tensor2D; // [N, k]
      if (this.normalize) weights = tf.div(weights, tf.sum(weights, -1, true)) as tf.Tensor2D; // [N, k]
      return { logits, scores, experts, weights };
    });
  }

  /** The router logits `[N, E]` of `x` `[..., hidden]`, with jitter in training. */
  private logits(x: tf.Tensor, options: RouteOptions): tf.Tensor2D {
    return tf.tidy(() => {
      let h = this.checkedRows(x); // [N, D]
      if (options.training === true && this.jitterNoise > 0) {
        const j = this.jitterNoise;
        h = tf.mul(h, tf.randomUniform(h.shape, 1 - j, 1 + j, 'float32', options.seed)) as tf.Tensor2D; // [N, D]
      }
      return this.forward(h) as tf.Tensor2D; // [N, E]
    });
  }

  /** `x` as `[N, hidden]`, after checking its width and dtype. */
  private checkedRows(x: tf.Tensor): tf.Tensor2D {
    if (!(x instanceof tf.Tensor)) {
      throw new ShapeError(`TopKRouter: x must be a float32 tensor [..., ${this.inFeatures}], found ${typeof x}`, {
        field: 'x',
        expected: `float32 [..., ${this.inFeatures}]`,
        found: typeof x,
      });
    }
    checkLastDim('TopKRouter', x, this.inFeatures, 'hiddenSize');
    return tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D; // [N, D]
  }
}
