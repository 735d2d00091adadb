/**
 * `MambaMixer`: the Mamba-1 token mixer (Gu & Dao 2023), with Hugging Face's parameter names.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Linear, Module, RMSNorm, checkFlag, checkPositiveInt, checkProjection, type Projection } from '@slmkit/core';
import { selectiveScan, type SelectiveScanOptions } from '../ops/selective-scan.js';
import { SsmState, checkMixerCall } from '../state.js';
import { CausalConv1d } from './causal-conv1d.js';

/**
 * An RMSNorm of the dt, B or C part of `x_proj`'s output before the scan: `weight: true` is Jamba's
 * (`dt_layernorm`, `b_layernorm`, `c_layernorm`, each with a learned scale), `weight: false` Falcon-Mamba's
 * (`v / √(mean(v²) + eps)`, no parameters).
 *
 * @example
 * ```ts
 * import type { MixerNormConfig } from '@slmkit/ssm';
 * const falconMamba: MixerNormConfig = { eps: 1e-6, weight: false };
 * ```
 */
export interface MixerNormConfig {
  /** ε. */
  eps: number;
  /** Whether the norm has a learned scale. */
  weight: boolean;
}

/**
 * The shape of a {@link MambaMixer}, in the words of Hugging Face's `MambaConfig`.
 *
 * @example
 * ```ts
 * import type { MambaMixerConfig } from '@slmkit/ssm';
 * const mamba130m: MambaMixerConfig = {
 *   hiddenSize: 768, intermediateSize: 1536, stateSize: 16, convKernel: 4, timeStepRank: 48,
 * };
 * ```
 */
export interface MambaMixerConfig {
  /** Model width (`hidden_size`). */
  hiddenSize: number;
  /** Inner width `D` (`intermediate_size`, usually `expand · hidden_size`). */
  intermediateSize: number;
  /** State size `N` per channel (`state_size`). */
  stateSize: number;
  /** Convolution width `K` (`conv_kernel`). */
  convKernel: number;
  /** Rank of dt before `dt_proj` (`time_step_rank`). */
  timeStepRank: number;
  /** Bias on `in_proj` and `out_proj` (`use_bias`, default false). */
  useBias?: boolean;
  /** Bias on the convolution (`use_conv_bias`, default true). */
  useConvBias?: boolean;
  /** RMSNorms of dt, B and C after `x_proj` (absent: none, as in Mamba). */
  dtBCNorm?: MixerNormConfig;
}

/**
 * The projections of a {@link MambaMixer}, for callers that bring their own (a LoRA `in_proj`, say). Each is a
 * `Projection` mapping the widths named.
 *
 * @example
 * ```ts
 * import { Linear } from '@slmkit/core';
 * import type { MambaMixerParts } from '@slmkit/ssm';
 * const parts: Partial<MambaMixerParts> = { outProj: new Linear(16, 8, { bias: false }) };
 * ```
 */
export interface MambaMixerParts {
  /** `in_proj`: hidden → 2·D (x and the gate z). */
  inProj: Projection;
  /** `x_proj`: D → R + 2N (dt, B, C). */
  xProj: Projection;
  /** `dt_proj`: R → D, with bias (the bias is the dt bias). */
  dtProj: Projection;
  /** `out_proj`: D → hidden. */
  outProj: Projection;
}

/**
 * Options of {@link MambaMixer.forward}.
 *
 * @example
 * ```ts
 * import { SsmState, type MambaMixerForwardOptions } from '@slmkit/ssm';
 * const options: MambaMixerForwardOptions = { state: new SsmState(), implementation: 'auto' };
 * ```
 */
export interface MambaMixerForwardOptions {
  /**
   * The state to continue from and update (prefill, then one token at a time); without one the call is
   * stateless and starts from zeros.
   */
  state?: SsmState;
  /** `[B, L]`, 1 for a real token and 0 for padding: padded positions are zeroed before and after the convolution, as `transformers` does. */
  attentionMask?: tf.Tensor;
  /** The scan's implementation (default `auto`). */
  implementation?: SelectiveScanOptions['implementation'];
}

function checkConfig(c: MambaMixerConfig): void {
  if (c == null || typeof c !== 'object') {
    throw new ConfigError('MambaMixer: config must be an object', { field: 'config', expected: 'MambaMixerConfig', found: c });
  }
  for (const f of ['hiddenSize', 'intermediateSize', 'stateSize', 'convKernel', 'timeStepRank'] as const) checkPositiveInt('MambaMixer', f, c[f]);
  checkFlag('MambaMixer', 'useBias', c.useBias, false);
  checkFlag('MambaMixer', 'useConvBias', c.useConvBias, true);
  if (c.dtBCNorm != null && (typeof c.dtBCNorm !== 'object' || !(c.dtBCNorm.eps > 0) || typeof c.dtBCNorm.weight !== 'boolean')) {
    throw new ConfigError('MambaMixer: dtBCNorm must be { eps > 0, weight: boolean }', { field: 'dtBCNorm', expected: '{ eps, weight }', found: c.dtBCNorm });
  }
}

/**
 * The Mamba-1 mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv
 * 2312.00752), as Hugging Face's `MambaMixer` computes it, for `x` `[B, L, hidden]`:
 *
 * ```text
 * [u, z]    = in_proj(x)                         u, z: [B, L, D]
 * u         = silu(conv1d(u))                    causal, depthwise, width K
 * [dt, B, C] = x_proj(u)                         [B, L, R], [B, L, N], [B, L, N]   (optionally RMS-normalised)
 * Δ         = softplus(dt_proj(dt))              [B, L, D]   (dt_proj's bias inside)
 * A         = −exp(A_log)                        [D, N]
 * y         = selectiveScan(u, Δ, A, B, C, D, z) [B, L, D]   gated by silu(z)
 * out       = out_proj(y)                        [B, L, hidden]
 * ```
 *
 * Parameters carry Hugging Face's names: `in_proj`, `conv1d`, `x_proj`, `dt_proj`, `A_log`, `D`, `out_proj`, and
 * Jamba's `dt_layernorm`, `b_layernorm`, `c_layernorm` when the dt/B/C norms have weights. A prefill and each
 * decoding step are the same call with an {@link SsmState}: the convolution continues from the state's last
 * inputs and the scan from its `h`, so one token costs O(1) whatever came before.
 *
 * How it differs: `transformers` has one path for prefill and another for a cached step, with separate
 * maths; here both run the same convolution and the same scan kernel (a step is a scan of length 1).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { MambaMixer, SsmState } from '@slmkit/ssm';
 * const mixer = new MambaMixer({ hiddenSize: 8, intermediateSize: 16, stateSize: 4, convKernel: 4, timeStepRank: 2 });
 * const state = new SsmState();
 * const prompt = tf.randomNormal([1, 5, 8]);
 * const y = mixer.forward(prompt, { state }); // [1, 5, 8]; state now holds 5 positions
 * const next = tf.randomNormal([1, 1, 8]);
 * const y1 = mixer.forward(next, { state }); // one recurrent step
 * console.log(y.shape, y1.shape, state.length); // [1, 5, 8] [1, 1, 8] 6
 * tf.dispose([prompt, y, next, y1]);
 * state.dispose();
 * mixer.dispose();
 * ```
 */
export class MambaMixer extends Module {
  /** The configuration (frozen). */
  readonly config: Readonly<MambaMixerConfig>;
  /** `in_proj`. */
  readonly inProj: Projection;
  /** `conv1d`. */
  readonly conv1d: CausalConv1d;
  /** `x_proj`. */
  readonly xProj: Projection;
  /** `dt_proj`. */
  readonly dtProj: Projection;
  /** `A_log`, `[D, N]`: `A = −exp(A_log)`. */
  readonly ALog: tf.Variable;
  /** `D`, `[D]`: the skip connection. */
  readonly D: tf.Variable;
  /** `out_proj`. */
  readonly outProj: Projection;
  /** The dt, B and C norms, when configured. */
  readonly dtBCNorms: readonly [RMSNorm, RMSNorm, RMSNorm] | undefined;

  /**
   * @param config - the shape; see {@link MambaMixerConfig}.
   * @param parts - projections to use instead of new `Linear`s.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the first invalid field or mis-sized part.
   */
  constructor(config: MambaMixerConfig, parts: Partial<MambaMixerParts> = {}) {
    super();
    checkConfig(config);
    this.config = Object.freeze({ ...config });
    const { hiddenSize: H, intermediateSize: Dc, stateSize: N, convKernel: K, timeStepRank: R } = config;
    const bias = config.useBias ?? false;
    const inProj = parts.inProj ?? new Linear(H, 2 * Dc, { bias });
    const xProj = parts.xProj ?? new Linear(Dc, R + 2 * N, { bias: false });
    const dtProj = parts.dtProj ?? new Linear(R, Dc, { bias: true });
    const outProj = parts.outProj ?? new Linear(Dc, H, { bias });
    checkProjection('MambaMixer', 'inProj', inProj, H, 2 * Dc);
    checkProjection('MambaMixer', 'xProj', xProj, Dc, R + 2 * N);
    checkProjection('MambaMixer', 'dtProj', dtProj, R, Dc);
    checkProjection('MambaMixer', 'outProj', outProj, Dc, H);
    this.inProj = this.registerModule('in_proj', inProj);
    this.conv1d = this.registerModule('conv1d', new CausalConv1d(Dc, K, { bias: config.useConvBias ?? true }));
    this.xProj = this.registerModule('x_proj', xProj);
    this.dtProj = this.registerModule('dt_proj', dtProj);
    // S4D-real initialisation, as Mamba's: A = −(1 … N) for every channel; D = 1.
    const aInit = tf.tidy(() => tf.log(tf.tile(tf.reshape(tf.range(1, N + 1, 1, 'float32'), [1, N]), [Dc, 1])));
    this.ALog = this.registerParameter('A_log', aInit);
    this.D = this.registerParameter('D', tf.ones([Dc]));
    this.outProj = this.registerModule('out_proj', outProj);
    const norm = config.dtBCNorm;
    if (norm != null) {
      const make = (dim: number): RMSNorm => new RMSNorm(dim, { eps: norm.eps, elementwiseAffine: norm.weight });
      const norms = [make(R), make(N), make(N)] as const;
      if (norm.weight) {
        this.registerModule('dt_layernorm', norms[0]);
        this.registerModule('b_layernorm', norms[1]);
        this.registerModule('c_layernorm', norms[2]);
      }
      this.dtBCNorms = norms;
    } else {
      this.dtBCNorms = undefined;
    }
  }

  /**
   * Mixes `x` over time.
   *
   * @param x - float32 `[B, L, hidden]`.
   * @param options - the state to continue from and update, a padding mask, the scan implementation.
   * @returns float32 `[B, L, hidden]`; the caller owns it.
   * @throws {@link @slmkit/core!ShapeError | ShapeError} for a wrong input shape or a state of another batch size or mixer.
   */
  forward(x: tf.Tensor, options: MambaMixerForwardOptions = {}): tf.Tensor3D {
    const { hiddenSize: H, intermediateSize: Dc, stateSize: N, convKernel: K, timeStepRank: R } = this.config;
    const { batch: Bt, length: L } = checkMixerCall('MambaMixer', x, H, options, [K - 1, Dc], [Dc, N]);
    const { state, attentionMask, implementation } = options;
    const result = tf.tidy(() => {
      const mask = attentionMask == null ? null : tf.expandDims(tf.cast(attentionMask, 'float32'), 2); // [B, L, 1]
      const projected = this.inProj.forward(x); // [B, L, 2D]
      let u = tf.slice(projected, [0, 0, 0], [Bt, L, Dc]); // [B, L, D]
      const z = tf.slice(projected, [0, 0, Dc], [Bt, L, Dc]); // [B, L, D]
      if (mask != null) u = tf.mul(u, mask);
      const conv = this.conv1d.forward(u, state?.conv); // y [B, L, D], past [B, K − 1, D]
      u = tf.mul(conv.y, tf.sigmoid(conv.y)); // silu, [B, L, D]
      if (mask != null) u = tf.mul(u, mask);
      const params = this.xProj.forward(u); // [B, L, R + 2N]
      let dt = tf.slice(params, [0, 0, 0], [Bt, L, R]); // [B, L, R]
      let B = tf.slice(params, [0, 0, R], [Bt, L, N]); // [B, L, N]
      let C = tf.slice(params, [0, 0, R + N], [Bt, L, N]); // [B, L, N]
      if (this.dtBCNorms != null) {
        dt = this.dtBCNorms[0].forward(dt);
        B = this.dtBCNorms[1].forward(B);
        C = this.dtBCNorms[2].forward(C);
      }
      const delta = this.dtProj.forward(dt); // [B, L, D], dt bias included
      const A = tf.neg(tf.exp(this.ALog)); // [D, N]
      const toChannels = (t: tf.Tensor): tf.Tensor => tf.transpose(t, [0, 2, 1]); // [B, L, ·] → [B, ·, L]
      const { y, lastState } = selectiveScan(toChannels(u), toChannels(delta), A, toChannels(B), toChannels(C), {
        D: this.D,
        z: toChannels(z),
        deltaSoftplus: true,
        initialState: state?.ssm,
        returnLastState: true,
        implementation,
      }); // y [B, D, L], lastState [B, D, N]
      const out = this.outProj.forward(tf.transpose(y, [0, 2, 1])) as tf.Tensor3D; // [B, L, hidden]
      return { out, past: conv.past, lastState };
    });
    if (state != null) state.set(result.past, result.lastState, state.length + L);
    else tf.dispose([result.past, result.lastState]);
    return result.out;
  }

  /** A new, empty {@link SsmState} for this mixer. The caller owns it. */
  createState(): SsmState {
    return new SsmState();
  }
}
