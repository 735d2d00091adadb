/**
 * A small decoder-only language model assembled by hand from slmkit blocks: token embeddings, a stack of
 * pre-norm decoder blocks (grouped-query `Attention` with rotary positions, optionally over a sliding window, and a
 * SwiGLU `GatedMLP`, each behind an `RMSNorm`), a final norm and an output head tied to the embeddings.
 *
 * Nothing here is a model "family": every part is an ordinary constructor argument, so swapping one (a LoRA
 * projection, another norm, a KV-sharing layer) is a one-line change.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Embedding, GatedMLP, Linear, Module, RMSNorm, RotaryEmbedding, type RotaryTables } from '@slmkit/core';
import { Attention, KVCache, SlidingWindowCache, type AttentionCache } from '@slmkit/attention';
import { ModuleList } from '@slmkit/models';

/** The shape of the model. Plain data, so it can be printed, saved or compared. */
export interface TinyDecoderConfig {
  vocabSize: number;
  hiddenSize: number;
  numHeads: number;
  /** Key/value heads: fewer than `numHeads` is grouped-query attention (each KV head serves a group of queries). */
  numKVHeads: number;
  headDim: number;
  intermediateSize: number;
  /** One entry per decoder block: `null` for full causal attention, or that block's sliding window. */
  slidingWindows: (number | null)[];
  ropeTheta: number;
  maxPositions: number;
  rmsNormEps: number;
  /**
   * Factor on the input embeddings. With untrained weights the token's own embedding (rms 1) outweighs what the
   * blocks add (rms about 0.3), and greedy decoding just repeats the last token; a small factor lets the blocks'
   * computation decide. Trained models learn their balance (Gemma multiplies by √D instead).
   */
  embeddingScale: number;
  /** Seed of every initial weight, so a run is the same on every backend. */
  seed: number;
}

/** A model small enough to run instantly anywhere, with a windowed second block (window 8). */
export const TINY_CONFIG: TinyDecoderConfig = {
  vocabSize: 96,
  hiddenSize: 64,
  numHeads: 8,
  numKVHeads: 2, // 4 query heads per KV head
  headDim: 8,
  intermediateSize: 176,
  slidingWindows: [null, 8],
  ropeTheta: 10_000,
  maxPositions: 256,
  rmsNormEps: 1e-5,
  embeddingScale: 1 / 64, // 1/D
  seed: 7,
};

/** Per-call inputs of a block: the shared rotary tables and, when decoding, this block's cache. */
interface BlockCall {
  rotaryTables: RotaryTables;
  cache?: AttentionCache;
}

/** `h + attn(norm(h))`, then `h + mlp(norm(h))`: the pre-norm residual block of Llama-like models. */
export class DecoderBlock extends Module {
  readonly inputNorm: RMSNorm;
  readonly attention: Attention;
  readonly postAttentionNorm: RMSNorm;
  readonly mlp: GatedMLP;

  constructor(config: TinyDecoderConfig, index: number, rotary: RotaryEmbedding) {
    super();
    const { hiddenSize: D, numHeads: H, numKVHeads: KV, headDim: Dh } = config;
    const seed = config.seed + 100 * (index + 1); // distinct, reproducible weights per block
    this.inputNorm = this.registerModule('input_layernorm', new RMSNorm(D, { eps: config.rmsNormEps }));
    this.attention = this.registerModule(
      'self_attn',
      new Attention(
        { hiddenSize: D, numHeads: H, numKVHeads: KV, headDim: Dh, slidingWindow: config.slidingWindows[index] },
        {
          qProj: new Linear(D, H * Dh, { bias: false, seed }),
          kProj: new Linear(D, KV * Dh, { bias: false, seed: seed + 10 }),
          vProj: new Linear(D, KV * Dh, { bias: false, seed: seed + 20 }),
          oProj: new Linear(H * Dh, D, { bias: false, seed: seed + 30 }),
          rotary,
        },
      ),
    );
    this.postAttentionNorm = this.registerModule('post_attention_layernorm', new RMSNorm(D, { eps: config.rmsNormEps }));
    this.mlp = this.registerModule('mlp', GatedMLP.create(D, config.intermediateSize, { activation: 'silu', seed: seed + 40 }));
  }

  forward(h: tf.Tensor3D, call: BlockCall): tf.Tensor3D {
    return tf.tidy(() => {
      const a = this.attention.forward(this.inputNorm.forward(h) as tf.Tensor3D, call); // [B, T, D]
      const h1 = tf.add(h, a); // [B, T, D]
      return tf.add(h1, this.mlp.forward(this.postAttentionNorm.forward(h1))) as tf.Tensor3D; // [B, T, D]
    });
  }
}

/**
 * The whole model. Parameter names follow Hugging Face's Llama (`embed_tokens.weight`,
 * `layers.1.self_attn.k_proj.weight`, ...), so a checkpoint saved from it reads naturally.
 */
export class TinyDecoder extends Module {
  readonly config: TinyDecoderConfig;
  readonly embedTokens: Embedding;
  readonly layers: ModuleList<DecoderBlock>;
  readonly norm: RMSNorm;
  /** One rotary embedding shared by every block (it has no parameters). */
  readonly rotary: RotaryEmbedding;

  constructor(config: TinyDecoderConfig) {
    super();
    this.config = config;
    this.rotary = new RotaryEmbedding({ headDim: config.headDim, base: config.ropeTheta, maxPositionEmbeddings: config.maxPositions });
    this.embedTokens = this.registerModule('embed_tokens', new Embedding(config.vocabSize, config.hiddenSize, { seed: config.seed }));
    this.layers = this.registerModule(
      'layers',
      new ModuleList(config.slidingWindows.map((_, i) => new DecoderBlock(config, i, this.rotary))),
    );
    this.norm = this.registerModule('norm', new RMSNorm(config.hiddenSize, { eps: config.rmsNormEps }));
  }

  /**
   * New, empty caches, one per block: a growing `KVCache` for full attention, a rolling `SlidingWindowCache` (never
   * more than `window` positions) for a windowed block. The caller owns them and disposes them.
   */
  createCaches(): AttentionCache[] {
    return this.config.slidingWindows.map((w) => (w == null ? new KVCache() : new SlidingWindowCache(w)));
  }

  /**
   * Logits of every position. With caches, the new tokens continue the cached sequence (and are appended to it).
   *
   * @param ids - int32 `[B, T]`.
   * @returns float32 `[B, T, vocabSize]`; the caller owns it.
   */
  forward(ids: tf.Tensor2D, caches?: AttentionCache[]): tf.Tensor3D {
    const T = ids.shape[1];
    const offset = caches?.[0]?.length ?? 0; // every cache has seen the same positions
    return tf.tidy(() => {
      // One pair of cos/sin tables [T, headDim] for every block.
      const rotaryTables = this.rotary.cosSin({ offset, length: T });
      let h = tf.mul(this.embedTokens.forward(ids), this.config.embeddingScale) as tf.Tensor3D; // [B, T, D]
      this.layers.items.forEach((block, i) => {
        h = block.forward(h, { rotaryTables, cache: caches?.[i] }); // [B, T, D]
      });
      // The tied head: logits = norm(h) · Eᵀ, no separate lm_head matrix.
      return this.embedTokens.attend(this.norm.forward(h)) as tf.Tensor3D; // [B, T, V]
    });
  }
}

/**
 * The parameter count worked out from the config alone, to check `parameterCount()` against: embeddings (shared
 * with the head), per block q/k/v/o + gate/up/down + two norms, and the final norm.
 */
export function expectedParameterCount(c: TinyDecoderConfig): number {
  const D = c.hiddenSize;
  const attention = D * c.numHeads * c.headDim * 2 + D * c.numKVHeads * c.headDim * 2; // q, o and k, v
  const mlp = 3 * D * c.intermediateSize;
  const norms = 2 * D;
  return c.vocabSize * D + c.slidingWindows.length * (attention + mlp + norms) + D;
}
