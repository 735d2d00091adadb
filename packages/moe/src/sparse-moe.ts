/**
 * `SparseMoE`: a mixture-of-experts feed-forward block. A router picks k experts per token; each expert runs only
 * on the tokens routed to it; their outputs come back weighted by the routing, plus an optional shared expert.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendError, ConfigError, Module, ShapeError, checkLastDim, type Projection } from '@slmkit/core';
import { gatherRows, oneHotFloat, scatterAddRows, withoutGradient } from './ops.js';
import { ExpertList, type Expert } from './experts.js';
import { loadBalancingLoss, routerZLoss, tokensPerExpert } from './losses.js';
import { TopKRouter, type RouteOptions, type Routing } from './router.js';

/**
 * How a {@link SparseMoE} computes its experts:
 *
 * - `sparse`: gathers each expert's tokens, runs the expert on those rows only and scatters the weighted results
 *   back. Compute per token is proportional to k, not to the number of experts. It reads the routing (`[N, k]`
 *   int32) on the host to size each expert's batch, so it needs a backend that can read synchronously (`cpu`,
 *   `wasm`, `cuda`).
 * - `dense`: runs every expert on every token and weights the outputs by the routing (zero for experts not
 *   chosen): the reference the sparse form is tested against, E/k times the expert compute, with no host read.
 * - `auto` (default): `sparse`, except on `webgpu`, where a synchronous read of device data is not available in
 *   Node and can lose the device in a browser; there it runs `dense` and warns once.
 *
 * @example
 * ```ts
 * import type { MoEDispatch } from '@slmkit/moe';
 * const dispatch: MoEDispatch = 'sparse';
 * ```
 */
export type MoEDispatch = 'auto' | 'sparse' | 'dense';

/**
 * The names a {@link SparseMoE} registers its parts under, as the checkpoint names them. Defaults are Mixtral's
 * and Qwen2-MoE's: `gate`, `experts`, `shared_expert`, `shared_expert_gate`; Jamba's router is `router`.
 *
 * @example
 * ```ts
 * import type { SparseMoENames } from '@slmkit/moe';
 * const jamba: Partial<SparseMoENames> = { router: 'router' };
 * ```
 */
export interface SparseMoENames {
  /** The router (`gate`; Jamba: `router`). */
  router: string;
  /** The list of routed experts (`experts`). */
  experts: string;
  /** The shared expert (`shared_expert`). */
  sharedExpert: string;
  /** The shared expert's gate (`shared_expert_gate`). */
  sharedExpertGate: string;
}

const DEFAULT_NAMES: Readonly<SparseMoENames> = Object.freeze({
  router: 'gate',
  experts: 'experts',
  sharedExpert: 'shared_expert',
  sharedExpertGate: 'shared_expert_gate',
});

/**
 * Options of {@link SparseMoE}.
 *
 * @example
 * ```ts
 * import { GatedMLP, Linear } from '@slmkit/core';
 * import type { SparseMoEOptions } from '@slmkit/moe';
 * const qwen2Moe: SparseMoEOptions = {
 *   sharedExpert: GatedMLP.create(16, 48),
 *   sharedExpertGate: new Linear(16, 1, { bias: false }),
 * };
 * const switchStyle: SparseMoEOptions = { capacityFactor: 1.25 };
 * ```
 */
export interface SparseMoEOptions {
  /** An expert every token goes through, added to the routed mixture (Qwen2-MoE's `shared_expert`). */
  sharedExpert?: Expert;
  /**
   * `hidden → 1`: the shared expert's output is scaled by `sigmoid(gate(x))` per token (Qwen2-MoE). Without it the
   * shared expert is added as is. Needs `sharedExpert`.
   */
  sharedExpertGate?: Projection;
  /**
   * Switch-style capacity: each expert takes at most `ceil(capacityFactor · N · k / E)` of the `N·k` assignments of
   * a call, in token order (row-major over `[N, k]`); the assignments over capacity are dropped (they add nothing;
   * the residual carries the token). `null` (default): dropless, every assignment is computed.
   */
  capacityFactor?: number | null;
  /** `auto` (default), `sparse` or `dense`; see {@link MoEDispatch}. */
  dispatch?: MoEDispatch;
  /** The names of the parts in a checkpoint; see {@link SparseMoENames}. */
  names?: Partial<SparseMoENames>;
}

/**
 * Per-call options of {@link SparseMoE.forwardWithAux}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { MoECallOptions } from '@slmkit/moe';
 * const options: MoECallOptions = { training: true, attentionMask: tf.tensor2d([[1, 1, 1, 0]]) };
 * ```
 */
export interface MoECallOptions extends RouteOptions {
  /**
   * `[B, T]` padding mask for the auxiliary losses, when the input is `[B, T, hidden]`: padding tokens are left
   * out of them (they are still computed).
   */
  attentionMask?: tf.Tensor2D;
}

/**
 * What {@link SparseMoE.forwardWithAux} returns. The caller owns every tensor.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { MoEOutput } from '@slmkit/moe';
 * function release(out: MoEOutput): void {
 *   tf.dispose([out.output, out.routerLogits, out.tokensPerExpert, out.droppedPerExpert, out.loadBalancingLoss, out.zLoss]);
 * }
 * ```
 */
export interface MoEOutput {
  /** The layer's output, the shape of its input. */
  output: tf.Tensor;
  /** The router's logits, float32 `[N, E]` (N = every token of the input). */
  routerLogits: tf.Tensor2D;
  /** Assignments each expert received, int32 `[E]` (before any capacity drop; sums to `N·k`). */
  tokensPerExpert: tf.Tensor1D;
  /** Assignments each expert dropped for capacity, int32 `[E]` (all zero when dropless). */
  droppedPerExpert: tf.Tensor1D;
  /** {@link loadBalancingLoss} of this layer's logits (unweighted; Mixtral's coefficient is 0.02 in its config). */
  loadBalancingLoss: tf.Scalar;
  /** {@link routerZLoss} of this layer's logits (unweighted). */
  zLoss: tf.Scalar;
}

/**
 * Per-call options of {@link SparseMoE.forward}.
 *
 * @example
 * ```ts
 * import type * as tf from '@tensorflow/tfjs-core';
 * import type { MoEForwardOptions } from '@slmkit/moe';
 * const routerLogits: tf.Tensor2D[] = [];
 * const options: MoEForwardOptions = { routerLogits }; // collects this layer's [N, E] logits
 * ```
 */
export interface MoEForwardOptions extends RouteOptions {
  /**
   * A list the call appends its router logits (float32 `[N, E]`) to, kept alive past any enclosing `tf.tidy`:
   * how a model gathers every layer's logits for {@link loadBalancingLoss}. The caller disposes them.
   */
  routerLogits?: tf.Tensor2D[];
}

let warnedDense = false;

/**
 * A sparse mixture-of-experts block (Shazeer et al. 2017; Fedus et al. 2021; Jiang et al. 2024, Mixtral), with the
 * call shape of an MLP, so it takes an MLP's place in a decoder layer:
 *
 * ```text
 * (experts_i, w_i) = router(x_i)                                  k experts per token
 * y_i = Σ_{j<k} w_ij · expert_{experts_ij}(x_i)  [+ σ(g·x_i) · shared(x_i)]
 * ```
 *
 * The routed experts run sparsely by default: each expert's tokens are gathered, the expert runs on those rows
 * only, and its weighted output is scattered back (see {@link MoEDispatch}), so a token costs k expert calls
 * whatever the number of experts. Gradients reach the router through the weights and every expert through its
 * rows, on every backend (the gather and scatter carry their own gradients; see `dispatch.ts`).
 *
 * Parts are constructor arguments: the router, the experts (usually `GatedMLP`s; anything with the same call shape
 * works), an optional shared expert and its gate. They are registered under checkpoint names (`gate`,
 * `experts.N`, `shared_expert`, `shared_expert_gate` by default; see {@link SparseMoENames}), so Mixtral's
 * `block_sparse_moe`, Qwen2-MoE's `mlp` and Jamba's `feed_forward` load as stored.
 *
 * How this differs from other libraries: `transformers` writes one MoE block per model; here one block is
 * configured by its parts, and the dense every-expert form is kept as an option (and test oracle) rather than
 * being a separate implementation to keep in step.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { GatedMLP } from '@slmkit/core';
 * import { SparseMoE, TopKRouter } from '@slmkit/moe';
 * const moe = new SparseMoE(
 *   new TopKRouter(16, 4, { topK: 2, normalize: true, seed: 0 }),
 *   Array.from({ length: 4 }, (_, e) => GatedMLP.create(16, 32, { seed: 10 * e })),
 * );
 * const x = tf.randomNormal([2, 5, 16]);
 * const y = moe.forward(x); // [2, 5, 16]
 * console.log(y.shape, moe.lastDispatch); // [2, 5, 16] "sparse" (on cpu / wasm)
 * tf.dispose([x, y]);
 * moe.dispose();
 * ```
 */
export class SparseMoE extends Module {
  /** The router. */
  readonly router: TopKRouter;
  /** The routed experts, registered as `experts.0`, `experts.1`, …. */
  readonly experts: ExpertList;
  /** The shared expert, if any. */
  readonly sharedExpert: Expert | undefined;
  /** The shared expert's `hidden → 1` gate, if any. */
  readonly sharedExpertGate: Projection | undefined;
  /** The capacity factor, or null when dropless. */
  readonly capacityFactor: number | null;
  /** The dispatch asked for; see {@link MoEDispatch}. */
  readonly dispatch: MoEDispatch;
  /** The names the parts are registered under. */
  readonly names: Readonly<SparseMoENames>;
  private last: 'sparse' | 'dense' | undefined = undefined;

  /**
   * @param router - scores the experts and picks k per token.
   * @param experts - exactly `router.numExperts` experts, each mapping `[M, hidden]` to `[M, hidden]`.
   * @param options - shared expert and gate, capacity, dispatch, names; see {@link SparseMoEOptions}.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the part when the router is not a
   *   {@link TopKRouter}, the expert count differs from the router's, a gate comes without a shared expert or is
   *   not `hidden → 1`, the capacity factor is not a positive number, or the dispatch is unknown.
   */
  constructor(router: TopKRouter, experts: readonly Expert[], options: SparseMoEOptions = {}) {
    super();
    if (!(router instanceof TopKRouter)) {
      const r = router as unknown;
      const found = r instanceof Module ? r.constructor.name : r === null ? 'null' : typeof r;
      throw new ConfigError(`SparseMoE: router must be a TopKRouter, found ${found}`, { field: 'router', expected: 'TopKRouter', found });
    }
    if (!Array.isArray(experts) || experts.length !== router.numExperts) {
      const found = Array.isArray(experts) ? experts.length : typeof experts;
      throw new ConfigError(`SparseMoE: experts must hold router.numExperts = ${router.numExperts} experts, found ${String(found)}`, {
        field: 'experts',
        expected: router.numExperts,
        found,
      });
    }
    const { sharedExpert, sharedExpertGate } = options;
    if (sharedExpert != null && (!(sharedExpert instanceof Module) || typeof (sharedExpert as { forward?: unknown }).forward !== 'function')) {
      throw new ConfigError(`SparseMoE: sharedExpert must be a Module with forward(x), found ${typeof sharedExpert}`, {
        field: 'sharedExpert',
        expected: 'an Expert (a Module with forward)',
        found: typeof sharedExpert,
      });
    }
    if (sharedExpertGate != null) {
      if (sharedExpert == null) {
        throw new ConfigError('SparseMoE: sharedExpertGate needs a sharedExpert to gate, found none', {
          field: 'sharedExpertGate',
          expected: 'a sharedExpert alongside it',
          found: 'no sharedExpert',
        });
      }
      const { inFeatures, outFeatures } = sharedExpertGate;
      if (typeof (sharedExpertGate as { forward?: unknown }).forward !== 'function' || (inFeatures != null && inFeatures !== router.inFeatures) || (outFeatures != null && outFeatures !== 1)) {
        throw new ConfigError(
          `SparseMoE: sharedExpertGate must map hidden (${router.inFeatures}) to 1, found [${String(inFeatures)} -> ${String(outFeatures)}]`,
          { field: 'sharedExpertGate', expected: [router.inFeatures, 1], found: [inFeatures, outFeatures] },
        );
      }
    }
    const capacityFactor = options.capacityFactor ?? null;
    if (capacityFactor !== null && (typeof capacityFactor !== 'number' || !Number.isFinite(capacityFactor) || capacityFactor <= 0)) {
      throw new ConfigError(`SparseMoE: capacityFactor must be a finite number > 0 or null (dropless), found ${String(capacityFactor)}`, {
        field: 'capacityFactor',
        expected: 'a finite number > 0, or null',
        found: capacityFactor,
      });
    }
    const dispatch = options.dispatch ?? 'auto';
    if (dispatch !== 'auto' && dispatch !== 'sparse' && dispatch !== 'dense') {
      throw new ConfigError(`SparseMoE: dispatch must be "auto", "sparse" or "dense", found ${JSON.stringify(dispatch)}`, {
        field: 'dispatch',
        expected: '"auto" | "sparse" | "dense"',
        found: dispatch,
      });
    }
    const names = { ...DEFAULT_NAMES, ...(options.names ?? {}) };
    this.router = this.registerModule(names.router, router);
    this.experts = this.registerModule(names.experts, new ExpertList(experts));
    this.sharedExpert = sharedExpert == null ? undefined : this.registerModule(names.sharedExpert, sharedExpert);
    this.sharedExpertGate = sharedExpertGate == null ? undefined : this.registerModule(names.sharedExpertGate, sharedExpertGate);
    this.capacityFactor = capacityFactor;
    this.dispatch = dispatch;
    this.names = Object.freeze(names);
  }

  /** The model width the block maps (the router's input width). */
  get hiddenSize(): number {
    return this.router.inFeatures;
  }

  /** The number of routed experts E. */
  get numExperts(): number {
    return this.router.numExperts;
  }

  /** Experts per token, k. */
  get topK(): number {
    return this.router.topK;
  }

  /** How the last call computed its experts (`sparse` or `dense`), or undefined before the first call. */
  get lastDispatch(): 'sparse' | 'dense' | undefined {
    return this.last;
  }

  /**
   * The most assignments one expert takes in a call of `tokens` tokens: `ceil(capacityFactor · tokens · k / E)`,
   * or `Infinity` when dropless.
   *
   * @example
   * ```ts
   * import { GatedMLP } from '@slmkit/core';
   * import { SparseMoE, TopKRouter } from '@slmkit/moe';
   * const moe = new SparseMoE(
   *   new TopKRouter(8, 4, { topK: 2, normalize: true }),
   *   Array.from({ length: 4 }, () => GatedMLP.create(8, 16)),
   *   { capacityFactor: 1 },
   * );
   * console.log(moe.capacity(10)); // 5 = ceil(1 · 10 · 2 / 4)
   * moe.dispose();
   * ```
   */
  capacity(tokens: number): number {
    if (this.capacityFactor === null) return Infinity;
    return Math.ceil((this.capacityFactor * tokens * this.topK) / this.numExperts);
  }

  /**
   * @param x - float32 `[..., hidden]`; every leading position is a token.
   * @param options - training mode (router jitter) and its seed, and a list to collect the router logits in.
   * @returns `[..., hidden]`; the caller owns it.
   * @throws {@link @slmkit/core!ShapeError | ShapeError} when the last dimension is not `hidden` or `x` is not
   *   float32; {@link @slmkit/core!BackendError | BackendError} when `sparse` is forced on `webgpu`.
   */
  forward(x: tf.Tensor, options: MoEForwardOptions = {}): tf.Tensor {
    return tf.tidy(() => {
      const { output, routing } = this.run(x, options);
      if (options.routerLogits != null) options.routerLogits.push(tf.keep(routing.logits));
      tf.dispose([routing.scores, routing.experts, routing.weights]);
      return output;
    });
  }

  /**
   * The output together with what training and monitoring need: the router logits, per-expert counts, and this
   * layer's load-balancing and z losses.
   *
   * @param x - float32 `[..., hidden]`.
   * @param options - training mode, jitter seed, and the `[B, T]` padding mask the losses skip.
   * @returns a {@link MoEOutput}; the caller owns every tensor in it.
   * @throws as {@link SparseMoE.forward}; {@link @slmkit/core!ShapeError | ShapeError} for a mask that does not
   *   fit the tokens.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { GatedMLP } from '@slmkit/core';
   * import { SparseMoE, TopKRouter } from '@slmkit/moe';
   * const moe = new SparseMoE(new TopKRouter(8, 4, { topK: 2, normalize: false }), Array.from({ length: 4 }, () => GatedMLP.create(8, 16)));
   * const x = tf.randomNormal([1, 6, 8]);
   * const out = moe.forwardWithAux(x, { training: true });
   * console.log(out.tokensPerExpert.dataSync(), out.loadBalancingLoss.dataSync()[0]); // counts summing to 12, ~2
   * tf.dispose([x, out.output, out.routerLogits, out.tokensPerExpert, out.droppedPerExpert, out.loadBalancingLoss, out.zLoss]);
   * moe.dispose();
   * ```
   */
  forwardWithAux(x: tf.Tensor, options: MoECallOptions = {}): MoEOutput {
    return tf.tidy(() => {
      const { output, routing, tokens } = this.run(x, options);
      const counts = tokensPerExpert(routing.experts, this.numExperts); // [E]
      const capacity = this.capacity(tokens);
      const dropped = (Number.isFinite(capacity) ? tf.relu(tf.sub(counts, capacity)) : tf.zerosLike(counts)) as tf.Tensor1D; // [E]
      const mask = options.attentionMask;
      return {
        output,
        routerLogits: routing.logits,
        tokensPerExpert: counts,
        droppedPerExpert: dropped,
        loadBalancingLoss: loadBalancingLoss(routing.logits, { numExperts: this.numExperts, topK: this.topK, attentionMask: mask }),
        zLoss: routerZLoss(routing.logits, { attentionMask: mask }),
      };
    });
  }

  /** Routing, routed experts and shared expert for `x` `[..., D]`; the output has `x`'s shape. */
  private run(x: tf.Tensor, options: RouteOptions): { output: tf.Tensor; routing: Routing; tokens: number } {
    if (!(x instanceof tf.Tensor)) {
      throw new ShapeError(`SparseMoE: x must be a float32 tensor [..., ${this.hiddenSize}], found ${typeof x}`, {
        field: 'x',
        expected: `float32 [..., ${this.hiddenSize}]`,
        found: typeof x,
      });
    }
    checkLastDim('SparseMoE', x, this.hiddenSize, 'hiddenSize');
    const D = this.hiddenSize;
    const N = x.size / D;
    const x2d = tf.reshape(x, [N, D]) as tf.Tensor2D; // [N, D]
    const routing = this.router.route(x2d, options);
    const dispatch = this.resolveDispatch();
    let y = dispatch === 'sparse' ? this.sparse(x2d, routing) : this.dense(x2d, routing); // [N, D]
    this.last = dispatch;
    if (this.sharedExpert != null) {
      let shared = this.sharedExpert.forward(x2d); // [N, D]
      if (this.sharedExpertGate != null) shared = tf.mul(tf.sigmoid(this.sharedExpertGate.forward(x2d)), shared); // [N, 1] · [N, D]
      y = tf.add(y, shared) as tf.Tensor2D; // [N, D]
    }
    return { output: tf.reshape(y, x.shape), routing, tokens: N }; // [..., D]
  }

  private resolveDispatch(): 'sparse' | 'dense' {
    const backend = tf.getBackend();
    if (this.dispatch === 'sparse' && backend === 'webgpu') {
      throw new BackendError(
        'SparseMoE: dispatch "sparse" reads the routing synchronously, which the webgpu backend cannot do; use "auto" or "dense" there',
        { field: 'dispatch', expected: '"auto" or "dense" on webgpu', found: 'sparse' },
      );
    }
    if (this.dispatch !== 'auto') return this.dispatch;
    if (backend !== 'webgpu') return 'sparse';
    if (!warnedDense) {
      warnedDense = true;
      console.warn(
        'SparseMoE: on webgpu the experts run dense (every expert on every token, weighted by the routing): sparse ' +
          'dispatch reads the routing synchronously, which WebGPU does not allow. Results are the same; compute is E/k times larger.',
      );
    }
    return 'dense';
  }

  /**
   * Which `[N·k]` assignments each expert takes: token rows and flat slot indices per expert, in token order, at
   * most `capacity` each. Reads the chosen experts on the host.
   */
  private assignments(routing: Routing): { rows: number[][]; slots: number[][] } {
    const E = this.numExperts;
    const chosen = routing.experts.dataSync(); // [N·k] int32, row-major over [N, k]
    const k = this.topK;
    const capacity = this.capacity(chosen.length / k);
    const rows: number[][] = Array.from({ length: E }, () => []);
    const slots: number[][] = Array.from({ length: E }, () => []);
    for (let s = 0; s < chosen.length; s++) {
      const e = chosen[s];
      if (rows[e].length >= capacity) continue; // over capacity: dropped
      rows[e].push(Math.floor(s / k));
      slots[e].push(s);
    }
    return { rows, slots };
  }

  /** Each expert on its own tokens only: gather, run, weight, scatter-add. */
  private sparse(x2d: tf.Tensor2D, routing: Routing): tf.Tensor2D {
    const [N, D] = x2d.shape;
    const { rows, slots } = this.assignments(routing);
    const flatWeights = tf.reshape(routing.weights, [-1, 1]) as tf.Tensor2D; // [N·k, 1]
    const parts: tf.Tensor2D[] = [];
    const targets: number[] = [];
    this.experts.items.forEach((expert, e) => {
      if (rows[e].length === 0) return; // an expert nobody chose costs nothing
      const xe = gatherRows(x2d, tf.tensor1d(rows[e], 'int32')); // [n_e, D]
      const we = gatherRows(flatWeights, tf.tensor1d(slots[e], 'int32')); // [n_e, 1]
      parts.push(tf.mul(expert.forward(xe), we) as tf.Tensor2D); // [n_e, D]
      targets.push(...rows[e]);
    });
    if (parts.length === 0) return tf.zeros([N, D]); // every assignment dropped
    const all = parts.length === 1 ? parts[0] : (tf.concat(parts, 0) as tf.Tensor2D); // [M, D]
    return scatterAddRows(all, tf.tensor1d(targets, 'int32'), N); // [N, D]
  }

  /** Every expert on every token, weighted by the routing (zero where not chosen or dropped). */
  private dense(x2d: tf.Tensor2D, routing: Routing): tf.Tensor2D {
    const N = x2d.shape[0];
    const E = this.numExperts;
    let weights: tf.Tensor = routing.weights; // [N, k]
    if (this.capacityFactor !== null) weights = tf.mul(weights, this.keepMask(routing.experts, N)); // [N, k]
    const chosen = oneHotFloat(routing.experts, E); // [N, k, E]
    const combine = tf.sum(tf.mul(chosen, tf.expandDims(weights, -1)), 1); // [N, E]
    const items = this.experts.items;
    let y = tf.mul(items[0].forward(x2d), tf.slice(combine, [0, 0], [N, 1])) as tf.Tensor2D; // [N, D]
    for (let e = 1; e < E; e++) {
      y = tf.add(y, tf.mul(items[e].forward(x2d), tf.slice(combine, [0, e], [N, 1]))) as tf.Tensor2D; // [N, D]
    }
    return y;
  }

  /** 1 for the assignments within capacity, 0 for the dropped ones, on the device: `[N, k]`; no gradient. */
  private keepMask(experts: tf.Tensor2D, N: number): tf.Tensor {
    const E = this.numExperts;
    return withoutGradient(experts, (chosen) => {
      const flat = oneHotFloat(tf.reshape(chosen, [-1]), E); // [N·k, E]
      const before = tf.cumsum(flat, 0, true); // [N·k, E]: earlier assignments to each expert
      const position = tf.sum(tf.mul(before, flat), -1); // [N·k]: this assignment's place in its expert's queue
      return tf.reshape(tf.cast(tf.less(position, this.capacity(N)), 'float32'), [N, this.topK]); // [N, k]
    });
  }
}
