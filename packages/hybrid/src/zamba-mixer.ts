/**
 * `ZambaMambaMixer`: Zamba's multi-head Mamba-1 mixer, with the parameter names and layouts of Hugging Face's
 * `ZambaMambaMixer`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Linear, Module, checkFlag, checkPositiveInt, checkProjection, type Projection } from '@slmkit/core';
import { CausalConv1d, checkMixerCall, selectiveScan, type MambaMixerForwardOptions } from '@slmkit/ssm';

/**
 * The shape of a {@link ZambaMambaMixer}, in the words of Hugging Face's `ZambaConfig`.
 *
 * @example
 * ```ts
 * import type { ZambaMambaMixerConfig } from '@slmkit/hybrid';
 * // Zamba-7B: hidden 3712, mamba_expand 2, n_mamba_heads 2, mamba_d_state 16, mamba_dt_rank ceil(3712 / 16).
 * const zamba7b: ZambaMambaMixerConfig = {
 *   hiddenSize: 3712, intermediateSize: 7424, numHeads: 2, stateSize: 16, convKernel: 4, timeStepRank: 232,
 * };
 * ```
 */
export interface ZambaMambaMixerConfig {
  /** Model width (`hidden_size`). */
  hiddenSize: number;
  /** Inner width `D` (`mamba_expand · hidden_size`). */
  intermediateSize: number;
  /** Mamba heads `H` (`n_mamba_heads`), a divisor of `D`; each head has `P = D / H` channels. */
  numHeads: number;
  /** State size `N` per channel (`mamba_d_state`). */
  stateSize: number;
  /** Convolution width `K` (`mamba_d_conv`). */
  convKernel: number;
  /** Rank `R` of dt before the per-head dt projection (`mamba_dt_rank`). */
  timeStepRank: number;
  /** Bias on `in_proj` and `out_proj` (`mamba_proj_bias`, default false). */
  useBias?: boolean;
  /** Bias on the convolution (`mamba_conv_bias`, default true). */
  useConvBias?: boolean;
}

/**
 * The projections of a {@link ZambaMambaMixer} that callers may bring themselves (a LoRA `in_proj`, say). The
 * per-head `x_proj_weight` and `dt_proj_weight` are raw 3-D parameters, not projections.
 *
 * @example
 * ```ts
 * import { Linear } from '@slmkit/core';
 * import type { ZambaMambaMixerParts } from '@slmkit/hybrid';
 * const parts: Partial<ZambaMambaMixerParts> = { outProj: new Linear(32, 16, { bias: false }) };
 * ```
 */
export interface ZambaMambaMixerParts {
  /** `in_proj`: hidden → 2·D, the input `x` and the gate `z` interleaved (`x` at even columns, `z` at odd). */
  inProj: Projection;
  /** `out_proj`: D → hidden. */
  outProj: Projection;
}

function checkConfig(c: ZambaMambaMixerConfig): void {
  if (c == null || typeof c !== 'object') {
    throw new ConfigError('ZambaMambaMixer: config must be an object', { field: 'config', expected: 'ZambaMambaMixerConfig', found: c });
  }
  for (const f of ['hiddenSize', 'intermediateSize', 'numHeads', 'stateSize', 'convKernel', 'timeStepRank'] as const) checkPositiveInt('ZambaMambaMixer', f, c[f]);
  if (c.intermediateSize % c.numHeads !== 0) {
    throw new ConfigError(`ZambaMambaMixer: numHeads (${c.numHeads}) must divide intermediateSize (${c.intermediateSize})`, {
      field: 'numHeads',
      expected: `a divisor of ${c.intermediateSize}`,
      found: c.numHeads,
    });
  }
  checkFlag('ZambaMambaMixer', 'useBias', c.useBias, false);
  checkFlag('ZambaMambaMixer', 'useConvBias', c.useConvBias, true);
}

/**
 * Zamba's multi-head Mamba-1 mixer (Glorioso et al. 2024, "Zamba: A Compact 7B SSM Hybrid Model", arXiv
 * 2405.16712), as `transformers`' `ZambaMambaMixer` computes it, for `x` `[B, L, hidden]`. The inner width `D` is
 * split into `H` heads of `P = D / H` channels (channel `d` belongs to head `⌊d / P⌋`); each head has its own
 * selective projection, dt projection, `A` and `D`, and its own `B` and `C`:
 *
 * ```text
 * [u, z]      = in_proj(x)                        u, z: [B, L, D]; interleaved: u = columns 0, 2, 4, …; z = 1, 3, 5, …
 * u           = silu(conv1d(u))                   causal, depthwise, width K
 * [dt, B, C]ₕ = x_proj_weight[h] · uₕ             [R], [N], [N] per head and position     (x_proj_weight: [H, R+2N, P])
 * Δₕ          = softplus(dt_proj_weight[h] · dtₕ + dt_proj_bias[h])   [P]                 (dt_proj_weight: [H, P, R])
 * A           = −exp(A_log)                       [H, P, N]
 * y           = selectiveScan(u, Δ, A, B, C, D, z) with B, C grouped by head                [B, L, D]
 * out         = out_proj(y)                       [B, L, hidden]
 * ```
 *
 * With one head this is Mamba-1 except for the interleaved `in_proj` columns. Parameters keep Hugging Face's names
 * and layouts: `in_proj.weight`, `conv1d.weight` / `.bias`, `x_proj_weight` `[H, R+2N, P]`, `dt_proj_weight`
 * `[H, P, R]`, `dt_proj_bias` `[H, P]`, `A_log` `[H, P, N]`, `D` `[H, P]`, `out_proj.weight`.
 *
 * The decoding state is an {@link @slmkit/ssm!SsmState | SsmState} with the usual `[B, K − 1, D]` conv part and a
 * `[B, D, N]` scan state (Hugging Face's `[B, H, P, N]`, heads flattened into channels). A prefill and each
 * decoding step are the same call.
 *
 * How it differs: `transformers` loops over the heads (in its CUDA path) or broadcasts a 5-D tensor (in its slow
 * path); here the heads are one batched matmul, and the scan is the grouped selective scan of `@slmkit/ssm` (one
 * group of `B` and `C` per head), fused on `cpu`, `wasm` and `webgpu`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { SsmState } from '@slmkit/ssm';
 * import { ZambaMambaMixer } from '@slmkit/hybrid';
 * const mixer = new ZambaMambaMixer({ hiddenSize: 8, intermediateSize: 16, numHeads: 2, stateSize: 4, convKernel: 4, timeStepRank: 2 });
 * console.log(mixer.namedParameters().map(([n, v]) => `${n} [${v.shape}]`).join(', '));
 * const state = new SsmState();
 * const prompt = tf.randomNormal([1, 5, 8]);
 * const y = mixer.forward(prompt, { state }); // [1, 5, 8]
 * const next = tf.randomNormal([1, 1, 8]);
 * const y1 = mixer.forward(next, { state }); // one recurrent step
 * console.log(y.shape, y1.shape, state.length); // [1, 5, 8] [1, 1, 8] 6
 * tf.dispose([prompt, y, next, y1]);
 * state.dispose();
 * mixer.dispose();
 * ```
 */
export class ZambaMambaMixer extends Module {
  /** The configuration (frozen). */
  readonly config: Readonly<ZambaMambaMixerConfig>;
  /** `in_proj`. */
  readonly inProj: Projection;
  /** `conv1d`. */
  readonly conv1d: CausalConv1d;
  /** `x_proj_weight`, `[H, R + 2N, P]`. */
  readonly xProjWeight: tf.Variable;
  /** `dt_proj_weight`, `[H, P, R]`. */
  readonly dtProjWeight: tf.Variable;
  /** `dt_proj_bias`, `[H, P]`. */
  readonly dtProjBias: tf.Variable;
  /** `A_log`, `[H, P, N]`: `A = −exp(A_log)`. */
  readonly ALog: tf.Variable;
  /** `D`, `[H, P]`: the skip connection. */
  readonly D: tf.Variable;
  /** `out_proj`. */
  readonly outProj: Projection;

  /**
   * @param config - the shape; see {@link ZambaMambaMixerConfig}.
   * @param parts - projections to use instead of new `Linear`s.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the first invalid field or mis-sized part.
   */
  constructor(config: ZambaMambaMixerConfig, parts: Partial<ZambaMambaMixerParts> = {}) {
    super();
    checkConfig(config);
    this.config = Object.freeze({ ...config });
    const { hiddenSize: Hd, intermediateSize: Dc, numHeads: H, stateSize: N, convKernel: K, timeStepRank: R } = config;
    const P = Dc / H;
    const bias = config.useBias ?? false;
    const inProj = parts.inProj ?? new Linear(Hd, 2 * Dc, { bias });
    const outProj = parts.outProj ?? new Linear(Dc, Hd, { bias });
    checkProjection('ZambaMambaMixer', 'inProj', inProj, Hd, 2 * Dc);
    checkProjection('ZambaMambaMixer', 'outProj', outProj, Dc, Hd);
    this.inProj = this.registerModule('in_proj', inProj);
    this.conv1d = this.registerModule('conv1d', new CausalConv1d(Dc, K, { bias: config.useConvBias ?? true }));
    // Uniform fan-in initialisation of the per-head projections (a checkpoint overwrites them).
    const xBound = 1 / Math.sqrt(P);
    const dtBound = 1 / Math.sqrt(R);
    this.xProjWeight = this.registerParameter('x_proj_weight', tf.randomUniform([H, R + 2 * N, P], -xBound, xBound));
    this.dtProjWeight = this.registerParameter('dt_proj_weight', tf.randomUniform([H, P, R], -dtBound, dtBound));
    this.dtProjBias = this.registerParameter('dt_proj_bias', tf.zeros([H, P]));
    // S4D-real initialisation, as Mamba's: A = −(1 … N) for every channel; D = 1.
    const aInit = tf.tidy(() => tf.log(tf.tile(tf.reshape(tf.range(1, N + 1, 1, 'float32'), [1, 1, N]), [H, P, 1])));
    this.ALog = this.registerParameter('A_log', aInit);
    this.D = this.registerParameter('D', tf.ones([H, P]));
    this.outProj = this.registerModule('out_proj', outProj);
  }

  /**
   * Mixes `x` over time.
   *
   * @param x - float32 `[B, L, hidden]`.
   * @param options - the state to continue from and update, a padding mask (padded positions are zeroed before and
   *   after the convolution), the scan implementation.
   * @returns float32 `[B, L, hidden]`; the caller owns it.
   * @throws {@link @slmkit/core!ShapeError | ShapeError} for a wrong input shape, mask, or a state of another batch
   *   size or mixer.
   */
  forward(x: tf.Tensor, options: MambaMixerForwardOptions = {}): tf.Tensor3D {
    const { hiddenSize: Hd, intermediateSize: Dc, numHeads: H, stateSize: N, convKernel: K, timeStepRank: R } = this.config;
    const P = Dc / H;
    const { batch: Bt, length: L } = checkMixerCall('ZambaMambaMixer', x, Hd, options, [K - 1, Dc], [Dc, N]);
    const { state, attentionMask, implementation } = options;
    const result = tf.tidy(() => {
      const mask = attentionMask == null ? null : tf.expandDims(tf.cast(attentionMask, 'float32'), 2); // [B, L, 1]
      const pairs = tf.reshape(this.inProj.forward(x), [Bt, L, Dc, 2]); // [B, L, D, 2]: column 2d is u_d, 2d + 1 is z_d
      let u = tf.reshape(tf.slice(pairs, [0, 0, 0, 0], [Bt, L, Dc, 1]), [Bt, L, Dc]); // [B, L, D]
      const z = tf.reshape(tf.slice(pairs, [0, 0, 0, 1], [Bt, L, Dc, 1]), [Bt, L, Dc]); // [B, L, D]
      if (mask != null) u = tf.mul(u, mask);
      const conv = this.conv1d.forward(u, state?.conv); // y [B, L, D], past [B, K − 1, D]
      u = tf.mul(conv.y, tf.sigmoid(conv.y)); // silu, [B, L, D]
      if (mask != null) u = tf.mul(u, mask);
      // Per head: one batched matmul over the heads.
      const uHeads = tf.transpose(tf.reshape(u, [Bt * L, H, P]), [1, 0, 2]); // [H, B·L, P]
      const params = tf.matMul(uHeads, this.xProjWeight, false, true); // [H, B·L, R + 2N]
      const dt = tf.slice(params, [0, 0, 0], [H, Bt * L, R]); // [H, B·L, R]
      const delta = tf.matMul(dt, this.dtProjWeight, false, true); // [H, B·L, P], bias added in the scan
      const toChannels = (t: tf.Tensor, width: number): tf.Tensor =>
        tf.reshape(tf.transpose(tf.reshape(t, [H, Bt, L, width]), [1, 0, 3, 2]), [Bt, H * width, L]); // [B, H·width, L]
      const groups = (offset: number): tf.Tensor =>
        tf.transpose(tf.reshape(tf.slice(params, [0, 0, offset], [H, Bt * L, N]), [H, Bt, L, N]), [1, 0, 3, 2]); // [B, H, N, L]
      const A = tf.neg(tf.exp(tf.reshape(this.ALog, [Dc, N]))); // [D, N], channel h·P + p
      const { y, lastState } = selectiveScan(tf.transpose(u, [0, 2, 1]), toChannels(delta, P), A, groups(R), groups(R + N), {
        D: tf.reshape(this.D, [Dc]),
        z: tf.transpose(z, [0, 2, 1]),
        deltaBias: tf.reshape(this.dtProjBias, [Dc]),
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
}
