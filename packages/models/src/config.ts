/**
 * The one typed, JSON-serialisable config every transformer family is built from. Families map their Hugging
 * Face `config.json` onto it; presets are one-liners over it.
 *
 * @module
 */
import { ConfigError, type Activation, type RotaryConfig } from '@slmkit/core';

/**
 * The transformer families slmkit loads from Hugging Face checkpoints (their `model_type`).
 *
 * @example
 * ```ts
 * import type { TransformerFamily } from '@slmkit/models';
 * const family: TransformerFamily = 'llama';
 * ```
 */
export type TransformerFamily =
  | 'llama'
  | 'mistral'
  | 'qwen2'
  | 'gemma'
  | 'phi'
  | 'phi3'
  | 'stablelm'
  | 'mixtral'
  | 'qwen2_moe'
  | 'olmoe';

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
  /**
   * With `scope: 'head'`: one weight vector `[headDim]` shared by every head (Phi's `qk_layernorm`, a single
   * `nn.LayerNorm(head_dim)`) instead of one per head (StableLM's `norms.<h>`). Default false.
   */
  sharedAcrossHeads?: boolean;
}

/**
 * The kind of attention one layer uses: `full_attention` (causal, every earlier key) or `sliding_attention`
 * (causal within {@link CausalLMConfig.slidingWindow}). Named as Hugging Face's `layer_types` names them.
 *
 * @example
 * ```ts
 * import type { LayerType } from '@slmkit/models';
 * const layers: LayerType[] = ['full_attention', 'sliding_attention'];
 * ```
 */
export type LayerType = 'full_attention' | 'sliding_attention';

/**
 * The sparse mixture-of-experts feed-forward of a model (Mixtral, Qwen2-MoE, OLMoE): a `TopKRouter` over
 * `numExperts` SwiGLU experts of width `expertIntermediateSize`, k per token, and optionally a shared expert with
 * a sigmoid gate. Layers not listed in `sparseLayers` keep the dense MLP of `intermediateSize`.
 *
 * @example
 * ```ts
 * import type { MoEConfig } from '@slmkit/models';
 * const mixtral: MoEConfig = {
 *   numExperts: 8, topK: 2, normalizeTopK: true, expertIntermediateSize: 14336, sharedExpertIntermediateSize: null,
 *   routerAuxLossCoef: 0.02, routerJitterNoise: 0,
 * };
 * ```
 */
export interface MoEConfig {
  /** Routed experts E (`num_local_experts`, `num_experts`). */
  numExperts: number;
  /** Experts per token k (`num_experts_per_tok`). */
  topK: number;
  /** Rescale the k routing weights to sum to 1 (Mixtral: true; `norm_topk_prob` for Qwen2-MoE and OLMoE). */
  normalizeTopK: boolean;
  /** Inner width of each routed expert (Mixtral and OLMoE: `intermediate_size`; Qwen2-MoE: `moe_intermediate_size`). */
  expertIntermediateSize: number;
  /** Inner width of the gated shared expert (Qwen2-MoE's `shared_expert_intermediate_size`), or null for none. */
  sharedExpertIntermediateSize: number | null;
  /**
   * The layers whose feed-forward is sparse (Qwen2-MoE's `decoder_sparse_step` and `mlp_only_layers` resolved),
   * as layer indices in increasing order. Absent: every layer.
   */
  sparseLayers?: number[];
  /** Weight of the load-balancing loss in training (`router_aux_loss_coef`); the model never applies it itself. */
  routerAuxLossCoef: number;
  /** Multiplicative jitter on the router input while training (`router_jitter_noise`), in `[0, 1)`. */
  routerJitterNoise: number;
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
  /**
   * Which layers use the sliding window (Qwen2's `use_sliding_window` + `max_window_layers`). When absent, every
   * layer does if {@link CausalLMConfig.slidingWindow} is set. Ignored when `slidingWindow` is null.
   */
  layerTypes?: LayerType[];
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
  /** The sparse mixture-of-experts feed-forward (Mixtral, Qwen2-MoE, OLMoE); absent or null for a dense model. */
  moe?: MoEConfig | null;
}

const FAMILY_NAMES: readonly TransformerFamily[] = [
  'llama',
  'mistral',
  'qwen2',
  'gemma',
  'phi',
  'phi3',
  'stablelm',
  'mixtral',
  'qwen2_moe',
  'olmoe',
];

function configFail(field: string, expected: string, found: unknown): never {
  const shown = typeof found === 'string' ? `"${found}"` : (JSON.stringify(found) ?? String(found));
  throw new ConfigError(`CausalLMConfig: ${field} must be ${expected}, found ${shown}`, { field, expected, found });
}

function checkInt(field: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) configFail(field, 'a positive integer', v);
}

function checkBool(field: string, v: unknown): void {
  if (typeof v !== 'boolean') configFail(field, 'a boolean', v);
}

function checkNorm(field: string, n: unknown): void {
  const norm = n as NormConfig | null;
  if (norm == null || typeof norm !== 'object') return configFail(field, 'a NormConfig object', n);
  const type: unknown = norm.type;
  if (type !== 'rms' && type !== 'layer') configFail(`${field}.type`, '"rms" or "layer"', type);
  if (typeof norm.eps !== 'number' || !Number.isFinite(norm.eps) || norm.eps <= 0) configFail(`${field}.eps`, 'a finite number > 0', norm.eps);
  if (norm.type === 'rms' && norm.unitOffset !== undefined) checkBool(`${field}.unitOffset`, norm.unitOffset);
  if (norm.type === 'layer' && norm.bias !== undefined) checkBool(`${field}.bias`, norm.bias);
}

function checkTokenId(field: string, v: unknown): void {
  if (v !== null && (typeof v !== 'number' || !Number.isInteger(v) || v < 0)) configFail(field, 'a token id (an integer >= 0) or null', v);
}

/**
 * Checks a {@link CausalLMConfig} eagerly, as {@link CausalLM}'s constructor does, and throws a `ConfigError`
 * naming the first wrong field with the expected and the found value. Rotary details are checked by
 * `RotaryEmbedding` when the model is built; the activation by the MLP.
 *
 * @throws `ConfigError` for the first invalid or inconsistent field.
 *
 * @example
 * ```ts
 * import { validateCausalLMConfig, type CausalLMConfig } from '@slmkit/models';
 * declare const config: CausalLMConfig;
 * try {
 *   validateCausalLMConfig({ ...config, numKVHeads: 3, numHeads: 8 });
 * } catch (e) {
 *   console.log((e as Error).message); // "CausalLMConfig: numKVHeads must be a divisor of numHeads (8), found 3"
 * }
 * ```
 */
export function validateCausalLMConfig(config: CausalLMConfig): void {
  if (config == null || typeof config !== 'object') configFail('config', 'a CausalLMConfig object', config);
  if (!FAMILY_NAMES.includes(config.family)) configFail('family', `one of ${FAMILY_NAMES.join(', ')}`, config.family);
  for (const k of ['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKVHeads', 'headDim', 'intermediateSize', 'maxPositionEmbeddings'] as const) {
    checkInt(k, config[k]);
  }
  if (config.numHeads % config.numKVHeads !== 0) {
    configFail('numKVHeads', `a divisor of numHeads (${config.numHeads})`, config.numKVHeads);
  }
  if (config.mlp !== 'gated' && config.mlp !== 'plain') configFail('mlp', '"gated" or "plain"', config.mlp);
  checkNorm('norm', config.norm);
  if (config.rotary == null || typeof config.rotary !== 'object') configFail('rotary', 'a RotaryConfig object', config.rotary);
  if (config.rotary.headDim !== config.headDim) configFail('rotary.headDim', `equal to headDim (${config.headDim})`, config.rotary.headDim);
  const bias = config.attentionBias;
  if (bias == null || typeof bias !== 'object') configFail('attentionBias', 'an object { q, k, v, o } of booleans', bias);
  for (const k of ['q', 'k', 'v', 'o'] as const) checkBool(`attentionBias.${k}`, bias[k]);
  for (const k of ['mlpBias', 'fusedQKV', 'fusedGateUp', 'parallelResidual', 'tieWordEmbeddings', 'lmHeadBias', 'scaleEmbeddings'] as const) {
    checkBool(k, config[k]);
  }
  if (config.fusedQKV && (bias.q !== bias.k || bias.q !== bias.v)) {
    configFail('attentionBias', 'the same bias flag for q, k and v when fusedQKV is true (one qkv_proj)', bias);
  }
  if (config.fusedGateUp && config.mlp !== 'gated') configFail('fusedGateUp', 'false when mlp is "plain"', true);
  if (config.qkNorm !== null) {
    const q = config.qkNorm;
    if (q == null || typeof q !== 'object') configFail('qkNorm', 'a QKNormConfig object or null', q);
    checkNorm('qkNorm.norm', q.norm);
    if (q.scope !== 'head' && q.scope !== 'projection') configFail('qkNorm.scope', '"head" or "projection"', q.scope);
    if (q.sharedAcrossHeads !== undefined) checkBool('qkNorm.sharedAcrossHeads', q.sharedAcrossHeads);
  }
  if (config.slidingWindow !== null) checkInt('slidingWindow', config.slidingWindow);
  if (config.layerTypes !== undefined) {
    if (!Array.isArray(config.layerTypes) || config.layerTypes.length !== config.numLayers) {
      configFail('layerTypes', `a list of numLayers (${config.numLayers}) layer types`, config.layerTypes);
    }
    config.layerTypes.forEach((t, i) => {
      if (t !== 'full_attention' && t !== 'sliding_attention') configFail(`layerTypes[${i}]`, '"full_attention" or "sliding_attention"', t);
    });
  }
  if (config.moe != null) checkMoE(config);
  checkTokenId('bosTokenId', config.bosTokenId);
  checkTokenId('padTokenId', config.padTokenId);
  if (Array.isArray(config.eosTokenId)) config.eosTokenId.forEach((id, i) => checkTokenId(`eosTokenId[${i}]`, id));
  else checkTokenId('eosTokenId', config.eosTokenId);
}

/**
 * The sliding window of layer `layer`, or null when it attends to every earlier key: `slidingWindow` on the
 * layers {@link CausalLMConfig.layerTypes} marks `sliding_attention` (every layer when it is absent).
 *
 * @example
 * ```ts
 * import { layerWindow, type CausalLMConfig } from '@slmkit/models';
 * declare const config: CausalLMConfig;
 * const windows = Array.from({ length: config.numLayers }, (_, i) => layerWindow(config, i));
 * ```
 */
export function layerWindow(config: CausalLMConfig, layer: number): number | null {
  if (config.slidingWindow === null) return null;
  if (config.layerTypes === undefined) return config.slidingWindow;
  return config.layerTypes[layer] === 'sliding_attention' ? config.slidingWindow : null;
}

function checkMoE(config: CausalLMConfig): void {
  const moe = config.moe!;
  if (typeof moe !== 'object') configFail('moe', 'a MoEConfig object or null', moe);
  for (const k of ['numExperts', 'topK', 'expertIntermediateSize'] as const) checkInt(`moe.${k}`, moe[k]);
  if (moe.topK > moe.numExperts) configFail('moe.topK', `at most moe.numExperts (${moe.numExperts})`, moe.topK);
  checkBool('moe.normalizeTopK', moe.normalizeTopK);
  if (moe.sharedExpertIntermediateSize !== null) checkInt('moe.sharedExpertIntermediateSize', moe.sharedExpertIntermediateSize);
  if (typeof moe.routerAuxLossCoef !== 'number' || !Number.isFinite(moe.routerAuxLossCoef) || moe.routerAuxLossCoef < 0) {
    configFail('moe.routerAuxLossCoef', 'a finite number >= 0', moe.routerAuxLossCoef);
  }
  const jitter = moe.routerJitterNoise;
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter < 1)) configFail('moe.routerJitterNoise', 'a number in [0, 1)', jitter);
  if (moe.sparseLayers !== undefined) {
    const layers = moe.sparseLayers;
    if (!Array.isArray(layers)) configFail('moe.sparseLayers', 'a list of layer indices', layers);
    layers.forEach((l, i) => {
      const previous = i === 0 ? -1 : layers[i - 1];
      if (!Number.isInteger(l) || l <= previous || l >= config.numLayers) {
        configFail(`moe.sparseLayers[${i}]`, `an increasing layer index in (${previous}, ${config.numLayers})`, l);
      }
    });
  }
}

/**
 * Whether layer `layer`'s feed-forward is a sparse mixture of experts: the config has {@link CausalLMConfig.moe}
 * and the layer is in its `sparseLayers` (every layer when that is absent).
 *
 * @example
 * ```ts
 * import { isSparseLayer, type CausalLMConfig } from '@slmkit/models';
 * declare const config: CausalLMConfig;
 * const sparse = Array.from({ length: config.numLayers }, (_, i) => isSparseLayer(config, i));
 * ```
 */
export function isSparseLayer(config: CausalLMConfig, layer: number): boolean {
  if (config.moe == null) return false;
  return config.moe.sparseLayers === undefined || config.moe.sparseLayers.includes(layer);
}
