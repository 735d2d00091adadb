/**
 * The one typed, JSON-serialisable config every transformer family is built from. Families map their Hugging
 * Face `config.json` onto it; presets are one-liners over it.
 *
 * @module
 */
import type { Activation, RotaryConfig } from '@slmkit/core';

/**
 * The transformer families slmkit loads from Hugging Face checkpoints (their `model_type`).
 *
 * @example
 * ```ts
 * import type { TransformerFamily } from '@slmkit/models';
 * const family: TransformerFamily = 'llama';
 * ```
 */
export type TransformerFamily = 'llama' | 'mistral' | 'qwen2' | 'gemma' | 'phi' | 'phi3' | 'stablelm';

/**
 * A normalisation layer: RMSNorm (optionally Gemma's `x * (1 + w)`) or LayerNorm (optionally without bias).
 *
 * @example
 * ```ts
 * import type { NormConfig } from '@slmkit/models';
 * const gemma: NormConfig = { type: 'rms', eps: 1e-6, unitOffset: true };
 * const phi: NormConfig = { type: 'layer', eps: 1e-5, bias: true };
 * ```
 */
export type NormConfig =
  | { type: 'rms'; eps: number; unitOffset?: boolean }
  | { type: 'layer'; eps: number; bias?: boolean };

/**
 * Normalisation of queries and keys before rotary: per head over `headDim` (StableLM's `qk_layernorm`, with one
 * weight row per head) or over the whole projection output (OLMoE).
 *
 * @example
 * ```ts
 * import type { QKNormConfig } from '@slmkit/models';
 * const stablelm: QKNormConfig = { norm: { type: 'layer', eps: 1e-5, bias: false }, scope: 'head' };
 * ```
 */
export interface QKNormConfig {
  /** The norm applied to q and to k. */
  norm: NormConfig;
  /** `head`: over each head's `headDim` features; `projection`: over all of q's (or k's) features at once. */
  scope: 'head' | 'projection';
}

/**
 * A decoder-only transformer, from embeddings to logits. Every field is plain JSON, so a config can be saved,
 * diffed and rebuilt. The fields say what the maths is; the family says how parameters are named.
 *
 * @example
 * ```ts
 * import type { CausalLMConfig } from '@slmkit/models';
 * const tiny: CausalLMConfig = {
 *   family: 'llama', vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 16,
 *   intermediateSize: 172, activation: 'silu', mlp: 'gated', norm: { type: 'rms', eps: 1e-5 },
 *   rotary: { headDim: 16, base: 10000, maxPositionEmbeddings: 2048 },
 *   attentionBias: { q: false, k: false, v: false, o: false }, mlpBias: false, qkNorm: null,
 *   fusedQKV: false, fusedGateUp: false, parallelResidual: false, slidingWindow: null,
 *   tieWordEmbeddings: true, lmHeadBias: false, scaleEmbeddings: false, maxPositionEmbeddings: 2048,
 *   bosTokenId: 1, eosTokenId: 2, padTokenId: null,
 * };
 * ```
 */
export interface CausalLMConfig {
  /** Which family's parameter names and block layout to use. */
  family: TransformerFamily;
  /** Rows of the embedding and of the LM head. */
  vocabSize: number;
  /** Model width D. */
  hiddenSize: number;
  /** Number of decoder layers. */
  numLayers: number;
  /** Query heads H. */
  numHeads: number;
  /** Key/value heads (H for MHA, 1 for MQA, a divisor of H for GQA). */
  numKVHeads: number;
  /** Width of one head (not always hiddenSize / numHeads: Gemma uses 256 at hidden 2048). */
  headDim: number;
  /** Inner width of the MLP. */
  intermediateSize: number;
  /** The MLP's activation. */
  activation: Activation;
  /** `gated`: `down(act(gate(x)) * up(x))`; `plain`: `fc2(act(fc1(x)))` (Phi-1/1.5/2). */
  mlp: 'gated' | 'plain';
  /** Every norm of the model (input, post-attention and final). */
  norm: NormConfig;
  /** Rotary embedding, including partial rotary (`rotaryDim`) and scaling. */
  rotary: RotaryConfig;
  /** Which attention projections have a bias. */
  attentionBias: { q: boolean; k: boolean; v: boolean; o: boolean };
  /** Whether the MLP projections have biases. */
  mlpBias: boolean;
  /** Query/key normalisation, or null. */
  qkNorm: QKNormConfig | null;
  /** q, k and v are one `qkv_proj` in the checkpoint (Phi-3), split as [H, KV, KV] heads. */
  fusedQKV: boolean;
  /** gate and up are one `gate_up_proj` in the checkpoint (Phi-3), gate first. */
  fusedGateUp: boolean;
  /** `x + attn(norm(x)) + mlp(norm(x))` with one norm per layer (Phi-1/1.5/2, StableLM's option). */
  parallelResidual: boolean;
  /** Mistral sliding window W (query i sees key j iff 0 <= i - j < W), or null for full attention. */
  slidingWindow: number | null;
  /** The LM head reuses the embedding matrix (no `lm_head.weight` in the checkpoint). */
  tieWordEmbeddings: boolean;
  /** The LM head has a bias (Phi-1/1.5/2). */
  lmHeadBias: boolean;
  /** Multiply embeddings by sqrt(hiddenSize) (Gemma). */
  scaleEmbeddings: boolean;
  /** The longest context the model was trained for. */
  maxPositionEmbeddings: number;
  /** Token ids from the checkpoint's config; eos may be several. */
  bosTokenId: number | null;
  /** End-of-sequence token id(s); generation stops on any of them unless told otherwise. */
  eosTokenId: number | number[] | null;
  /** Padding token id. */
  padTokenId: number | null;
}
