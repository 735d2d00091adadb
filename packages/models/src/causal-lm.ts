/**
 * `CausalLM`: a decoder-only transformer language model built from a {@link CausalLMConfig}, with Hugging Face
 * parameter names, explicit caches and generation.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import type { AttentionImplementation } from '@slmkit/attention';
import { ConfigError, Embedding, Linear, Module, RotaryEmbedding, ShapeError, type LayerNorm, type RMSNorm } from '@slmkit/core';
import { layerWindow, validateCausalLMConfig, type CausalLMConfig } from './config.js';
import { DecoderLayer, buildNorm } from './decoder-layer.js';
import { FAMILIES } from './families/index.js';
import { LanguageModel } from './language-model.js';
import { ModuleList } from './layers/module-list.js';
import { ModelCache } from './model-cache.js';

/**
 * Per-call options of {@link CausalLM.forward}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { ForwardOptions } from '@slmkit/models';
 * const options: ForwardOptions = {
 *   attentionMask: tf.tensor2d([[0, 1, 1], [1, 1, 1]]), // row 0 has one left-pad token
 *   positions: [[0, 0, 1], [0, 1, 2]], // rotary positions per row
 * };
 * ```
 */
export interface ForwardOptions {
  /** The caches to read and append to (from {@link CausalLM.createCache}); without one the call is stateless. */
  cache?: ModelCache;
  /**
   * `[B, S_total]`, 1 for a real token and 0 for padding, over every position so far (cached and new). Padding
   * keys are hidden from every query.
   */
  attentionMask?: tf.Tensor2D;
  /**
   * Rotary positions per row, `[B][T]` (left padding: Hugging Face's `cumsum(mask) − 1`). Default: the slot
   * positions `cache.length … cache.length + T − 1`, as `transformers` uses without `position_ids`.
   */
  positions?: number[][];
  /** The attention kernel (`auto` by default: naive for short sequences, chunked for long ones). */
  implementation?: AttentionImplementation;
  /**
   * Mixture-of-experts models: a list the forward appends each sparse layer's router logits to (float32
   * `[B·T, E]`, in layer order; Hugging Face's `output_router_logits`), for `loadBalancingLoss` /
   * `routerZLoss` from `@slmkit/moe`. The caller owns and disposes them. Ignored by dense models.
   */
  routerLogits?: tf.Tensor2D[];
}

/**
 * The body of a {@link CausalLM} (Hugging Face's `LlamaModel`, registered as `model`): token embeddings, the
 * decoder layers and the final norm, mapping ids to the last hidden states.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { CausalLM, configFromHF } from '@slmkit/models';
 * const lm = new CausalLM(configFromHF({
 *   model_type: 'qwen2', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
 *   num_attention_heads: 4, num_key_value_heads: 2,
 * }));
 * const ids = tf.tensor2d([[1, 2, 3]], undefined, 'int32');
 * const hidden = lm.model.forward(ids); // [1, 3, 32]
 * console.log(hidden.shape);
 * tf.dispose([ids, hidden]);
 * lm.dispose();
 * ```
 */
export class TransformerModel extends Module {
  /** The configuration it was built from. */
  readonly config: Readonly<CausalLMConfig>;
  /** `embed_tokens`: `[vocab, D]`. */
  readonly embedTokens: Embedding;
  /** `layers.<i>`. */
  readonly layers: ModuleList<DecoderLayer>;
  /** The final norm (`norm`, or Phi's `final_layernorm`). */
  readonly norm: RMSNorm | LayerNorm;
  /** The rotary embedding every layer shares (no parameters). */
  readonly rotary: RotaryEmbedding;

  /** @param config - a validated config (see {@link validateCausalLMConfig}). */
  constructor(config: CausalLMConfig) {
    super();
    this.config = config;
    this.rotary = new RotaryEmbedding(config.rotary);
    this.embedTokens = this.registerModule('embed_tokens', new Embedding(config.vocabSize, config.hiddenSize));
    this.layers = this.registerModule(
      'layers',
      new ModuleList(Array.from({ length: config.numLayers }, (_, i) => new DecoderLayer(config, i, this.rotary))),
    );
    this.norm = this.registerModule(FAMILIES[config.family].names.finalNorm, buildNorm(config.norm, config.hiddenSize));
  }

  /**
   * @param ids - int32 `[B, T]`.
   * @param options - cache, mask, positions; see {@link ForwardOptions}.
   * @returns the final hidden states, float32 `[B, T, D]`, after the final norm; the caller owns them.
   */
  forward(ids: tf.Tensor2D, options: ForwardOptions = {}): tf.Tensor3D {
    // The range of the ids is the embedding's check (it names the bad id and its position).
    const [B, T] = checkIds(ids);
    const { cache, attentionMask, positions, implementation, routerLogits } = options;
    if (cache != null) checkCache(cache, this.config.numLayers);
    if (positions != null) checkPositions(positions, B, T);
    const offset = cache?.length ?? 0;
    return tf.tidy(() => {
      // One pair of cos/sin tables for every layer: [T, r], or [B, T, r] with per-row positions.
      const rotaryTables = this.rotary.cosSin(positions ?? { offset, length: T });
      let h = this.embedTokens.forward(ids) as tf.Tensor3D; // [B, T, D]
      // Gemma: the normaliser is sqrt(D) rounded to the activations' dtype (float32), as transformers does.
      if (this.config.scaleEmbeddings) h = tf.mul(h, Math.fround(Math.sqrt(this.config.hiddenSize))) as tf.Tensor3D;
      this.layers.items.forEach((layer, i) => {
        h = layer.forward(h, { rotaryTables, attentionMask, cache: cache?.layers[i], implementation }, routerLogits); // [B, T, D]
      });
      return this.norm.forward(h) as tf.Tensor3D; // [B, T, D]
    });
  }
}

/**
 * A decoder-only transformer language model: {@link TransformerModel} (`model.*`) and an LM head (`lm_head`, or
 * the embedding matrix itself when `tieWordEmbeddings`). One class covers Llama (TinyLlama, SmolLM), Mistral,
 * Qwen2, Gemma, Phi-1/1.5/2, Phi-3 and StableLM; the config says what differs, and every parameter carries the
 * family's Hugging Face `state_dict` name (`model.layers.0.self_attn.q_proj.weight`), so
 * {@link Module.loadWeights} takes a checkpoint as it is stored. {@link fromPretrained} reads a folder.
 *
 * ```text
 * h_0 = embed(ids)  (· √D for Gemma)
 * h_l = layer_l(h_{l−1})                     l = 1 … L   (see DecoderLayer)
 * logits = lm_head(norm(h_L))                [B, T, vocab]
 * ```
 *
 * **State is explicit**: decoding caches come from {@link CausalLM.createCache}, are passed to every call and
 * disposed by the caller; the model holds no hidden state between calls.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { CausalLM, configFromHF } from '@slmkit/models';
 * const model = new CausalLM(configFromHF({
 *   model_type: 'llama', vocab_size: 128, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2,
 *   num_attention_heads: 4, num_key_value_heads: 2,
 * }));
 * const ids = tf.tensor2d([[5, 6, 7, 8]], undefined, 'int32');
 * const logits = model.forward(ids); // [1, 4, 128]
 * const out = await model.generate(ids, { maxNewTokens: 4 }); // greedy
 * console.log(logits.shape, out.tokens[0].length); // [1, 4, 128] 4
 * tf.dispose([ids, logits]);
 * model.dispose();
 * ```
 */
export class CausalLM extends LanguageModel<ForwardOptions, ModelCache> {
  /** The configuration it was built from (frozen). */
  readonly config: Readonly<CausalLMConfig>;
  /** The body: embeddings, layers, final norm (`model.*`). */
  readonly model: TransformerModel;
  /** The LM head `lm_head` `[vocab, D]`; undefined when tied to the embeddings. */
  readonly lmHead: Linear | undefined;

  /**
   * @param config - the model's configuration; checked eagerly ({@link validateCausalLMConfig}).
   * @throws `ConfigError` naming the first invalid field.
   */
  constructor(config: CausalLMConfig) {
    super();
    validateCausalLMConfig(config);
    if (config.tieWordEmbeddings && config.lmHeadBias) {
      throw new ConfigError('CausalLM: lmHeadBias needs an untied head (tieWordEmbeddings is true)', {
        field: 'lmHeadBias',
        expected: 'false when tieWordEmbeddings is true',
        found: true,
      });
    }
    this.config = Object.freeze(structuredClone(config));
    this.model = this.registerModule('model', new TransformerModel(this.config));
    this.lmHead = config.tieWordEmbeddings
      ? undefined
      : this.registerModule('lm_head', new Linear(config.hiddenSize, config.vocabSize, { bias: config.lmHeadBias }));
  }

  /** The final hidden states `[B, T, D]` of the body (`model.*`). */
  protected hidden(ids: tf.Tensor2D, options: ForwardOptions): tf.Tensor3D {
    return this.model.forward(ids, options);
  }

  /** `lm_head(h)` or the tied `h · Eᵀ`: `[B, T, D]` to `[B, T, V]`. */
  protected head(hidden: tf.Tensor3D): tf.Tensor3D {
    if (this.lmHead != null) return this.lmHead.forward(hidden) as tf.Tensor3D; // [B, T, V]
    return this.model.embedTokens.attend(hidden) as tf.Tensor3D; // [B, T, V]
  }

  /**
   * New, empty caches for decoding with this model: a `SlidingWindowCache` for each sliding-window layer (it never
   * holds more than the window), a `KVCache` for the others. The caller owns it and disposes it.
   *
   * @example
   * ```ts
   * import { CausalLM, configFromHF } from '@slmkit/models';
   * const model = new CausalLM(configFromHF({
   *   model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
   *   num_attention_heads: 4,
   * }));
   * const cache = model.createCache();
   * console.log(cache.layers.length, cache.length); // 2 0
   * cache.dispose();
   * model.dispose();
   * ```
   */
  createCache(): ModelCache {
    return ModelCache.forWindows(Array.from({ length: this.config.numLayers }, (_, i) => layerWindow(this.config, i)));
  }

}

/** Checks ids `[B, T]` int32 and returns `[B, T]`. */
function checkIds(ids: tf.Tensor2D): [number, number] {
  if (!(ids instanceof tf.Tensor) || ids.rank !== 2 || ids.dtype !== 'int32') {
    const found = ids instanceof tf.Tensor ? `${ids.dtype} [${ids.shape.join(', ')}]` : typeof ids;
    throw new ShapeError(`CausalLM: ids must be an int32 tensor [B, T], found ${found}`, {
      field: 'ids',
      expected: 'int32 [B, T]',
      found,
    });
  }
  const [B, T] = ids.shape;
  if (B === 0 || T === 0) {
    throw new ShapeError(`CausalLM: ids must have at least one row and one token, found [${B}, ${T}]`, {
      field: 'ids',
      expected: '[B >= 1, T >= 1]',
      found: ids.shape.slice(),
    });
  }
  return [B, T];
}

function checkCache(cache: ModelCache, numLayers: number): void {
  if (!(cache instanceof ModelCache) || cache.layers.length !== numLayers) {
    const found = cache instanceof ModelCache ? `${cache.layers.length} layers` : typeof cache;
    throw new ConfigError(`CausalLM: cache must be a ModelCache of ${numLayers} layers (from model.createCache()), found ${found}`, {
      field: 'cache',
      expected: `a ModelCache of ${numLayers} layers`,
      found,
    });
  }
  if (cache.isDisposed) {
    throw new ConfigError('CausalLM: the cache was disposed', { field: 'cache', expected: 'a live cache', found: 'disposed' });
  }
}

function checkPositions(positions: number[][], B: number, T: number): void {
  const ok =
    Array.isArray(positions) &&
    positions.length === B &&
    positions.every((row) => Array.isArray(row) && row.length === T && row.every((p) => Number.isInteger(p) && p >= 0));
  if (!ok) {
    throw new ShapeError(`CausalLM: positions must be [B][T] = [${B}][${T}] non-negative integers`, {
      field: 'positions',
      expected: [B, T],
      found: Array.isArray(positions) ? positions.length : typeof positions,
    });
  }
}
