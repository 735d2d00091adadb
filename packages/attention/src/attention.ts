/**
 * `Attention`: one block for multi-head, multi-query and grouped-query attention, with sliding windows, an
 * always-visible prefix, soft-capping, q/k norms, rotary embeddings, explicit KV caches and cross-layer KV sharing.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, Module, RotaryEmbedding, ShapeError, checkPositiveInt, type Projection } from '@slmkit/core';
import { AttentionCache, SlidingWindowCache, type SharedKV } from './cache.js';
import { chunkedAttention } from './ops/chunked.js';
import { fusedAttention, fusedAttentionOverBuffers, hasFusedAttention } from './ops/fused.js';
import type { AttentionKernelOptions } from './ops/common.js';
import type { MaskRules } from './ops/mask.js';
import { naiveAttention } from './ops/naive.js';

/**
 * Which attention kernel runs: `naive` materialises the `[B, H, T, S]` scores; `chunked` streams key blocks with
 * an online softmax; `fused` is one kernel (typed arrays on `cpu` and `wasm`, flash-style WGSL on `webgpu`; see
 * {@link fusedAttention}); `auto` picks `fused` where the backend has it (`cpu`, `wasm`, `webgpu`), and elsewhere
 * `chunked` when `T · S` exceeds {@link CHUNKED_THRESHOLD}, `naive` below.
 *
 * @example
 * ```ts
 * import type { AttentionImplementation } from '@slmkit/attention';
 * const longPrefill: AttentionImplementation = 'chunked';
 * ```
 */
export type AttentionImplementation = 'auto' | 'naive' | 'chunked' | 'fused';

/**
 * The kernel `auto` resolves to for `T` new tokens over `S` keys, given whether the backend has the fused kernel.
 *
 * @example
 * ```ts
 * import { resolveImplementation } from '@slmkit/attention';
 * console.log(resolveImplementation('auto', 512, 512, false)); // "chunked"
 * ```
 */
export function resolveImplementation(implementation: AttentionImplementation, T: number, S: number, hasFused: boolean): 'naive' | 'chunked' | 'fused' {
  if (implementation !== 'auto') return implementation;
  if (hasFused) return 'fused';
  return T * S > CHUNKED_THRESHOLD ? 'chunked' : 'naive';
}

/**
 * On a backend without the fused kernel, `auto` runs the chunked kernel when `T · S` (new tokens × keys attended) exceeds this: 256 × 256. Below it the
 * whole score matrix is small and one batched matmul is faster than a loop of tiles.
 *
 * @example
 * ```ts
 * import { CHUNKED_THRESHOLD } from '@slmkit/attention';
 * console.log(CHUNKED_THRESHOLD); // 65536
 * ```
 */
export const CHUNKED_THRESHOLD = 256 * 256;

/**
 * A norm applied to queries or keys (Qwen 3, Gemma 3, OLMo 2, Phi's `qk_layernorm`): any module mapping a tensor
 * to one of the same shape, normalising its last dimension.
 *
 * @example
 * ```ts
 * import { RMSNorm } from '@slmkit/core';
 * import type { QKNorm } from '@slmkit/attention';
 * const qNorm: QKNorm = new RMSNorm(64, { eps: 1e-6 });
 * ```
 */
export type QKNorm = Module & {
  /** `[..., d]` to `[..., d]`; the caller owns the result. */
  forward(x: tf.Tensor): tf.Tensor;
};

/**
 * Parameter names of the parts, as they appear in `namedParameters()` (Hugging Face `state_dict` names).
 *
 * @example
 * ```ts
 * import type { AttentionNames } from '@slmkit/attention';
 * const phi: Partial<AttentionNames> = { o: 'dense', qNorm: 'q_layernorm', kNorm: 'k_layernorm' };
 * ```
 */
export interface AttentionNames {
  /** Default `q_proj`. */
  q: string;
  /** Default `k_proj`. */
  k: string;
  /** Default `v_proj`. */
  v: string;
  /** Default `qkv_proj` (Phi-3's fused projection). */
  qkv: string;
  /** Default `o_proj`. */
  o: string;
  /** Default `q_norm`. */
  qNorm: string;
  /** Default `k_norm`. */
  kNorm: string;
}

/**
 * The hyper-parameters of an {@link Attention} block, validated eagerly by its constructor.
 *
 * Dimensions: `B` batch, `T` new tokens, `S` keys attended, `H` query heads, `KV` key/value heads, `Dh` head dim,
 * `Dv` value head dim, `D` hidden size.
 *
 * @example
 * ```ts
 * import type { AttentionOptions } from '@slmkit/attention';
 * const mistral: AttentionOptions = { hiddenSize: 4096, numHeads: 32, numKVHeads: 8, headDim: 128, slidingWindow: 4096 };
 * const gemma2Local: AttentionOptions = {
 *   hiddenSize: 2304, numHeads: 8, numKVHeads: 4, headDim: 256, scale: 1 / 16, softcap: 50, slidingWindow: 4096,
 * };
 * ```
 */
export interface AttentionOptions {
  /** `D`, the width of the block's input (and of its output, unless `outputSize` says otherwise). */
  hiddenSize: number;
  /**
   * The width of the block's output, `o_proj`'s (default `hiddenSize`). Zamba's shared attention reads
   * `[hidden ; embeddings]`, `2·hidden` wide, and writes `hidden`.
   */
  outputSize?: number;
  /** `H`, the query heads. */
  numHeads: number;
  /** `KV`, the key/value heads: `H` for MHA, 1 for MQA, a divisor of `H` for GQA. */
  numKVHeads: number;
  /** `Dh`, the query/key head dim. */
  headDim: number;
  /** `Dv`, the value head dim (default `headDim`; Hymba uses `2 · headDim`). */
  valueHeadDim?: number;
  /** Multiplies `q·k` (default `1/√headDim`; Gemma uses `query_pre_attn_scalar^−½`). */
  scale?: number;
  /** Logit soft cap `c`: scores become `c · tanh(s / c)` (Gemma 2); `null` (default) for none. */
  softcap?: number | null;
  /** Sliding window `w`: key `j` is visible to query `i` iff `0 ≤ i − j < w` (Mistral); `null` (default) for none. */
  slidingWindow?: number | null;
  /** Keys at absolute positions `< prefixLength` stay visible to every later query, window or not (Hymba); default 0. */
  prefixLength?: number;
  /** Whether query `i` sees only keys `j ≤ i` (default `true`; a sliding window needs it). */
  causal?: boolean;
  /**
   * Where `qNorm` / `kNorm` apply: `head` (default) normalises each head, `[B, T, H, Dh]` (Qwen 3, Gemma 3, Phi);
   * `projection` normalises the whole projection, `[B, T, H · Dh]` (OLMo 2).
   */
  qkNormScope?: 'head' | 'projection';
  /** Parameter names of the parts; see {@link AttentionNames}. */
  names?: Partial<AttentionNames>;
  /** Default kernel (`auto`); a call's `implementation` overrides it. */
  implementation?: AttentionImplementation;
  /** Queries per tile of the chunked kernel (default 64). */
  queryBlockSize?: number;
  /** Keys per tile of the chunked kernel (default 128). */
  keyBlockSize?: number;
}

/**
 * The parts an {@link Attention} block is assembled from. Projections are any {@link Projection} (a `Linear`, a
 * LoRA or quantised linear), so their biases are theirs: q/k/v/o bias is a matter of which parts you pass.
 *
 * Give `qProj`, `kProj`, `vProj` (separate), or `qkvProj` (fused, output `[H·Dh | KV·Dh | KV·Dv]`). With `qProj`
 * alone the block is a *KV consumer*: it attends with its own queries over another layer's keys and values, passed
 * as `sharedKV` at call time.
 *
 * @example
 * ```ts
 * import { Linear, RMSNorm, RotaryEmbedding } from '@slmkit/core';
 * import type { AttentionParts } from '@slmkit/attention';
 * const parts: AttentionParts = {
 *   qProj: new Linear(64, 64, { bias: false }),
 *   kProj: new Linear(64, 32, { bias: false }),
 *   vProj: new Linear(64, 32, { bias: false }),
 *   oProj: new Linear(64, 64, { bias: false }),
 *   qNorm: new RMSNorm(16, { eps: 1e-6 }),
 *   kNorm: new RMSNorm(16, { eps: 1e-6 }),
 *   rotary: new RotaryEmbedding({ headDim: 16, base: 1e6, maxPositionEmbeddings: 4096 }),
 * };
 * ```
 */
export interface AttentionParts {
  /** `D → H·Dh`. */
  qProj?: Projection;
  /** `D → KV·Dh`. */
  kProj?: Projection;
  /** `D → KV·Dv`. */
  vProj?: Projection;
  /** Fused `D → H·Dh + KV·Dh + KV·Dv` (Phi-3), instead of the three above. */
  qkvProj?: Projection;
  /** `H·Dv → D`. */
  oProj: Projection;
  /** Query norm (see {@link AttentionOptions.qkNormScope}). */
  qNorm?: QKNorm;
  /** Key norm. */
  kNorm?: QKNorm;
  /** Rotary position embedding for q and k; absent: no positional rotation (and call `rotaryTables` are ignored). */
  rotary?: RotaryEmbedding;
}

/**
 * Per-call inputs of {@link Attention.forward} besides `x`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { KVCache, type AttentionCall } from '@slmkit/attention';
 * const cache = new KVCache();
 * const call: AttentionCall = {
 *   cache,
 *   attentionMask: tf.tensor2d([[0, 1, 1, 1]]), // one left-pad token
 *   positions: [[0, 0, 1, 2]], // rotary positions per row
 * };
 * ```
 */
export interface AttentionCall {
  /**
   * A number: the absolute position of the first new token (default: the cache's `length`, or for a KV consumer the
   * last `T` positions of `sharedKV`, or 0). With a cache it must equal the cache's `length`.
   *
   * `number[][]` (`[B][T]`): per-row positions for the rotary embedding only (left padding). Masking always uses
   * the slot positions (`length … length + T − 1`), as Hugging Face does with `cache_position`; padding is the
   * `attentionMask`'s job.
   */
  positions?: number | number[][];
  /**
   * cos/sin tables from the rotary embedding's `cosSin`, computed once per model forward and shared by all layers;
   * `[T, r]` or `[B, T, r]`. Used instead of `positions` for the rotation; ignored by a block without `rotary`.
   */
  rotaryTables?: { cos: tf.Tensor; sin: tf.Tensor };
  /**
   * `[B, S_total]`, 1 for a real token and 0 for padding, over every position so far (cached and new:
   * `S_total = ` the first new position `+ T`). A query row that sees no key returns zeros before `oProj`.
   */
  attentionMask?: tf.Tensor2D;
  /** Updated in place with the new keys and values; the block attends over what the cache returns. */
  cache?: AttentionCache;
  /**
   * For a KV consumer: the keys and values of the producing layer, its `forwardWithKV(...).kv` (in a full forward
   * and with caches alike) or, for a one-token step, its `cache.read()`. The consumer applies its own mask rules to
   * them, so they must hold every key those rules show: a producer with a `SlidingWindowCache` suits a consumer
   * with the same (or a smaller) window. By default the new queries sit at the last `T` key positions.
   */
  sharedKV?: SharedKV;
  /** Overrides the block's kernel choice for this call. */
  implementation?: AttentionImplementation;
}

/**
 * What {@link Attention.forwardWithKV} returns.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { AttentionResult } from '@slmkit/attention';
 * function release(r: AttentionResult): void {
 *   tf.dispose([r.output, r.kv.keys, r.kv.values]);
 * }
 * ```
 */
export interface AttentionResult {
  /** `[B, T, D]`. */
  output: tf.Tensor3D;
  /** The keys and values this call attended over, for layers that share them; the caller owns them. */
  kv: SharedKV;
}

const DEFAULT_NAMES: AttentionNames = {
  q: 'q_proj',
  k: 'k_proj',
  v: 'v_proj',
  qkv: 'qkv_proj',
  o: 'o_proj',
  qNorm: 'q_norm',
  kNorm: 'k_norm',
};

const OWNER = 'Attention';

function configError(field: string, message: string, expected: unknown, found: unknown): never {
  throw new ConfigError(`${OWNER}: ${message}`, { field, expected, found });
}

function shapeError(field: string, message: string, expected: unknown, found: unknown): never {
  throw new ShapeError(`${OWNER}: ${message}`, { field, expected, found });
}

/**
 * Multi-head attention with grouped key/value heads, as one block.
 *
 * ```text
 * q = x W_q,  k = x W_k,  v = x W_v                  (H, KV and KV heads; optional q/k norm; RoPE on q and k)
 * s_ij = scale · q_i · k_j            (scale = 1/√Dh by default; Gemma 2's cap: s ← c · tanh(s / c))
 * a_ij = softmax_j(s_ij)  over the keys j visible to i
 * y_i  = W_o · concat_h(Σ_j a_ij v_j)
 * ```
 *
 * Key `j` is visible to query `i` (absolute positions) when `j ≤ i` (causal), `i − j < w` or `j < prefixLength`
 * (sliding window with an always-visible prefix), and the attention mask marks `j` as a real token.
 *
 * - Multi-head attention: Vaswani et al. 2017, "Attention Is All You Need" (`numKVHeads = numHeads`).
 * - Multi-query attention: Shazeer 2019, "Fast Transformer Decoding: One Write-Head is All You Need"
 *   (`numKVHeads = 1`).
 * - Grouped-query attention: Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from
 *   Multi-Head Checkpoints" (query head `h` uses key/value head `⌊h · KV / H⌋`, Hugging Face's `repeat_kv` order).
 *   K/V are never copied per group: queries are viewed as `[B·KV, G·T, Dh]` against keys `[B·KV, S, Dh]`.
 * - Sliding window: Beltagy et al. 2020, "Longformer"; Jiang et al. 2023, "Mistral 7B" (its rolling buffer cache is
 *   {@link SlidingWindowCache}). Always-visible prefix: Dong et al. 2024, "Hymba" (meta tokens).
 * - Chunked kernel: the online softmax of Milakov & Gimelshein 2018, "Online normalizer calculation for softmax", as
 *   tiled by Dao et al. 2022, "FlashAttention" (see {@link chunkedAttention}); on `cpu` and `wasm` the same online
 *   softmax runs as one kernel over typed arrays with WebAssembly SIMD inner loops, and on `webgpu` as a
 *   flash-style WGSL kernel with key tiles in workgroup memory (see {@link fusedAttention}); `auto` picks it
 *   there.
 *
 * **How this differs from other libraries.** The block builds none of its parts: projections, norms and the rotary
 * embedding are passed in (as torchtune does), so LoRA, DoRA or quantised projections drop in, and their names are
 * the Hugging Face ones (`q_proj`, …, configurable). Caches are explicit objects the caller creates, passes to each
 * call and disposes (no hidden state in the module, unlike `transformers`' `past_key_values` living inside the
 * model or torchtune's `setup_caches`). Cross-layer KV sharing is a constructor choice (no k/v projections) plus a
 * call argument, not a model-level flag. A query row with nothing visible returns zeros, not NaN nor the mean of
 * the values.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Linear, RotaryEmbedding } from '@slmkit/core';
 * import { Attention } from '@slmkit/attention';
 * // GQA: 4 query heads share 2 key/value heads, head dim 8, with rotary embeddings and a sliding window of 16.
 * const attn = new Attention(
 *   { hiddenSize: 32, numHeads: 4, numKVHeads: 2, headDim: 8, slidingWindow: 16 },
 *   {
 *     qProj: new Linear(32, 32, { bias: false }),
 *     kProj: new Linear(32, 16, { bias: false }),
 *     vProj: new Linear(32, 16, { bias: false }),
 *     oProj: new Linear(32, 32, { bias: false }),
 *     rotary: new RotaryEmbedding({ headDim: 8, base: 10000, maxPositionEmbeddings: 2048 }),
 *   },
 * );
 * const x = tf.randomNormal([2, 10, 32]) as tf.Tensor3D; // [B, T, D]
 * const y = attn.forward(x); // [2, 10, 32]
 * console.log(y.shape, attn.namedParameters().map(([n]) => n)); // [2, 10, 32] ["q_proj.weight", ...]
 * tf.dispose([x, y]);
 * attn.dispose();
 * ```
 */
export class Attention extends Module {
  /** `D`. */
  readonly hiddenSize: number;
  /** The output width (`hiddenSize` unless configured otherwise). */
  readonly outputSize: number;
  /** `H`. */
  readonly numHeads: number;
  /** `KV`. */
  readonly numKVHeads: number;
  /** `Dh`. */
  readonly headDim: number;
  /** `Dv`. */
  readonly valueHeadDim: number;
  /** The factor of `q·k`. */
  readonly scale: number;
  /** The logit soft cap, or null. */
  readonly softcap: number | null;
  /** The sliding window, or null. */
  readonly slidingWindow: number | null;
  /** Always-visible prefix length. */
  readonly prefixLength: number;
  /** Whether attention is causal. */
  readonly causal: boolean;
  /** Where the q/k norms apply. */
  readonly qkNormScope: 'head' | 'projection';
  /** The default kernel. */
  readonly implementation: AttentionImplementation;
  /** Queries per tile of the chunked kernel. */
  readonly queryBlockSize: number;
  /** Keys per tile of the chunked kernel. */
  readonly keyBlockSize: number;
  /** True when built without k/v projections: it attends over a `sharedKV` from another layer. */
  readonly isKVConsumer: boolean;
  /** The parts, as given. */
  readonly parts: Readonly<AttentionParts>;
  /** The kernel the last call ran (`naive`, `chunked` or `fused`), for reports and benchmarks. */
  lastImplementation: 'naive' | 'chunked' | 'fused' | undefined;

  /**
   * @throws ConfigError when an option is out of range (the message names it with the values, e.g.
   *   `numKVHeads (3) must divide numHeads (8)`), or when the parts do not fit the options (a projection's width,
   *   a norm's size, the rotary head dim) or each other (fused and separate projections, k without v).
   */
  constructor(options: AttentionOptions, parts: AttentionParts) {
    super();
    if (options == null || typeof options !== 'object') configError('options', 'options must be an object', 'an object', options);
    if (parts == null || typeof parts !== 'object') configError('parts', 'parts must be an object', 'an object', parts);
    for (const f of ['hiddenSize', 'numHeads', 'numKVHeads', 'headDim'] as const) checkPositiveInt(OWNER, f, options[f]);
    const H = options.numHeads;
    const KV = options.numKVHeads;
    if (H % KV !== 0) configError('numKVHeads', `numKVHeads (${KV}) must divide numHeads (${H})`, `a divisor of ${H}`, KV);
    const Dh = options.headDim;
    const Dv = options.valueHeadDim ?? Dh;
    checkPositiveInt(OWNER, 'valueHeadDim', Dv);
    const scale = options.scale ?? 1 / Math.sqrt(Dh);
    if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
      configError('scale', `scale must be a finite number > 0, found ${String(scale)}`, 'a finite number > 0', scale);
    }
    const softcap = options.softcap ?? null;
    if (softcap !== null && (typeof softcap !== 'number' || !Number.isFinite(softcap) || softcap <= 0)) {
      configError('softcap', `softcap must be a finite number > 0 or null, found ${String(softcap)}`, 'a finite number > 0, or null', softcap);
    }
    const causal = options.causal ?? true;
    if (typeof causal !== 'boolean') configError('causal', `causal must be a boolean, found ${String(causal)}`, 'boolean', causal);
    const window = options.slidingWindow ?? null;
    if (window !== null) {
      checkPositiveInt(OWNER, 'slidingWindow', window);
      if (!causal) configError('slidingWindow', `slidingWindow (${window}) needs causal attention, but causal is false`, 'causal: true', false);
    }
    const prefixLength = options.prefixLength ?? 0;
    if (typeof prefixLength !== 'number' || !Number.isInteger(prefixLength) || prefixLength < 0) {
      configError('prefixLength', `prefixLength must be a non-negative integer, found ${String(prefixLength)}`, 'a non-negative integer', prefixLength);
    }
    const scope = options.qkNormScope ?? 'head';
    if (scope !== 'head' && scope !== 'projection') {
      configError('qkNormScope', `qkNormScope must be "head" or "projection", found ${JSON.stringify(scope)}`, ['head', 'projection'], scope);
    }
    const outputSize = options.outputSize ?? options.hiddenSize;
    checkPositiveInt(OWNER, 'outputSize', outputSize);
    const implementation = options.implementation ?? 'auto';
    checkImplementation('implementation', implementation);
    const queryBlockSize = options.queryBlockSize ?? 64;
    const keyBlockSize = options.keyBlockSize ?? 128;
    checkPositiveInt(OWNER, 'queryBlockSize', queryBlockSize);
    checkPositiveInt(OWNER, 'keyBlockSize', keyBlockSize);
    const names: AttentionNames = { ...DEFAULT_NAMES, ...(options.names ?? {}) };

    // Parts.
    const D = options.hiddenSize;
    const { qProj, kProj, vProj, qkvProj, oProj, qNorm, kNorm, rotary } = parts;
    if (oProj == null) configError('oProj', 'parts.oProj is required', 'a Projection', oProj);
    if (qkvProj != null && (qProj != null || kProj != null || vProj != null)) {
      configError('qkvProj', 'give either qkvProj or qProj/kProj/vProj, not both', 'one of them', 'both');
    }
    if (qkvProj == null && qProj == null) configError('qProj', 'parts.qProj (or qkvProj) is required', 'a Projection', undefined);
    if ((kProj == null) !== (vProj == null)) {
      const missing = kProj == null ? 'kProj' : 'vProj';
      configError(missing, `parts.kProj and parts.vProj come together (${missing} is missing); give neither for a KV consumer`, 'both or neither', missing);
    }
    const consumer = qkvProj == null && kProj == null;
    if (consumer && kNorm != null) configError('kNorm', 'a KV consumer (no k/v projections) cannot have a kNorm: its keys come normalised from the producer', 'no kNorm', 'kNorm');
    const checkWidths = (field: string, p: Projection | undefined, inF: number, outF: number): void => {
      if (p == null) return;
      if (p.inFeatures != null && p.inFeatures !== inF) configError(field, `${field}.inFeatures (${p.inFeatures}) must be ${inF}`, inF, p.inFeatures);
      if (p.outFeatures != null && p.outFeatures !== outF) {
        configError(field, `${field}.outFeatures (${p.outFeatures}) must be ${outF}`, outF, p.outFeatures);
      }
    };
    checkWidths('qProj', qProj, D, H * Dh);
    checkWidths('kProj', kProj, D, KV * Dh);
    checkWidths('vProj', vProj, D, KV * Dv);
    checkWidths('qkvProj', qkvProj, D, H * Dh + KV * Dh + KV * Dv);
    checkWidths('oProj', oProj, H * Dv, outputSize);
    const checkNorm = (field: string, n: QKNorm | undefined, heads: number): void => {
      if (n == null) return;
      const dim = (n as { dim?: unknown }).dim;
      const want = scope === 'head' ? Dh : heads * Dh;
      if (typeof dim === 'number' && dim !== want) {
        configError(field, `${field} normalises ${dim} values but qkNormScope "${scope}" needs ${want}`, want, dim);
      }
    };
    checkNorm('qNorm', qNorm, H);
    checkNorm('kNorm', kNorm, KV);
    if (rotary != null) {
      if (!(rotary instanceof RotaryEmbedding)) configError('rotary', 'parts.rotary must be a RotaryEmbedding', 'RotaryEmbedding', typeof rotary);
      if (rotary.headDim !== Dh) configError('rotary', `rotary.headDim (${rotary.headDim}) must equal headDim (${Dh})`, Dh, rotary.headDim);
    }

    this.hiddenSize = D;
    this.outputSize = outputSize;
    this.numHeads = H;
    this.numKVHeads = KV;
    this.headDim = Dh;
    this.valueHeadDim = Dv;
    this.scale = scale;
    this.softcap = softcap;
    this.slidingWindow = window;
    this.prefixLength = prefixLength;
    this.causal = causal;
    this.qkNormScope = scope;
    this.implementation = implementation;
    this.queryBlockSize = queryBlockSize;
    this.keyBlockSize = keyBlockSize;
    this.isKVConsumer = consumer;
    this.parts = Object.freeze({ ...parts });
    this.lastImplementation = undefined;

    if (qkvProj != null) this.registerModule(names.qkv, qkvProj);
    if (qProj != null) this.registerModule(names.q, qProj);
    if (kProj != null) this.registerModule(names.k, kProj);
    if (vProj != null) this.registerModule(names.v, vProj);
    this.registerModule(names.o, oProj);
    if (qNorm != null) this.registerModule(names.qNorm, qNorm);
    if (kNorm != null) this.registerModule(names.kNorm, kNorm);
  }

  /** The position rules of this block. */
  get maskRules(): MaskRules {
    return { causal: this.causal, slidingWindow: this.slidingWindow, prefixLength: this.prefixLength };
  }

  /**
   * Attention over `x` (and whatever the cache or `sharedKV` holds), projected back to the hidden size (or to
   * `outputSize`).
   *
   * @param x - `[B, T, D]`, float32.
   * @returns `[B, T, D]` (`[B, T, outputSize]` when configured); the caller owns it. Every intermediate is freed;
   *   only the cache keeps the new K/V.
   * @throws ShapeError for a wrong input width, a mask, positions or `sharedKV` of the wrong shape, or a cache
   *   whose `B`/`KV`/`Dh`/`Dv` disagree; ConfigError for a KV consumer without `sharedKV` (or a producer with one),
   *   a sliding-window cache narrower than the layer's window, or `positions` that disagree with the cache.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { Linear } from '@slmkit/core';
   * import { Attention } from '@slmkit/attention';
   * const attn = new Attention(
   *   { hiddenSize: 8, numHeads: 2, numKVHeads: 1, headDim: 4 }, // MQA
   *   { qProj: new Linear(8, 8), kProj: new Linear(8, 4), vProj: new Linear(8, 4), oProj: new Linear(8, 8) },
   * );
   * const x = tf.randomNormal([2, 3, 8]) as tf.Tensor3D;
   * const mask = tf.tensor2d([[1, 1, 1], [0, 1, 1]]); // row 1 is left-padded
   * const y = attn.forward(x, { attentionMask: mask });
   * console.log(y.shape); // [2, 3, 8]
   * tf.dispose([x, mask, y]);
   * attn.dispose();
   * ```
   */
  forward(x: tf.Tensor3D, call: AttentionCall = {}): tf.Tensor3D {
    return this.run(x, call, false).output;
  }

  /**
   * Like {@link Attention.forward}, and also returns the keys and values this call attended over (with their
   * positions): what a KV producer hands to the consumer layers that share its K/V, in a full forward and with a
   * cache alike.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { Linear } from '@slmkit/core';
   * import { Attention } from '@slmkit/attention';
   * const opts = { hiddenSize: 8, numHeads: 2, numKVHeads: 2, headDim: 4 };
   * const producer = new Attention(opts, {
   *   qProj: new Linear(8, 8), kProj: new Linear(8, 8), vProj: new Linear(8, 8), oProj: new Linear(8, 8),
   * });
   * const consumer = new Attention(opts, { qProj: new Linear(8, 8), oProj: new Linear(8, 8) }); // no k/v
   * const x = tf.randomNormal([1, 4, 8]) as tf.Tensor3D;
   * const { output, kv } = producer.forwardWithKV(x);
   * const y = consumer.forward(x, { sharedKV: kv });
   * console.log(kv.keys.shape, y.shape); // [1, 2, 4, 4] [1, 4, 8]
   * tf.dispose([x, output, kv.keys, kv.values, y]);
   * producer.dispose();
   * consumer.dispose();
   * ```
   */
  forwardWithKV(x: tf.Tensor3D, call: AttentionCall = {}): AttentionResult {
    const r = this.run(x, call, true);
    return { output: r.output, kv: r.kv! };
  }

  private run(x: tf.Tensor3D, call: AttentionCall, wantKV: boolean): { output: tf.Tensor3D; kv?: SharedKV } {
    const { B, T, queryPositions, keyPositions, keyIndexForMask, implementation } = this.validateCall(x, call);
    const H = this.numHeads;
    const KV = this.numKVHeads;
    const Dh = this.headDim;
    const Dv = this.valueHeadDim;
    const { qProj, kProj, vProj, qkvProj, oProj, qNorm, kNorm, rotary } = this.parts;
    const perRow = Array.isArray(call.positions);
    const rotaryArg = rotary == null ? undefined : call.rotaryTables ?? (perRow ? (call.positions as number[][]) : { offset: queryPositions[0], length: T });
    const S = keyPositions.length;
    const chosen = resolveImplementation(implementation, T, S, hasFusedAttention());
    // The decode fast path (one token with the fused kernel): projections on [B, D] and heads by reshapes instead of
    // transposes. (Rotating q and k in one call costs more than it saves: the concat and split around it copy.) The
    // naive and chunked paths keep the plain sequence of ops, the reference it is measured by.
    const fastStep = T === 1 && chosen === 'fused';

    const result = tf.tidy(() => {
      let q: tf.Tensor;
      let k: tf.Tensor | undefined;
      let v: tf.Tensor | undefined;
      // Decode fast path: the projections take the [B, D] matrix, so no reshape wraps each of their matmuls; the
      // rows below then have no T axis ([B, n·d] instead of [B, T, n·d]).
      const input = fastStep ? tf.reshape(x, [B, x.shape[2]]) : x; // [B, T, D] or [B, D]
      if (qkvProj != null) {
        const qkv = qkvProj.forward(input); // [B, T, H·Dh + KV·Dh + KV·Dv]
        [q, k, v] = tf.split(qkv, [H * Dh, KV * Dh, KV * Dv], -1); // [B, T, H·Dh], [B, T, KV·Dh], [B, T, KV·Dv]
      } else {
        q = qProj!.forward(input); // [B, T, H·Dh]
        if (kProj != null) k = kProj.forward(input); // [B, T, KV·Dh]
        if (vProj != null) v = vProj.forward(input); // [B, T, KV·Dv]
      }
      const heads = (t: tf.Tensor, n: number, d: number, norm: QKNorm | undefined): tf.Tensor4D => {
        if (norm != null && this.qkNormScope === 'projection') t = norm.forward(t); // [B, T, n·d]
        // Decode fast path: [B, 1, n·d] and [B, n, 1, d] hold the same order, so a free reshape, not a copy.
        const headNorm = norm != null && this.qkNormScope === 'head';
        if (fastStep && !headNorm) return tf.reshape(t, [B, n, 1, d]) as tf.Tensor4D; // [B, n, 1, d]
        let h = tf.reshape(t, [B, T, n, d]); // [B, T, n, d]
        if (headNorm) h = norm.forward(h); // [B, T, n, d]
        if (fastStep) return tf.reshape(h, [B, n, 1, d]) as tf.Tensor4D; // [B, n, 1, d]
        return tf.transpose(h, [0, 2, 1, 3]) as tf.Tensor4D; // [B, n, T, d]
      };
      let qh = heads(q, H, Dh, qNorm); // [B, H, T, Dh]
      let kh = this.isKVConsumer ? undefined : heads(k!, KV, Dh, kNorm); // [B, KV, T, Dh]
      if (rotary != null) {
        qh = rotary.apply(qh, rotaryArg!); // [B, H, T, Dh]
        if (kh != null) kh = rotary.apply(kh, rotaryArg!); // [B, KV, T, Dh]
      }

      let kv: SharedKV;
      let inPlace: SharedKV | null = null;
      if (this.isKVConsumer) {
        kv = { keys: call.sharedKV!.keys, values: call.sharedKV!.values, keyPositions: call.sharedKV!.keyPositions.slice() };
      } else {
        const vh = heads(v!, KV, Dv, undefined); // [B, KV, T, Dv]
        // The fused kernel on cpu / wasm reads the cache's own buffers, appended in place (no copy of what is held):
        // keys [B, KV, capacity, Dh], of which the filled slots count, holding the positions inPlace.keyPositions
        // lists. They never leave the cache, so not when the caller wants the keys and values back.
        inPlace = call.cache != null && chosen === 'fused' && !wantKV ? call.cache.appendInPlace(kh!, vh) : null;
        // Otherwise, with a cache: everything held plus the new positions, keys [B, KV, S, Dh], values [B, KV, S, Dv].
        kv = inPlace ?? (call.cache != null ? call.cache.update(kh!, vh) : { keys: kh!, values: vh, keyPositions: queryPositions.slice() });
      }

      let keyMask: tf.Tensor2D | null = null;
      if (call.attentionMask != null) {
        const m = tf.cast(call.attentionMask, 'float32') as tf.Tensor2D; // [B, S_total]
        // The mask's columns for the keys in the order the kernel reads them: a rolling buffer's slots are not in
        // position order.
        const order = inPlace?.keyPositions;
        const columns = order == null ? keyIndexForMask : isIdentity(order, m.shape[1]) ? null : order;
        keyMask = columns == null ? m : (tf.gather(m, tf.tensor1d(columns, 'int32'), 1) as tf.Tensor2D); // [B, S]
      }
      const kernelOptions: AttentionKernelOptions = {
        scale: this.scale,
        softcap: this.softcap,
        rules: this.maskRules,
        queryPositions,
        keyPositions: kv.keyPositions,
        keyMask,
      };
      const o =
        inPlace != null
          ? fusedAttentionOverBuffers(qh, kv.keys, kv.values, kernelOptions)
          : chosen === 'fused'
          ? fusedAttention(qh, kv.keys, kv.values, { ...kernelOptions, implementation: 'fused' })
          : chosen === 'chunked'
            ? chunkedAttention(qh, kv.keys, kv.values, { ...kernelOptions, queryBlockSize: this.queryBlockSize, keyBlockSize: this.keyBlockSize })
            : naiveAttention(qh, kv.keys, kv.values, kernelOptions); // [B, H, T, Dv]
      const merged = fastStep ? tf.reshape(o, [B, H * Dv]) : tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B, T, H * Dv]); // [B, H·Dv] or [B, T, H·Dv]
      const projected = oProj.forward(merged); // [B, outputSize] or [B, T, outputSize]
      const output = (fastStep ? tf.reshape(projected, [B, 1, projected.shape[1]!]) : projected) as tf.Tensor3D; // [B, T, outputSize]
      if (!wantKV) return { output };
      // The consumer's sharedKV belongs to the caller: hand back new handles, not the same tensors.
      const keys = this.isKVConsumer ? kv.keys.clone() : kv.keys;
      const values = this.isKVConsumer ? kv.values.clone() : kv.values;
      return { output, keys, values };
    });
    this.lastImplementation = chosen;
    if (!wantKV) return { output: result.output };
    return { output: result.output, kv: { keys: result.keys as tf.Tensor4D, values: result.values as tf.Tensor4D, keyPositions } };
  }

  /** Eager checks of a call; computes positions and the key columns of the attention mask. */
  private validateCall(
    x: tf.Tensor3D,
    call: AttentionCall,
  ): {
    B: number;
    T: number;
    queryPositions: number[];
    keyPositions: number[];
    keyIndexForMask: number[] | null;
    implementation: AttentionImplementation;
  } {
    if (call == null || typeof call !== 'object') configError('call', 'call options must be an object', 'an object', call);
    if (!(x instanceof tf.Tensor) || x.rank !== 3) {
      shapeError('x', `x must be rank 3 [B, T, ${this.hiddenSize}], found ${x instanceof tf.Tensor ? `[${x.shape.join(', ')}]` : typeof x}`, 3, x instanceof tf.Tensor ? x.shape : typeof x);
    }
    const [B, T, D] = x.shape;
    if (D !== this.hiddenSize) shapeError('x', `x's last dimension must be hiddenSize = ${this.hiddenSize}, found ${D} (x shape [${x.shape.join(', ')}])`, this.hiddenSize, D);
    if (x.dtype !== 'float32') shapeError('x', `x must be float32, found ${x.dtype}`, 'float32', x.dtype);
    if (T === 0) shapeError('x', 'x has no tokens (T = 0)', 'T >= 1', 0);
    const implementation = call.implementation ?? this.implementation;
    checkImplementation('implementation', implementation);
    const { cache, sharedKV } = call;

    if (this.isKVConsumer && sharedKV == null) {
      configError('sharedKV', 'this layer has no k/v projections (a KV consumer): pass sharedKV, the producer layer\'s keys and values (forwardWithKV().kv or its cache.read())', 'sharedKV', undefined);
    }
    if (!this.isKVConsumer && sharedKV != null) {
      configError('sharedKV', 'sharedKV is only for a KV consumer (a layer built without kProj/vProj); this layer computes its own keys and values', 'no sharedKV', 'sharedKV');
    }
    if (this.isKVConsumer && cache != null) {
      configError('cache', 'a KV consumer does not update a cache: pass the producer\'s keys and values as sharedKV', 'no cache', 'cache');
    }
    if (cache != null) {
      if (!(cache instanceof AttentionCache)) configError('cache', 'cache must be an AttentionCache (KVCache or SlidingWindowCache)', 'AttentionCache', typeof cache);
      if (cache instanceof SlidingWindowCache) {
        if (this.slidingWindow == null || cache.window < this.slidingWindow) {
          configError('cache', `a SlidingWindowCache of window ${cache.window} would drop keys this layer still sees (slidingWindow ${String(this.slidingWindow)}); use a KVCache or a window >= the layer's`, this.slidingWindow, cache.window);
        }
        if (cache.prefixLength < this.prefixLength) {
          configError('cache', `the SlidingWindowCache keeps a prefix of ${cache.prefixLength} but the layer's prefixLength is ${this.prefixLength}`, this.prefixLength, cache.prefixLength);
        }
      }
      cache.checkCompatible(B, this.numKVHeads, this.headDim, this.valueHeadDim);
    }

    // Slot positions of the new tokens (masking), and of the keys.
    let start: number | undefined;
    const p = call.positions;
    if (typeof p === 'number') {
      if (!Number.isInteger(p) || p < 0) configError('positions', `positions must be a non-negative integer or [B][T] numbers, found ${p}`, 'a non-negative integer', p);
      start = p;
    } else if (p != null && !Array.isArray(p)) {
      return configError('positions', 'positions must be a number or a [B][T] array', 'number | number[][]', typeof p);
    }
    if (Array.isArray(p)) {
      const ok = p.length === B && p.every((row) => Array.isArray(row) && row.length === T && row.every((n) => typeof n === 'number' && Number.isFinite(n)));
      if (!ok) shapeError('positions', `per-row positions must be [${B}][${T}] finite numbers, found ${p.length} rows`, [B, T], p.length);
    }
    let keyPositions: number[];
    if (cache != null) {
      if (typeof p === 'number' && p !== cache.length) {
        configError('positions', `positions (${p}) must equal the cache's length (${cache.length}): the cache places new tokens right after what it holds`, cache.length, p);
      }
      start = cache.length;
      keyPositions = [...cache.keyPositions, ...Array.from({ length: T }, (_, t) => cache.length + t)];
    } else if (sharedKV != null) {
      const { keys, values, keyPositions: kp } = sharedKV;
      const bad = (msg: string, expected: unknown, found: unknown): never => shapeError('sharedKV', msg, expected, found);
      if (!(keys instanceof tf.Tensor) || keys.rank !== 4 || !(values instanceof tf.Tensor) || values.rank !== 4) bad('sharedKV.keys and .values must be rank-4 tensors', 'rank 4', 'other');
      const S = keys.shape[2];
      const want = [B, this.numKVHeads, S, this.headDim];
      const wantV = [B, this.numKVHeads, S, this.valueHeadDim];
      if (keys.shape.some((d, i) => d !== want[i])) bad(`sharedKV.keys must be [${want.join(', ')}], found [${keys.shape.join(', ')}]`, want, keys.shape);
      if (values.shape.some((d, i) => d !== wantV[i])) bad(`sharedKV.values must be [${wantV.join(', ')}], found [${values.shape.join(', ')}]`, wantV, values.shape);
      if (!Array.isArray(kp) || kp.length !== S) bad(`sharedKV.keyPositions must list ${S} positions, found ${Array.isArray(kp) ? kp.length : typeof kp}`, S, kp);
      if (S < T && typeof p !== 'number') bad(`sharedKV holds ${S} keys, fewer than the ${T} new tokens; pass positions`, `>= ${T}`, S);
      keyPositions = kp.slice();
      start ??= kp[S - 1] - T + 1;
    } else {
      start ??= 0;
      const first = start;
      keyPositions = Array.from({ length: T }, (_, t) => first + t);
    }
    const qStart = start!;
    const queryPositions = Array.from({ length: T }, (_, t) => qStart + t);

    const tables = call.rotaryTables;
    if (tables != null && this.parts.rotary != null) {
      const r = this.parts.rotary.rotaryDim;
      const fits = (t: unknown): boolean =>
        t instanceof tf.Tensor && (t.rank === 2 || (t.rank === 3 && (t.shape[0] === B || t.shape[0] === 1))) && t.shape[t.rank - 2] === T && t.shape[t.rank - 1] === r;
      if (!fits(tables.cos) || !fits(tables.sin)) {
        const show = (t: unknown) => (t instanceof tf.Tensor ? `[${t.shape.join(', ')}]` : typeof t);
        shapeError('rotaryTables', `rotaryTables cos and sin must be [${T}, ${r}] or [${B}, ${T}, ${r}], found ${show(tables.cos)} and ${show(tables.sin)}`, [T, r], [show(tables.cos), show(tables.sin)]);
      }
    }

    let keyIndexForMask: number[] | null = null;
    const m = call.attentionMask;
    if (m != null) {
      const total = qStart + T;
      if (!(m instanceof tf.Tensor) || m.rank !== 2 || m.shape[0] !== B || m.shape[1] !== total) {
        shapeError(
          'attentionMask',
          `attentionMask must be [B, S_total] = [${B}, ${total}] (every position so far, cached and new), found ${m instanceof tf.Tensor ? `[${m.shape.join(', ')}]` : typeof m}`,
          [B, total],
          m instanceof tf.Tensor ? m.shape : typeof m,
        );
      }
      if (!isIdentity(keyPositions, total)) {
        const outside = keyPositions.find((kp) => !Number.isInteger(kp) || kp < 0 || kp >= total);
        if (outside !== undefined) shapeError('attentionMask', `key position ${outside} lies outside the attentionMask's ${total} columns`, `< ${total}`, outside);
        keyIndexForMask = keyPositions;
      }
    }
    return { B, T, queryPositions, keyPositions, keyIndexForMask, implementation };
  }
}

/** Whether `positions` are exactly 0 … n − 1. */
function isIdentity(positions: readonly number[], n: number): boolean {
  return positions.length === n && positions.every((p, i) => p === i);
}

function checkImplementation(field: string, value: unknown): asserts value is AttentionImplementation {
  if (value !== 'auto' && value !== 'naive' && value !== 'chunked' && value !== 'fused') {
    configError(field, `implementation must be "auto", "naive", "chunked" or "fused", found ${JSON.stringify(value)}`, ['auto', 'naive', 'chunked', 'fused'], value);
  }
}
