/**
 * Zamba's hybrid layer: a shared attention + MLP block (one set of parameters for the whole stack) applied before
 * a Mamba layer, with a per-layer linear map back into the residual stream.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Attention, type AttentionCache, type AttentionImplementation } from '@slmkit/attention';
import { ConfigError, GatedMLP, Linear, Module, RMSNorm } from '@slmkit/core';
import { HybridLayer, buildDenseMLP, type LayerContext } from './layer.js';
import type { HybridSpec, SharedBlockSpec } from './spec.js';

/**
 * Per-call options of {@link ZambaSharedBlock.forward}.
 *
 * @example
 * ```ts
 * import { KVCache } from '@slmkit/attention';
 * import type { ZambaSharedBlockCall } from '@slmkit/hybrid';
 * const call: ZambaSharedBlockCall = { cache: new KVCache(), implementation: 'naive' };
 * call.cache?.dispose();
 * ```
 */
export interface ZambaSharedBlockCall {
  /** The using layer's own KV cache for this block. */
  cache?: AttentionCache;
  /** `[B, S_total]` padding mask over every position so far (1 real, 0 padding). */
  attentionMask?: tf.Tensor2D;
  /** The attention kernel. */
  implementation?: AttentionImplementation;
}

/**
 * Zamba's shared transformer block (`shared_transf`), as `transformers`' `ZambaAttentionDecoderLayer` computes it,
 * for the hidden state `h` and the token embeddings `e` of the same positions, both `[B, T, D]`:
 *
 * ```text
 * a   = self_attn(input_layernorm([h ; e]))     attention over the 2·D-wide concatenation, no positional encoding,
 *                                               scores scaled by (headDim / 2)^−½, output D wide
 * out = feed_forward(pre_ff_layernorm(a))       gated MLP: down(act(gate(a)) · up(a))
 * ```
 *
 * There is no residual inside the block: each using layer maps `out` through its own `linear` and adds it to its
 * Mamba layer's input (see {@link ZambaHybridLayer}). One instance serves every hybrid layer; each passes its own
 * KV cache.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { ZambaSharedBlock } from '@slmkit/hybrid';
 * const block = new ZambaSharedBlock(16, { numHeads: 4, numKVHeads: 4, headDim: 8 }, { intermediateSize: 24, activation: 'gelu' }, 1e-5);
 * const h = tf.randomNormal([1, 3, 16]) as tf.Tensor3D;
 * const e = tf.randomNormal([1, 3, 16]) as tf.Tensor3D;
 * const out = block.forward(h, e); // [1, 3, 16]
 * console.log(out.shape, block.namedParameters().length); // [1, 3, 16] 9
 * tf.dispose([h, e, out]);
 * block.dispose();
 * ```
 */
export class ZambaSharedBlock extends Module {
  /** `input_layernorm`, over `2·D`. */
  readonly inputNorm: RMSNorm;
  /** `self_attn`: `2·D` in, `D` out. */
  readonly selfAttn: Attention;
  /** `pre_ff_layernorm`, over `D`. */
  readonly feedForwardNorm: RMSNorm;
  /** `feed_forward`. */
  readonly feedForward: GatedMLP;

  /**
   * @param hiddenSize - `D`.
   * @param block - the attention's heads and head dim.
   * @param mlp - the MLP's width and activation.
   * @param normEps - ε of both RMSNorms.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} for sizes the attention or MLP reject.
   */
  constructor(hiddenSize: number, block: SharedBlockSpec, mlp: NonNullable<HybridSpec['mlp']>, normEps: number) {
    super();
    const D = hiddenSize;
    const { numHeads: H, numKVHeads: KV, headDim: Dh } = block;
    this.inputNorm = this.registerModule('input_layernorm', new RMSNorm(2 * D, { eps: normEps }));
    this.selfAttn = this.registerModule(
      'self_attn',
      new Attention(
        // Zamba scales by (headDim / 2)^−½: the head dim of a block twice the model's width, as if it were D's.
        { hiddenSize: 2 * D, outputSize: D, numHeads: H, numKVHeads: KV, headDim: Dh, scale: 1 / Math.sqrt(Dh / 2) },
        {
          qProj: new Linear(2 * D, H * Dh, { bias: false }),
          kProj: new Linear(2 * D, KV * Dh, { bias: false }),
          vProj: new Linear(2 * D, KV * Dh, { bias: false }),
          oProj: new Linear(H * Dh, D, { bias: false }),
        },
      ),
    );
    this.feedForwardNorm = this.registerModule('pre_ff_layernorm', new RMSNorm(D, { eps: normEps }));
    this.feedForward = this.registerModule('feed_forward', buildDenseMLP(D, mlp));
  }

  /**
   * @param hidden - the hidden state entering the using layer, float32 `[B, T, D]`.
   * @param embeddings - the token embeddings of the same positions, `[B, T, D]`.
   * @param call - the using layer's KV cache, a padding mask, the attention kernel.
   * @returns `[B, T, D]`; the caller owns it.
   */
  forward(hidden: tf.Tensor3D, embeddings: tf.Tensor3D, call: ZambaSharedBlockCall = {}): tf.Tensor3D {
    return tf.tidy(() => {
      const joined = this.inputNorm.forward(tf.concat([hidden, embeddings], 2)) as tf.Tensor3D; // [B, T, 2D]
      const attended = this.selfAttn.forward(joined, call); // [B, T, D]
      return this.feedForward.forward(this.feedForwardNorm.forward(attended)) as tf.Tensor3D; // [B, T, D]
    });
  }
}

/**
 * A Zamba hybrid layer (`transformers`' `ZambaHybridLayer`): the shared block `shared_transf`, a per-layer
 * `linear`, and a Mamba layer `mamba_decoder` (`input_layernorm` + `mamba`). For the hidden state `x` and the token
 * embeddings `e`:
 *
 * ```text
 * t = linear(shared_transf(x, e))               the shared block, this layer's KV cache
 * y = x + mamba(input_layernorm(x + t))         t enters the Mamba layer's input, not the residual stream
 * ```
 *
 * The shared block is passed in, the same instance for every hybrid layer of a stack: its variables exist once
 * and are reachable (and loadable) under every using layer's `shared_transf.*` names.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { ZambaHybridLayer, ZambaSharedBlock, type HybridSpec } from '@slmkit/hybrid';
 * const spec: HybridSpec = {
 *   vocabSize: 32, hiddenSize: 16, normEps: 1e-5, tieWordEmbeddings: true,
 *   mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2, numHeads: 2 },
 *   mlp: { intermediateSize: 24, activation: 'gelu' },
 *   sharedBlocks: [{ numHeads: 4, numKVHeads: 4, headDim: 8 }],
 *   layers: [{ mixer: 'mamba', feedForward: 'none', sharedBlock: 0 }],
 * };
 * const shared = new ZambaSharedBlock(16, spec.sharedBlocks![0], spec.mlp!, spec.normEps);
 * const layer = new ZambaHybridLayer(spec, 0, shared);
 * const x = tf.randomNormal([1, 3, 16]) as tf.Tensor3D;
 * const y = layer.forward(x, { offset: 0, kv: [], embeddings: x }); // [1, 3, 16]
 * console.log(y.shape);
 * tf.dispose([x, y]);
 * layer.dispose();
 * ```
 */
export class ZambaHybridLayer extends Module {
  /** Which layer of the stack this is. */
  readonly layerIndex: number;
  /** `shared_transf`: the stack's shared block. */
  readonly sharedBlock: ZambaSharedBlock;
  /** `linear`: this layer's map of the shared block's output. */
  readonly linear: Linear;
  /** `mamba_decoder`: the Mamba layer. */
  readonly mambaDecoder: HybridLayer;

  /**
   * @param spec - the whole stack's spec, validated by the caller.
   * @param layerIndex - which layer to build (its `sharedBlock` is set).
   * @param sharedBlock - the shared block, the same instance for every layer that uses it.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} when the layer uses no shared block or the block is not a
   *   {@link ZambaSharedBlock}.
   */
  constructor(spec: HybridSpec, layerIndex: number, sharedBlock: ZambaSharedBlock) {
    super();
    const layer = spec.layers[layerIndex];
    if (layer?.sharedBlock == null) {
      throw new ConfigError(`ZambaHybridLayer: layers[${layerIndex}] has no sharedBlock`, {
        field: `layers[${layerIndex}].sharedBlock`,
        expected: 'an index into sharedBlocks',
        found: layer?.sharedBlock,
      });
    }
    if (!(sharedBlock instanceof ZambaSharedBlock)) {
      throw new ConfigError('ZambaHybridLayer: sharedBlock must be a ZambaSharedBlock', { field: 'sharedBlock', expected: 'ZambaSharedBlock', found: typeof sharedBlock });
    }
    this.layerIndex = layerIndex;
    this.sharedBlock = this.registerModule('shared_transf', sharedBlock);
    this.linear = this.registerModule('linear', new Linear(spec.hiddenSize, spec.hiddenSize, { bias: false }));
    this.mambaDecoder = this.registerModule('mamba_decoder', new HybridLayer(spec, layerIndex));
  }

  /**
   * @param x - float32 `[B, T, D]`.
   * @param ctx - the call's context; needs `embeddings`, and uses `state.shared` (the shared block's KV cache for
   *   this layer) and `state.ssm`.
   * @returns `[B, T, D]`; the caller owns it.
   * @throws {@link @slmkit/core!ConfigError | ConfigError} when `ctx.embeddings` is missing.
   */
  forward(x: tf.Tensor3D, ctx: LayerContext): tf.Tensor3D {
    if (ctx.embeddings == null) {
      throw new ConfigError(`ZambaHybridLayer ${this.layerIndex}: the call's embeddings are needed (ctx.embeddings)`, {
        field: 'embeddings',
        expected: '[B, T, D] token embeddings',
        found: undefined,
      });
    }
    const embeddings = ctx.embeddings;
    return tf.tidy(() => {
      const shared = this.sharedBlock.forward(x, embeddings, {
        cache: ctx.state?.shared,
        attentionMask: ctx.attentionMask,
        implementation: ctx.attentionImplementation,
      }); // [B, T, D]
      return this.mambaDecoder.forward(x, ctx, this.linear.forward(shared) as tf.Tensor3D); // [B, T, D]
    });
  }
}
