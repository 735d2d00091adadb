/**
 * Hymba's parallel block (Dong et al. 2024, "Hymba: A Hybrid-head Architecture for Small Language Models", arXiv
 * 2411.13676): attention heads and SSM heads side by side off one input projection, with the names of NVIDIA's
 * checkpoint (`nvidia/Hymba-1.5B-Base`).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { CHUNKED_THRESHOLD, chunkedAttention, naiveAttention, type AttentionKernelOptions, type SharedKV } from '@slmkit/attention';
import { ConfigError, GatedMLP, Linear, Module, RMSNorm, type RotaryEmbedding } from '@slmkit/core';
import { CausalConv1d, selectiveScan } from '@slmkit/ssm';
import type { HybridLayerNames, HybridMixer, LayerContext } from './layer.js';
import type { HybridSpec } from './spec.js';

/**
 * The names a Hymba layer gives its parts in NVIDIA's checkpoint: the block under `mamba`, the feed-forward norm
 * `pre_moe_layernorm` and the feed-forward under `moe` (a one-expert mixture, `moe.experts.0.*`).
 *
 * @example
 * ```ts
 * import { HYMBA_LAYER_NAMES } from '@slmkit/hybrid';
 * console.log(HYMBA_LAYER_NAMES.feedForward); // "moe"
 * ```
 */
export const HYMBA_LAYER_NAMES: Readonly<Partial<HybridLayerNames>> = Object.freeze({
  mamba: 'mamba',
  feedForwardNorm: 'pre_moe_layernorm',
  feedForward: 'moe',
});

/** A list with one entry, registered as `0` (PyTorch's ModuleList / ParameterList naming). */
class OneModuleList<M extends Module> extends Module {
  readonly item: M;

  constructor(item: M) {
    super();
    this.item = this.registerModule('0', item);
  }
}

/** A ParameterList with one entry, `0`. */
class OneParameterList extends Module {
  readonly value: tf.Variable;

  constructor(value: tf.Tensor) {
    super();
    this.value = this.registerParameter('0', value);
  }
}

/**
 * Hymba's feed-forward with `num_experts = 1`: a plain gated MLP (`down(silu(gate(x)) ⊙ up(x))`) stored as the
 * single expert of a mixture, `experts.0.{gate,up,down}_proj`. No router: one expert takes every token.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { HymbaFeedForward } from '@slmkit/hybrid';
 * const ff = new HymbaFeedForward(16, 32);
 * console.log(ff.namedParameters().map(([n]) => n)); // ["experts.0.gate_proj.weight", "experts.0.up_proj.weight", "experts.0.down_proj.weight"]
 * const x = tf.randomNormal([1, 3, 16]);
 * const y = ff.forward(x); // [1, 3, 16]
 * tf.dispose([x, y]);
 * ff.dispose();
 * ```
 */
export class HymbaFeedForward extends Module {
  /** The one expert, `experts.0`. */
  readonly expert: GatedMLP;

  /**
   * @param hiddenSize - the model width.
   * @param intermediateSize - the MLP's inner width (`intermediate_size`).
   * @param activation - the gate's activation (default `silu`).
   */
  constructor(hiddenSize: number, intermediateSize: number, activation: 'silu' | 'gelu' | 'gelu_tanh' | 'relu' = 'silu') {
    super();
    this.expert = this.registerModule('experts', new OneModuleList(GatedMLP.create(hiddenSize, intermediateSize, { activation, bias: false }))).item;
  }

  /** `[..., D]` to `[..., D]`; the caller owns the result. */
  forward(x: tf.Tensor): tf.Tensor {
    return this.expert.forward(x);
  }
}

/**
 * Which sliding-window rule a windowed Hymba layer applies when it continues a cache (decoding).
 *
 * - `consistent` (default): the rule of the full forward and the prefill, `q − k ≤ W` (W + 1 positions) or `k < M`,
 *   so cached decoding equals a full forward over the same tokens, as the model was trained.
 * - `reference`: NVIDIA's decode path, which cuts the cache to the M meta tokens and the last W − 1 entries before
 *   appending the new token: `q − k ≤ W − 1` (W positions) or `k < M`. It reproduces NVIDIA's generation exactly.
 *
 * @example
 * ```ts
 * import type { HymbaDecodeWindow } from '@slmkit/hybrid';
 * const asNvidia: HymbaDecodeWindow = 'reference';
 * ```
 */
export type HymbaDecodeWindow = 'consistent' | 'reference';

/**
 * Hymba's hybrid-head block, as NVIDIA's `HymbaBlock` computes it for `x` `[B, T, d]` (the layer's normalised
 * input):
 *
 * ```text
 * [q | k | v | u | z] = in_proj(x)            q: H·dh, k: Hkv·dh, v: Hkv·Dv (Dv = I/H), u, z: I each
 *                                             (a KV consumer has no k, v: [q | u | z])
 * attention: softmax(RoPE(q) RoPE(k)ᵀ / √dh) v   GQA; own K/V or the producer's (LayerSpec.kvFrom); width H·Dv = I
 * ssm:       u = silu(conv1d(u));  [dt | B | C] = x_proj.0(u);  dt, B, C = RMSNorm(dt), RMSNorm(B), RMSNorm(C)
 *            y = selectiveScan(u, softplus(dt_proj.0(dt)), −exp(A_log.0), B, C, D.0, gate z)
 * out = out_proj((pre_avg_layernorm1(attention) + pre_avg_layernorm2(ssm)) / 2)
 * ```
 *
 * The attention branch has no output projection of its own. Global layers attend causally over everything;
 * windowed layers (`LayerSpec.window`) let query `q` see key `k` iff `k ≤ q` and (`q − k ≤ W` or `k < M`), W being
 * `attention.slidingWindow` and M the spec's meta tokens: W + 1 positions plus the meta tokens, as NVIDIA's flex
 * attention mask does. When a call continues a cache, {@link HymbaDecodeWindow} says which rule applies
 * (`spec.hymbaDecodeWindow`).
 *
 * Parameter names are NVIDIA's: `in_proj`, `conv1d`, `x_proj.0`, `dt_proj.0`, `A_log.0`, `D.0`, `dt_layernorm`,
 * `B_layernorm`, `C_layernorm`, `pre_avg_layernorm1`, `pre_avg_layernorm2`, `out_proj`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { HymbaBlock, type HybridSpec } from '@slmkit/hybrid';
 * const spec: HybridSpec = {
 *   vocabSize: 32, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
 *   attention: { numHeads: 2, numKVHeads: 1, headDim: 8, valueHeadDim: 16, rotary: null, slidingWindow: 4 },
 *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2, dtBCNorm: { eps: 1e-6, weight: true } },
 *   mlp: { intermediateSize: 32 },
 *   layers: [{ mixer: 'hymba', feedForward: 'dense', window: true }],
 * };
 * const block = new HymbaBlock(spec, 0);
 * const x = tf.randomNormal([1, 5, 16]) as tf.Tensor3D;
 * const y = block.forward(x, { offset: 0, kv: [] }, 0); // [1, 5, 16]
 * console.log(y.shape, block.namedParameters().length); // [1, 5, 16] 14
 * tf.dispose([x, y]);
 * block.dispose();
 * ```
 */
export class HymbaBlock extends Module implements HybridMixer {
  /** Which layer of the stack this block belongs to. */
  readonly layerIndex: number;
  /** Query heads `H`. */
  readonly numHeads: number;
  /** Key/value heads `Hkv`. */
  readonly numKVHeads: number;
  /** Query/key head dim `dh`. */
  readonly headDim: number;
  /** Value head dim `Dv = I / H`. */
  readonly valueHeadDim: number;
  /** The SSM's inner width `I` (also the attention output's width). */
  readonly intermediateSize: number;
  /** The SSM state size `N`. */
  readonly stateSize: number;
  /** The rank `R` of dt. */
  readonly timeStepRank: number;
  /** The sliding window `W` of a windowed layer; null for a global one. */
  readonly window: number | null;
  /** Meta tokens `M` (always visible). */
  readonly metaTokens: number;
  /** The layer whose keys and values this one reads; undefined when it computes its own. */
  readonly kvFrom: number | undefined;
  /** The decode rule of a windowed layer. */
  readonly decodeWindow: HymbaDecodeWindow;
  /** `in_proj`: d → [q | k | v | u | z] (or [q | u | z] for a KV consumer). */
  readonly inProj: Linear;
  /** `conv1d`, depthwise over I channels. */
  readonly conv1d: CausalConv1d;
  /** `x_proj.0`: I → R + 2N. */
  readonly xProj: Linear;
  /** `dt_proj.0`: R → I, with the dt bias. */
  readonly dtProj: Linear;
  /** `A_log.0`, `[I, N]`. */
  readonly ALog: tf.Variable;
  /** `D.0`, `[I]`. */
  readonly D: tf.Variable;
  /** `dt_layernorm`, `B_layernorm`, `C_layernorm`, when configured. */
  readonly dtBCNorms: readonly [RMSNorm, RMSNorm, RMSNorm] | undefined;
  /** `pre_avg_layernorm1`: the attention branch's norm (its weight is the paper's β₁). */
  readonly attentionNorm: RMSNorm;
  /** `pre_avg_layernorm2`: the SSM branch's norm (β₂). */
  readonly ssmNorm: RMSNorm;
  /** `out_proj`: I → d. */
  readonly outProj: Linear;
  private readonly rotary: RotaryEmbedding | undefined;

  /**
   * @param spec - the whole stack's spec (validated by the caller, see `validateHybridSpec`); needs `attention`
   *   (with `valueHeadDim · numHeads = mamba.intermediateSize`) and `mamba`.
   * @param layerIndex - the layer this block is for (a `hymba` mixer).
   * @param parts - the stack's rotary embedding (RoPE on q and k), if any.
   * @throws `ConfigError` when the layer is not a `hymba` mixer or the widths disagree.
   */
  constructor(spec: HybridSpec, layerIndex: number, parts: { rotary?: RotaryEmbedding } = {}) {
    super();
    const layer = spec.layers[layerIndex];
    const a = spec.attention;
    const m = spec.mamba;
    if (layer?.mixer !== 'hymba' || a == null || m == null) {
      throw new ConfigError(`HymbaBlock: layers[${layerIndex}] must be a "hymba" mixer of a spec with attention and mamba sections`, {
        field: `layers[${layerIndex}].mixer`,
        expected: '"hymba" (with spec.attention and spec.mamba)',
        found: layer?.mixer,
      });
    }
    const d = spec.hiddenSize;
    const I = m.intermediateSize;
    const Dv = a.valueHeadDim ?? a.headDim;
    if (Dv * a.numHeads !== I) {
      throw new ConfigError(`HymbaBlock: attention.valueHeadDim · numHeads must equal mamba.intermediateSize = ${I}, found ${Dv} · ${a.numHeads}`, {
        field: 'attention.valueHeadDim',
        expected: I / a.numHeads,
        found: Dv,
      });
    }
    this.layerIndex = layerIndex;
    this.numHeads = a.numHeads;
    this.numKVHeads = a.numKVHeads;
    this.headDim = a.headDim;
    this.valueHeadDim = Dv;
    this.intermediateSize = I;
    this.stateSize = m.stateSize;
    this.timeStepRank = m.timeStepRank;
    this.window = layer.window === true ? a.slidingWindow! : null;
    this.metaTokens = spec.metaTokens ?? 0;
    this.kvFrom = layer.kvFrom;
    this.decodeWindow = spec.hymbaDecodeWindow ?? 'consistent';
    this.rotary = parts.rotary;
    const R = m.timeStepRank;
    const N = m.stateSize;
    const bias = m.projBias ?? false;
    const kvWidth = layer.kvFrom == null ? a.numKVHeads * (a.headDim + Dv) : 0;
    this.inProj = this.registerModule('in_proj', new Linear(d, a.numHeads * a.headDim + kvWidth + 2 * I, { bias }));
    this.conv1d = this.registerModule('conv1d', new CausalConv1d(I, m.convKernel, { bias: m.convBias ?? true }));
    this.xProj = this.registerModule('x_proj', new OneModuleList(new Linear(I, R + 2 * N, { bias: false }))).item;
    this.dtProj = this.registerModule('dt_proj', new OneModuleList(new Linear(R, I, { bias: true }))).item;
    // S4D-real initialisation, as Mamba's: A = −(1 … N) for every channel; D = 1.
    const aInit = tf.tidy(() => tf.log(tf.tile(tf.reshape(tf.range(1, N + 1, 1, 'float32'), [1, N]), [I, 1]))); // [I, N]
    this.ALog = this.registerModule('A_log', new OneParameterList(aInit)).value;
    this.D = this.registerModule('D', new OneParameterList(tf.ones([I]))).value;
    const norm = m.dtBCNorm;
    if (norm != null) {
      const make = (dim: number): RMSNorm => new RMSNorm(dim, { eps: norm.eps, elementwiseAffine: norm.weight });
      const norms = [make(R), make(N), make(N)] as const;
      if (norm.weight) {
        this.registerModule('dt_layernorm', norms[0]);
        this.registerModule('B_layernorm', norms[1]);
        this.registerModule('C_layernorm', norms[2]);
      }
      this.dtBCNorms = norms;
    } else {
      this.dtBCNorms = undefined;
    }
    this.attentionNorm = this.registerModule('pre_avg_layernorm1', new RMSNorm(I, { eps: spec.normEps }));
    this.ssmNorm = this.registerModule('pre_avg_layernorm2', new RMSNorm(I, { eps: spec.normEps }));
    this.outProj = this.registerModule('out_proj', new Linear(I, d, { bias }));
  }

  /**
   * The block on the layer's normalised input.
   *
   * @param x - float32 `[B, T, d]`.
   * @param ctx - the call's context: offset (meta tokens included), this layer's state (`attention` cache unless a
   *   KV consumer, `ssm` state), rotary tables, padding mask over every position, the shared K/V of producers.
   * @param layerIndex - ignored (the block knows its layer); part of {@link HybridMixer}.
   * @returns `[B, T, d]`; the caller owns it. A KV producer also leaves its keys and values in `ctx.kv`.
   * @throws `ConfigError` when a consumer's producer left no keys and values in `ctx.kv`.
   */
  forward(x: tf.Tensor3D, ctx: LayerContext, layerIndex: number = this.layerIndex): tf.Tensor3D {
    void layerIndex;
    const [B, T] = x.shape;
    const H = this.numHeads;
    const KV = this.numKVHeads;
    const dh = this.headDim;
    const Dv = this.valueHeadDim;
    const I = this.intermediateSize;
    const consumer = this.kvFrom != null;
    let shared: SharedKV | undefined;
    if (consumer) {
      shared = ctx.kv[this.kvFrom!];
      if (shared == null) {
        throw new ConfigError(`HymbaBlock ${this.layerIndex}: layer ${this.kvFrom} produced no keys and values in this call`, {
          field: `layers[${this.layerIndex}].kvFrom`,
          expected: `layer ${this.kvFrom} to run first`,
          found: 'nothing',
        });
      }
    }
    const state = ctx.state;
    const out = tf.tidy(() => {
      const projected = this.inProj.forward(x); // [B, T, H·dh (+ KV·dh + KV·Dv) + 2I]
      const widths = consumer ? [H * dh, I, I] : [H * dh, KV * dh, KV * Dv, I, I];
      const pieces = tf.split(projected, widths, 2);
      const q = pieces[0]; // [B, T, H·dh]
      const [u, z] = pieces.slice(-2); // [B, T, I] each
      const attention = this.attend(q, consumer ? undefined : [pieces[1], pieces[2]], shared, ctx, B, T); // [B, T, I]
      const ssm = this.scan(u, z, ctx, B, T); // [B, T, I]
      const mixed = tf.div(tf.add(this.attentionNorm.forward(attention), this.ssmNorm.forward(ssm.y)), 2); // [B, T, I]
      return { y: this.outProj.forward(mixed) as tf.Tensor3D, past: ssm.past, last: ssm.last }; // [B, T, d]
    });
    if (state?.ssm != null) state.ssm.set(out.past, out.last, state.ssm.length + T);
    else tf.dispose([out.past, out.last]);
    return out.y;
  }

  /** The attention branch: `[B, T, I]` (before its norm). */
  private attend(q: tf.Tensor, ownKV: [tf.Tensor, tf.Tensor] | undefined, shared: SharedKV | undefined, ctx: LayerContext, B: number, T: number): tf.Tensor {
    const H = this.numHeads;
    const KV = this.numKVHeads;
    const dh = this.headDim;
    const Dv = this.valueHeadDim;
    const offset = ctx.offset;
    const rope = (t: tf.Tensor4D): tf.Tensor4D => (this.rotary == null ? t : this.rotary.apply(t, ctx.rotaryTables ?? { offset, length: T }));
    const heads = (t: tf.Tensor, n: number, width: number): tf.Tensor4D => tf.transpose(tf.reshape(t, [B, T, n, width]), [0, 2, 1, 3]) as tf.Tensor4D; // [B, n, T, width]
    const qh = rope(heads(q, H, dh)); // [B, H, T, dh]
    const queryPositions = Array.from({ length: T }, (_, t) => offset + t);
    let kv: SharedKV;
    if (ownKV != null) {
      const kh = rope(heads(ownKV[0], KV, dh)); // [B, KV, T, dh]
      const vh = heads(ownKV[1], KV, Dv); // [B, KV, T, Dv]
      const cache = ctx.state?.attention;
      // With a cache: what it holds plus the new positions, keys [B, KV, S, dh] and values [B, KV, S, Dv].
      kv = cache != null ? cache.update(kh, vh) : { keys: kh, values: vh, keyPositions: queryPositions.slice() };
      if (ctx.kvProducers?.has(this.layerIndex) === true) {
        // Kept past this layer's tidy for the consumers; the model disposes them after the call.
        ctx.kv[this.layerIndex] = { keys: tf.keep(kv.keys), values: tf.keep(kv.values), keyPositions: kv.keyPositions.slice() };
      }
    } else {
      kv = shared!;
    }
    let keyMask: tf.Tensor2D | null = null;
    const mask = ctx.attentionMask;
    if (mask != null) {
      const m = tf.cast(mask, 'float32') as tf.Tensor2D; // [B, S_total]
      const contiguous = kv.keyPositions.length === m.shape[1] && kv.keyPositions.every((p, i) => p === i);
      keyMask = contiguous ? m : (tf.gather(m, tf.tensor1d(kv.keyPositions, 'int32'), 1) as tf.Tensor2D); // [B, S]
    }
    // Frames count the meta tokens. Full forward / prefill: q − k ≤ W (W + 1 positions), i.e. q − k < W + 1;
    // NVIDIA's cached decode: q − k ≤ W − 1 (W positions).
    let slidingWindow: number | null = null;
    if (this.window != null) slidingWindow = offset > 0 && this.decodeWindow === 'reference' ? this.window : this.window + 1;
    const options: AttentionKernelOptions = {
      scale: 1 / Math.sqrt(dh),
      rules: { causal: true, slidingWindow, prefixLength: this.metaTokens },
      queryPositions,
      keyPositions: kv.keyPositions,
      keyMask,
    };
    const S = kv.keyPositions.length;
    const implementation = ctx.attentionImplementation ?? 'auto';
    const chunked = implementation === 'chunked' || (implementation === 'auto' && T * S > CHUNKED_THRESHOLD);
    const o = chunked ? chunkedAttention(qh, kv.keys, kv.values, options) : naiveAttention(qh, kv.keys, kv.values, options); // [B, H, T, Dv]
    return tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B, T, H * Dv]); // [B, T, I]
  }

  /** The SSM branch: `y` `[B, T, I]` (before its norm), and the new conv and scan states. */
  private scan(u: tf.Tensor, z: tf.Tensor, ctx: LayerContext, B: number, T: number): { y: tf.Tensor; past: tf.Tensor3D; last: tf.Tensor3D } {
    const R = this.timeStepRank;
    const N = this.stateSize;
    const mask = ctx.attentionMask == null ? null : tf.expandDims(tf.cast(tf.slice(ctx.attentionMask, [0, ctx.attentionMask.shape[1] - T], [B, T]), 'float32'), 2); // [B, T, 1]
    if (mask != null) u = tf.mul(u, mask); // padding enters neither the convolution nor the scan
    const ssm = ctx.state?.ssm;
    const conv = this.conv1d.forward(u, ssm?.conv); // y [B, T, I], past [B, K − 1, I]
    let v = tf.mul(conv.y, tf.sigmoid(conv.y)); // silu, [B, T, I]
    if (mask != null) v = tf.mul(v, mask);
    const params = this.xProj.forward(v); // [B, T, R + 2N]
    let [dt, Bs, Cs] = tf.split(params, [R, N, N], 2); // [B, T, R], [B, T, N], [B, T, N]
    if (this.dtBCNorms != null) {
      dt = this.dtBCNorms[0].forward(dt);
      Bs = this.dtBCNorms[1].forward(Bs);
      Cs = this.dtBCNorms[2].forward(Cs);
    }
    const delta = this.dtProj.forward(dt); // [B, T, I], dt bias included
    const A = tf.neg(tf.exp(this.ALog)); // [I, N]
    const channels = (t: tf.Tensor): tf.Tensor => tf.transpose(t, [0, 2, 1]); // [B, T, ·] → [B, ·, T]
    const { y, lastState } = selectiveScan(channels(v), channels(delta), A, channels(Bs), channels(Cs), {
      D: this.D,
      z: channels(z),
      deltaSoftplus: true,
      initialState: ssm?.ssm,
      returnLastState: true,
      implementation: ctx.scanImplementation,
    }); // y [B, I, T], lastState [B, I, N]
    return { y: tf.transpose(y, [0, 2, 1]), past: conv.past, last: lastState }; // [B, T, I]
  }
}
