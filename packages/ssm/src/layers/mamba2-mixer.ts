/**
 * `Mamba2Mixer`: the Mamba-2 token mixer (Dao & Gu 2024), with Hugging Face's parameter names.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Linear, Module, RMSNorm, checkEps, checkFlag, checkPositiveInt, checkProjection, type Projection } from '@slmkit/core';
import { ssdScan, type SsdScanOptions } from '../ops/ssd-scan.js';
import { SsmState, checkMixerCall } from '../state.js';
import { CausalConv1d } from './causal-conv1d.js';

/**
 * The shape of a {@link Mamba2Mixer}, in the words of Hugging Face's `Mamba2Config`.
 *
 * @example
 * ```ts
 * import type { Mamba2MixerConfig } from '@slmkit/ssm';
 * // mamba2-130m: hidden 768, 24 heads of 64 (inner 1536), one group, state 128.
 * const mamba2: Mamba2MixerConfig = {
 *   hiddenSize: 768, numHeads: 24, headDim: 64, nGroups: 1, stateSize: 128, convKernel: 4, chunkSize: 256,
 *   layerNormEpsilon: 1e-5, dtLimit: [1e-3, Infinity],
 * };
 * ```
 */
export interface Mamba2MixerConfig {
  /** Model width (`hidden_size`). */
  hiddenSize: number;
  /** Heads H (`num_heads`); the inner width is H · P (`expand · hidden_size`). */
  numHeads: number;
  /** Head dim P (`head_dim`). */
  headDim: number;
  /** Groups G of B and C (`n_groups`), dividing H; heads use them in contiguous blocks of H / G. */
  nGroups: number;
  /** State size N per group (`state_size`). */
  stateSize: number;
  /** Convolution width K (`conv_kernel`). */
  convKernel: number;
  /** Chunk length of the chunked scan (`chunk_size`); only where the chunked form runs. */
  chunkSize: number;
  /** ε of the gated RMSNorm (`layer_norm_epsilon`). */
  layerNormEpsilon: number;
  /** Clamp of dt after the softplus: `transformers`' Mamba-2 applies `[time_step_min, ∞)` (default: none). */
  dtLimit?: readonly [number, number];
  /** Bias on `in_proj` and `out_proj` (`use_bias`, default false). */
  useBias?: boolean;
  /** Bias on the convolution (`use_conv_bias`, default true). */
  useConvBias?: boolean;
}

/**
 * The projections of a {@link Mamba2Mixer}, for callers that bring their own (a LoRA `in_proj`, say).
 *
 * @example
 * ```ts
 * import { Linear } from '@slmkit/core';
 * import type { Mamba2MixerParts } from '@slmkit/ssm';
 * const parts: Partial<Mamba2MixerParts> = { outProj: new Linear(16, 8, { bias: false }) };
 * ```
 */
export interface Mamba2MixerParts {
  /** `in_proj`: hidden → I + (I + 2·G·N) + H (the gate z, the conv input xBC, dt). */
  inProj: Projection;
  /** `out_proj`: I → hidden. */
  outProj: Projection;
}

/**
 * Options of {@link Mamba2Mixer.forward}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { SsmState, type Mamba2MixerForwardOptions } from '@slmkit/ssm';
 * const options: Mamba2MixerForwardOptions = { state: new SsmState<tf.Tensor4D>(), implementation: 'chunked' };
 * ```
 */
export interface Mamba2MixerForwardOptions {
  /** The state to continue from and update; without one the call is stateless and starts from zeros. */
  state?: SsmState<tf.Tensor4D>;
  /** `[B, L]`, 1 for a real token and 0 for padding: padded positions are zeroed before and after the convolution. */
  attentionMask?: tf.Tensor;
  /** The scan's implementation (default `auto`). */
  implementation?: SsdScanOptions['implementation'];
}

function checkConfig(c: Mamba2MixerConfig): void {
  if (c == null || typeof c !== 'object') {
    throw new ConfigError('Mamba2Mixer: config must be an object', { field: 'config', expected: 'Mamba2MixerConfig', found: c });
  }
  for (const f of ['hiddenSize', 'numHeads', 'headDim', 'nGroups', 'stateSize', 'convKernel', 'chunkSize'] as const) checkPositiveInt('Mamba2Mixer', f, c[f]);
  if (c.numHeads % c.nGroups !== 0) {
    throw new ConfigError(`Mamba2Mixer: nGroups (${c.nGroups}) must divide numHeads (${c.numHeads})`, { field: 'nGroups', expected: `a divisor of ${c.numHeads}`, found: c.nGroups });
  }
  checkEps('Mamba2Mixer', c.layerNormEpsilon);
  checkFlag('Mamba2Mixer', 'useBias', c.useBias, false);
  checkFlag('Mamba2Mixer', 'useConvBias', c.useConvBias, true);
  const lim = c.dtLimit;
  if (lim != null && !(Array.isArray(lim) && lim.length === 2 && typeof lim[0] === 'number' && typeof lim[1] === 'number' && lim[0] <= lim[1])) {
    throw new ConfigError(`Mamba2Mixer: dtLimit must be [min, max] with min ≤ max, found ${JSON.stringify(lim)}`, { field: 'dtLimit', expected: '[min, max]', found: lim });
  }
}

/**
 * The Mamba-2 mixer (Dao & Gu 2024, "Transformers are SSMs", arXiv 2405.21060), as Hugging Face's `Mamba2Mixer`
 * computes it, for `x` `[B, L, hidden]`, with I = H·P inner features and G groups of state size N:
 *
 * ```text
 * [z, xBC, dt] = in_proj(x)                        [B, L, I], [B, L, I + 2GN], [B, L, H]
 * xBC          = silu(conv1d(xBC))                 causal, depthwise, width K
 * [x, B, C]    = xBC                               [B, L, H, P], [B, L, G, N], [B, L, G, N]
 * A            = −exp(A_log)                       [H], one scalar per head
 * y            = ssdScan(x, dt, A, B, C, D, z)     Δ = clamp(softplus(dt + dt_bias), dtLimit); y gated by silu(z)
 * out          = out_proj(RMSNorm(y) · norm.weight)  one mean square over all I features per token
 * ```
 *
 * The gated norm of `transformers` (`MambaRMSNormGated`: gate, then normalise over the whole inner width) is the
 * scan's `silu(z)` gate followed by a plain {@link @slmkit/core!RMSNorm | RMSNorm} named `norm`. Parameters carry
 * Hugging Face's names: `in_proj`, `conv1d`, `dt_bias`, `A_log`, `D`, `norm`, `out_proj`. A prefill and each
 * decoding step are the same call with an {@link SsmState} (conv state `[B, K − 1, I + 2GN]`, recurrent state
 * `[B, H, P, N]`): a step is a scan of length 1, through the same kernel.
 *
 * How it differs: `mamba_ssm`'s `RMSNormGated` normalises per group when `ngroups > 1`; `transformers` v4.47 (and
 * this block) normalise over the whole width.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Mamba2Mixer, SsmState } from '@slmkit/ssm';
 * const mixer = new Mamba2Mixer({
 *   hiddenSize: 16, numHeads: 4, headDim: 8, nGroups: 2, stateSize: 8, convKernel: 4, chunkSize: 4, layerNormEpsilon: 1e-5,
 * });
 * const state = new SsmState<tf.Tensor4D>();
 * const prompt = tf.randomNormal([1, 6, 16]);
 * const y = mixer.forward(prompt, { state }); // [1, 6, 16]
 * const next = tf.randomNormal([1, 1, 16]);
 * const y1 = mixer.forward(next, { state }); // one recurrent step
 * console.log(y.shape, y1.shape, state.ssm?.shape); // [1, 6, 16] [1, 1, 16] [1, 4, 8, 8]
 * tf.dispose([prompt, y, next, y1]);
 * state.dispose();
 * mixer.dispose();
 * ```
 */
export class Mamba2Mixer extends Module {
  /** The configuration (frozen). */
  readonly config: Readonly<Mamba2MixerConfig>;
  /** `in_proj`. */
  readonly inProj: Projection;
  /** `conv1d`, over the I + 2GN features of x, B and C. */
  readonly conv1d: CausalConv1d;
  /** `dt_bias`, `[H]`. */
  readonly dtBias: tf.Variable;
  /** `A_log`, `[H]`: `A = −exp(A_log)`. */
  readonly ALog: tf.Variable;
  /** `D`, `[H]`: the skip connection. */
  readonly D: tf.Variable;
  /** `norm`: the RMSNorm of the gated output over all I features. */
  readonly norm: RMSNorm;
  /** `out_proj`. */
  readonly outProj: Projection;

  /**
   * @param config - the shape; see {@link Mamba2MixerConfig}.
   * @param parts - projections to use instead of new `Linear`s.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the first invalid field or mis-sized part.
   */
  constructor(config: Mamba2MixerConfig, parts: Partial<Mamba2MixerParts> = {}) {
    super();
    checkConfig(config);
    this.config = Object.freeze({ ...config });
    const { hiddenSize, numHeads: H, headDim: P, nGroups: G, stateSize: N, convKernel: K } = config;
    const I = H * P;
    const convDim = I + 2 * G * N;
    const bias = config.useBias ?? false;
    const inProj = parts.inProj ?? new Linear(hiddenSize, I + convDim + H, { bias });
    const outProj = parts.outProj ?? new Linear(I, hiddenSize, { bias });
    checkProjection('Mamba2Mixer', 'inProj', inProj, hiddenSize, I + convDim + H);
    checkProjection('Mamba2Mixer', 'outProj', outProj, I, hiddenSize);
    this.inProj = this.registerModule('in_proj', inProj);
    this.conv1d = this.registerModule('conv1d', new CausalConv1d(convDim, K, { bias: config.useConvBias ?? true }));
    // transformers' initialisation: dt_bias = 1, A = −(1 … H), D = 1, norm weight = 1.
    this.dtBias = this.registerParameter('dt_bias', tf.ones([H]));
    this.ALog = this.registerParameter('A_log', tf.tidy(() => tf.log(tf.range(1, H + 1, 1, 'float32'))));
    this.D = this.registerParameter('D', tf.ones([H]));
    this.norm = this.registerModule('norm', new RMSNorm(I, { eps: config.layerNormEpsilon }));
    this.outProj = this.registerModule('out_proj', outProj);
  }

  /**
   * Mixes `x` over time.
   *
   * @param x - float32 `[B, L, hidden]`.
   * @param options - the state to continue from and update, a padding mask, the scan implementation.
   * @returns float32 `[B, L, hidden]`; the caller owns it.
   * @throws {@link @slmkit/core!ShapeError | ShapeError} for a wrong input shape or a state of another batch size or mixer.
   */
  forward(x: tf.Tensor, options: Mamba2MixerForwardOptions = {}): tf.Tensor3D {
    const { hiddenSize, numHeads: H, headDim: P, nGroups: G, stateSize: N, convKernel: K } = this.config;
    const I = H * P;
    const GN = G * N;
    const convDim = I + 2 * GN;
    const { batch: Bt, length: L } = checkMixerCall('Mamba2Mixer', x, hiddenSize, options, [K - 1, convDim], [H, P, N]);
    const { state, attentionMask, implementation } = options;
    const result = tf.tidy(() => {
      const mask = attentionMask == null ? null : tf.expandDims(tf.cast(attentionMask, 'float32'), 2); // [B, L, 1]
      const projected = this.inProj.forward(mask == null ? x : tf.mul(x, mask)); // [B, L, I + convDim + H]
      const z = tf.reshape(tf.slice(projected, [0, 0, 0], [Bt, L, I]), [Bt, L, H, P]); // [B, L, H, P]
      const xBCin = tf.slice(projected, [0, 0, I], [Bt, L, convDim]); // [B, L, I + 2GN]
      const dt = tf.slice(projected, [0, 0, I + convDim], [Bt, L, H]); // [B, L, H]
      const conv = this.conv1d.forward(xBCin, state?.conv); // y [B, L, I + 2GN], past [B, K − 1, I + 2GN]
      let xBC = tf.mul(conv.y, tf.sigmoid(conv.y)); // silu, [B, L, I + 2GN]
      if (mask != null) xBC = tf.mul(xBC, mask);
      const xs = tf.reshape(tf.slice(xBC, [0, 0, 0], [Bt, L, I]), [Bt, L, H, P]); // [B, L, H, P]
      const B = tf.reshape(tf.slice(xBC, [0, 0, I], [Bt, L, GN]), [Bt, L, G, N]); // [B, L, G, N]
      const C = tf.reshape(tf.slice(xBC, [0, 0, I + GN], [Bt, L, GN]), [Bt, L, G, N]); // [B, L, G, N]
      const A = tf.neg(tf.exp(this.ALog)); // [H]
      const { y, finalState } = ssdScan(xs, dt, A, B, C, {
        D: this.D,
        z,
        dtBias: this.dtBias,
        dtSoftplus: true,
        dtLimit: this.config.dtLimit,
        chunkSize: this.config.chunkSize,
        initialState: state?.ssm,
        returnFinalState: true,
        implementation,
      }); // y [B, L, H, P] (gated by silu(z)), finalState [B, H, P, N]
      const normed = this.norm.forward(tf.reshape(y, [Bt, L, I])); // [B, L, I]
      const out = this.outProj.forward(normed) as tf.Tensor3D; // [B, L, hidden]
      return { out, past: conv.past, finalState };
    });
    if (state != null) state.set(result.past, result.finalState, state.length + L);
    else tf.dispose([result.past, result.finalState]);
    return result.out;
  }

  /** A new, empty {@link SsmState} for this mixer. The caller owns it. */
  createState(): SsmState<tf.Tensor4D> {
    return new SsmState<tf.Tensor4D>();
  }
}
