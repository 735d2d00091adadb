/**
 * `HybridLayer`: one pre-norm layer of a hybrid stack (an attention or Mamba mixer, then a dense or sparse
 * feed-forward), and the context a model passes to every layer of one forward call.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Attention, type AttentionImplementation, type SharedKV } from '@slmkit/attention';
import { ConfigError, GatedMLP, Linear, Module, RMSNorm, type RotaryEmbedding } from '@slmkit/core';
import { SparseMoE, TopKRouter } from '@slmkit/moe';
import { MambaMixer, type SelectiveScanOptions } from '@slmkit/ssm';
import type { HybridLayerState } from './cache.js';
import type { HybridSpec, LayerSpec } from './spec.js';
import { ZambaMambaMixer } from './zamba-mixer.js';

/**
 * What a model passes to each layer of one forward call.
 *
 * @example
 * ```ts
 * import type { LayerContext } from '@slmkit/hybrid';
 * const ctx: LayerContext = { offset: 0, kv: [] };
 * ```
 */
export interface LayerContext {
  /** The absolute position of the first new token (the cache's length before this call, meta tokens included). */
  offset: number;
  /** This layer's decoding state, when the call has a cache. */
  state?: HybridLayerState;
  /** cos/sin tables for the new positions, shared by every layer (absent without rotary). */
  rotaryTables?: { cos: tf.Tensor; sin: tf.Tensor };
  /** `[B, S_total]` padding mask over every position so far (1 real, 0 padding). */
  attentionMask?: tf.Tensor2D;
  /**
   * The keys and values each attention layer attended over in this call, by layer index: producers write theirs,
   * consumers (`LayerSpec.kvFrom`) read them. The model disposes them after the call.
   */
  kv: (SharedKV | undefined)[];
  /** The layers whose keys and values some later layer reads (only they write to {@link LayerContext.kv}). */
  kvProducers?: ReadonlySet<number>;
  /** The embeddings of the new tokens, `[B, T, D]` (Zamba's shared block reads them). */
  embeddings?: tf.Tensor3D;
  /** The attention kernel. */
  attentionImplementation?: AttentionImplementation;
  /** The selective scan's implementation. */
  scanImplementation?: SelectiveScanOptions['implementation'];
}

/**
 * A mixer a {@link HybridLayer} does not build itself (Hymba's block, say): maps the layer's normalised input to
 * the mixer's output, given the call's context.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Module } from '@slmkit/core';
 * import type { HybridMixer, LayerContext } from '@slmkit/hybrid';
 * class Identity extends Module implements HybridMixer {
 *   forward(x: tf.Tensor3D, _ctx: LayerContext, _layerIndex: number): tf.Tensor3D {
 *     return x.clone();
 *   }
 * }
 * ```
 */
export interface HybridMixer extends Module {
  /** `[B, T, D]` to `[B, T, D]`; the caller owns the result. */
  forward(x: tf.Tensor3D, ctx: LayerContext, layerIndex: number): tf.Tensor3D;
}

/**
 * Builds the gated MLP of a `dense` layer (`gate_proj`, `up_proj`, `down_proj`).
 *
 * @example
 * ```ts
 * import { buildDenseMLP } from '@slmkit/hybrid';
 * const mlp = buildDenseMLP(16, { intermediateSize: 32 });
 * console.log(mlp.namedParameters().map(([n]) => n)); // ["gate_proj.weight", "up_proj.weight", "down_proj.weight"]
 * mlp.dispose();
 * ```
 */
export function buildDenseMLP(hiddenSize: number, mlp: NonNullable<HybridSpec['mlp']>, intermediateSize = mlp.intermediateSize): GatedMLP {
  return GatedMLP.create(hiddenSize, intermediateSize, { activation: mlp.activation ?? 'silu', bias: false });
}

/**
 * Builds the sparse mixture of experts of a `moe` layer: a softmax top-k router (`router`, Jamba's name) over
 * `numExperts` gated MLPs (`experts.<e>`).
 *
 * @example
 * ```ts
 * import { buildMoE } from '@slmkit/hybrid';
 * const moe = buildMoE(16, { numExperts: 4, topK: 2, normalize: false }, { intermediateSize: 32 });
 * console.log(moe.namedParameters().length); // 13
 * moe.dispose();
 * ```
 */
export function buildMoE(hiddenSize: number, moe: NonNullable<HybridSpec['moe']>, mlp?: HybridSpec['mlp']): SparseMoE {
  const width = moe.intermediateSize ?? mlp!.intermediateSize;
  const experts = Array.from({ length: moe.numExperts }, () =>
    GatedMLP.create(hiddenSize, width, { activation: mlp?.activation ?? 'silu', bias: false }),
  );
  const router = new TopKRouter(hiddenSize, moe.numExperts, { topK: moe.topK, normalize: moe.normalize });
  return new SparseMoE(router, experts, { names: { router: 'router' } });
}

/** The attention block of an `attention` or `sliding-attention` layer: own keys and values, or a producer's. */
function buildAttention(spec: HybridSpec, layer: LayerSpec, rotary: RotaryEmbedding | undefined): Attention {
  const a = spec.attention!;
  const D = spec.hiddenSize;
  const bias = a.bias ?? false;
  const Dv = a.valueHeadDim ?? a.headDim;
  return new Attention(
    {
      hiddenSize: D,
      numHeads: a.numHeads,
      numKVHeads: a.numKVHeads,
      headDim: a.headDim,
      valueHeadDim: Dv,
      slidingWindow: layer.mixer === 'sliding-attention' ? a.slidingWindow! : null,
      prefixLength: spec.metaTokens ?? 0,
    },
    {
      qProj: new Linear(D, a.numHeads * a.headDim, { bias }),
      // A consumer (kvFrom) has no key/value projections: it attends over its producer's.
      ...(layer.kvFrom != null
        ? {}
        : { kProj: new Linear(D, a.numKVHeads * a.headDim, { bias }), vProj: new Linear(D, a.numKVHeads * Dv, { bias }) }),
      oProj: new Linear(a.numHeads * Dv, D, { bias }),
      rotary,
    },
  );
}

/** The Mamba-1 mixer of a `mamba` layer: Zamba's multi-head layout when `mamba.numHeads` is set. */
function buildMamba(spec: HybridSpec): MambaMixer | ZambaMambaMixer {
  const m = spec.mamba!;
  if (m.numHeads != null) {
    return new ZambaMambaMixer({
      hiddenSize: spec.hiddenSize,
      intermediateSize: m.intermediateSize,
      numHeads: m.numHeads,
      stateSize: m.stateSize,
      convKernel: m.convKernel,
      timeStepRank: m.timeStepRank,
      useBias: m.projBias ?? false,
      useConvBias: m.convBias ?? true,
    });
  }
  return new MambaMixer({
    hiddenSize: spec.hiddenSize,
    intermediateSize: m.intermediateSize,
    stateSize: m.stateSize,
    convKernel: m.convKernel,
    timeStepRank: m.timeStepRank,
    useBias: m.projBias ?? false,
    useConvBias: m.convBias ?? true,
    dtBCNorm: m.dtBCNorm ?? undefined,
  });
}

/**
 * The Hugging Face names of a {@link HybridLayer}'s parts (Jamba's by default).
 *
 * @example
 * ```ts
 * import type { HybridLayerNames } from '@slmkit/hybrid';
 * const hymba: Partial<HybridLayerNames> = { mamba: 'mamba', feedForwardNorm: 'pre_moe_layernorm', feedForward: 'moe' };
 * ```
 */
export interface HybridLayerNames {
  /** The norm before the mixer (`input_layernorm`). */
  inputNorm: string;
  /** An attention mixer (`self_attn`). */
  attention: string;
  /** A Mamba (or Hymba) mixer (`mamba`). */
  mamba: string;
  /** The norm before the feed-forward (`pre_ff_layernorm`). */
  feedForwardNorm: string;
  /** The feed-forward (`feed_forward`). */
  feedForward: string;
}

const JAMBA_NAMES: Readonly<HybridLayerNames> = Object.freeze({
  inputNorm: 'input_layernorm',
  attention: 'self_attn',
  mamba: 'mamba',
  feedForwardNorm: 'pre_ff_layernorm',
  feedForward: 'feed_forward',
});

/**
 * One layer of a hybrid stack, pre-norm, as Jamba's decoder layers are:
 *
 * ```text
 * h = x + mixer(RMSNorm(x))          mixer: attention (own or shared KV) | Mamba | a custom mixer (Hymba)
 * y = h + feedForward(RMSNorm(h))    feedForward: gated MLP | sparse MoE; absent for "none" (y = h)
 * ```
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { HybridLayer, type HybridSpec } from '@slmkit/hybrid';
 * const spec: HybridSpec = {
 *   vocabSize: 32, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
 *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2 },
 *   mlp: { intermediateSize: 32 },
 *   layers: [{ mixer: 'mamba', feedForward: 'dense' }],
 * };
 * const layer = new HybridLayer(spec, 0);
 * const x = tf.randomNormal([1, 5, 16]) as tf.Tensor3D;
 * const y = layer.forward(x, { offset: 0, kv: [] }); // [1, 5, 16]
 * console.log(y.shape);
 * tf.dispose([x, y]);
 * layer.dispose();
 * ```
 */
export class HybridLayer extends Module {
  /** Which layer of the stack this is. */
  readonly layerIndex: number;
  /** The layer's entry of the spec. */
  readonly spec: Readonly<LayerSpec>;
  /** The norm before the mixer. */
  readonly inputNorm: RMSNorm;
  /** The mixer. */
  readonly mixer: Attention | MambaMixer | ZambaMambaMixer | HybridMixer;
  /** The norm before the feed-forward; undefined for `none`. */
  readonly feedForwardNorm: RMSNorm | undefined;
  /** The feed-forward; undefined for `none`. */
  readonly feedForward: GatedMLP | SparseMoE | Module | undefined;

  /**
   * @param spec - the whole stack's spec, validated by the caller (see `validateHybridSpec`).
   * @param layerIndex - which layer to build.
   * @param parts - the shared rotary embedding, a custom mixer (for kinds this class does not build itself, such
   *   as `hymba`), a custom feed-forward, and names where they differ from Jamba's.
   */
  constructor(
    spec: HybridSpec,
    layerIndex: number,
    parts: { rotary?: RotaryEmbedding; mixer?: HybridMixer; feedForward?: Module; names?: Partial<HybridLayerNames> } = {},
  ) {
    super();
    const layer = spec.layers[layerIndex];
    const names = { ...JAMBA_NAMES, ...parts.names };
    this.layerIndex = layerIndex;
    this.spec = Object.freeze({ ...layer });
    this.inputNorm = this.registerModule(names.inputNorm, new RMSNorm(spec.hiddenSize, { eps: spec.normEps }));
    let mixer: Attention | MambaMixer | ZambaMambaMixer | HybridMixer;
    if (parts.mixer != null) mixer = parts.mixer;
    else if (layer.mixer === 'mamba') mixer = buildMamba(spec);
    else if (layer.mixer === 'attention' || layer.mixer === 'sliding-attention') mixer = buildAttention(spec, layer, parts.rotary);
    else {
      throw new ConfigError(`HybridLayer ${layerIndex}: a "${layer.mixer}" mixer must be passed in (parts.mixer)`, {
        field: `layers[${layerIndex}].mixer`,
        expected: '"attention" | "sliding-attention" | "mamba", or parts.mixer',
        found: layer.mixer,
      });
    }
    this.mixer = this.registerModule(layer.mixer === 'mamba' || layer.mixer === 'hymba' ? names.mamba : names.attention, mixer);
    if (layer.feedForward === 'none') {
      this.feedForwardNorm = undefined;
      this.feedForward = undefined;
    } else {
      this.feedForwardNorm = this.registerModule(names.feedForwardNorm, new RMSNorm(spec.hiddenSize, { eps: spec.normEps }));
      const ff =
        parts.feedForward ??
        (layer.feedForward === 'moe' ? buildMoE(spec.hiddenSize, spec.moe!, spec.mlp) : buildDenseMLP(spec.hiddenSize, spec.mlp!));
      this.feedForward = this.registerModule(names.feedForward, ff);
    }
  }

  /**
   * @param x - float32 `[B, T, D]`.
   * @param ctx - the call's context (see {@link LayerContext}).
   * @param inputAddend - `[B, T, D]` added to `x` before the input norm but not to the residual (a Zamba hybrid
   *   layer adds its shared block's output there): `h = x + mixer(RMSNorm(x + inputAddend))`.
   * @returns `[B, T, D]`; the caller owns it.
   */
  forward(x: tf.Tensor3D, ctx: LayerContext, inputAddend?: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const mixerInput = inputAddend == null ? x : tf.add(x, inputAddend); // [B, T, D]
      const h = tf.add(x, this.mix(this.inputNorm.forward(mixerInput) as tf.Tensor3D, ctx)) as tf.Tensor3D; // [B, T, D]
      if (this.feedForward == null) return h;
      const ff = this.feedForward as Module & { forward(x: tf.Tensor): tf.Tensor };
      return tf.add(h, ff.forward(this.feedForwardNorm!.forward(h))) as tf.Tensor3D; // [B, T, D]
    });
  }

  /** The mixer on the normalised input `[B, T, D]`. */
  private mix(x: tf.Tensor3D, ctx: LayerContext): tf.Tensor3D {
    const mixer = this.mixer;
    if (mixer instanceof MambaMixer || mixer instanceof ZambaMambaMixer) {
      const [B, T] = x.shape;
      const mask = ctx.attentionMask;
      return mixer.forward(x, {
        state: ctx.state?.ssm,
        attentionMask: mask == null ? undefined : tf.slice(mask, [0, mask.shape[1] - T], [B, T]), // the new tokens' columns
        implementation: ctx.scanImplementation,
      });
    }
    if (mixer instanceof Attention) {
      const call = { rotaryTables: ctx.rotaryTables, attentionMask: ctx.attentionMask, implementation: ctx.attentionImplementation };
      const from = this.spec.kvFrom;
      if (from != null) {
        const sharedKV = ctx.kv[from];
        if (sharedKV == null) {
          throw new ConfigError(`HybridLayer ${this.layerIndex}: layer ${from} produced no keys and values in this call`, {
            field: `layers[${this.layerIndex}].kvFrom`,
            expected: `layer ${from} to run first`,
            found: 'nothing',
          });
        }
        return mixer.forward(x, { ...call, sharedKV });
      }
      if (ctx.kvProducers?.has(this.layerIndex) !== true) return mixer.forward(x, { ...call, cache: ctx.state?.attention });
      const { output, kv } = mixer.forwardWithKV(x, { ...call, cache: ctx.state?.attention });
      // Kept past this layer's tidy for the consumers; the model disposes them after the call.
      tf.keep(kv.keys);
      tf.keep(kv.values);
      ctx.kv[this.layerIndex] = kv;
      return output;
    }
    return mixer.forward(x, ctx, this.layerIndex);
  }
}
