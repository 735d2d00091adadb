/**
 * The layer-pattern spec: a JSON-serialisable description of a hybrid stack (which mixer and which feed-forward
 * each layer has, which layers share a block or their keys and values), validated strictly.
 *
 * @module
 */
import { ConfigError, type RotaryConfig } from '@slmkit/core';

/**
 * What mixes a layer's tokens:
 *
 * - `attention`: causal self-attention over every earlier position;
 * - `sliding-attention`: causal self-attention over the last `attention.slidingWindow` positions (plus the meta
 *   tokens, when the stack has them);
 * - `mamba`: a Mamba-1 selective-scan mixer (multi-head when `mamba.numHeads` > 1, as Zamba configures it);
 * - `hymba`: Hymba's parallel block, attention heads and SSM heads off one input projection (needs `hymba`).
 *
 * @example
 * ```ts
 * import type { MixerKind } from '@slmkit/hybrid';
 * const kinds: MixerKind[] = ['mamba', 'mamba', 'mamba', 'attention'];
 * ```
 */
export type MixerKind = 'attention' | 'sliding-attention' | 'mamba' | 'hymba';

/**
 * A layer's feed-forward block: a `dense` gated MLP (`mlp`), a sparse mixture of experts (`moe`), or `none`
 * (Mamba and Zamba layers have none).
 *
 * @example
 * ```ts
 * import type { FeedForwardKind } from '@slmkit/hybrid';
 * const everyOther: FeedForwardKind[] = ['dense', 'moe', 'dense', 'moe'];
 * ```
 */
export type FeedForwardKind = 'dense' | 'moe' | 'none';

/**
 * One layer of a {@link HybridSpec}.
 *
 * @example
 * ```ts
 * import type { LayerSpec } from '@slmkit/hybrid';
 * const jambaAttention: LayerSpec = { mixer: 'attention', feedForward: 'moe' };
 * const zambaHybrid: LayerSpec = { mixer: 'mamba', feedForward: 'none', sharedBlock: 0 };
 * const hymbaConsumer: LayerSpec = { mixer: 'hymba', feedForward: 'dense', window: true, kvFrom: 1 };
 * ```
 */
export interface LayerSpec {
  /** What mixes the tokens. */
  mixer: MixerKind;
  /** The feed-forward block after the mixer. */
  feedForward: FeedForwardKind;
  /**
   * Zamba: the index (into {@link HybridSpec.sharedBlocks}) of the shared attention + MLP block this layer applies
   * before its mixer. The block's parameters exist once, however many layers use it; each layer has its own KV
   * cache for it and its own output projection (`linear`).
   */
  sharedBlock?: number;
  /**
   * Cross-layer KV sharing: the index of an earlier layer whose keys and values (and cache) this layer attends
   * over with its own queries. That layer must compute its own; this one then has no key/value projection.
   */
  kvFrom?: number;
  /** For a `hymba` mixer: whether its attention is sliding-window (`attention.slidingWindow`) rather than global. */
  window?: boolean;
}

/**
 * The attention shared by every attention-bearing layer of the stack.
 *
 * @example
 * ```ts
 * import type { HybridAttentionSpec } from '@slmkit/hybrid';
 * const attention: HybridAttentionSpec = { numHeads: 4, numKVHeads: 2, headDim: 16, rotary: null };
 * ```
 */
export interface HybridAttentionSpec {
  /** Query heads. */
  numHeads: number;
  /** Key/value heads (a divisor of `numHeads`). */
  numKVHeads: number;
  /** The query/key head dim. */
  headDim: number;
  /** The value head dim (default `headDim`; Hymba's is `mamba_expand · headDim`). */
  valueHeadDim?: number;
  /** The rotary embedding, or `null` for none (Jamba's attention has no positional encoding). */
  rotary: RotaryConfig | null;
  /** The window of `sliding-attention` layers (and windowed `hymba` layers). */
  slidingWindow?: number | null;
  /** Whether q/k/v/o projections have biases (default false). */
  bias?: boolean;
}

/**
 * The Mamba-1 mixer of every `mamba` (and `hymba`) layer.
 *
 * @example
 * ```ts
 * import type { HybridMambaSpec } from '@slmkit/hybrid';
 * const jamba: HybridMambaSpec = {
 *   intermediateSize: 64, stateSize: 8, convKernel: 4, timeStepRank: 2, dtBCNorm: { eps: 1e-6, weight: true },
 * };
 * ```
 */
export interface HybridMambaSpec {
  /** The inner width `D` (`mamba_expand · hidden_size`). */
  intermediateSize: number;
  /** The state size `N` per channel. */
  stateSize: number;
  /** The causal convolution's width. */
  convKernel: number;
  /** The rank of dt before `dt_proj`. */
  timeStepRank: number;
  /** Mamba heads splitting the inner width, each with its own `x_proj`, `dt_proj`, `A_log`, `D` (Zamba; default 1). */
  numHeads?: number;
  /** RMSNorms of dt, B and C after `x_proj` (Jamba: with weights; absent: none). */
  dtBCNorm?: { eps: number; weight: boolean } | null;
  /** Bias on the convolution (default true). */
  convBias?: boolean;
  /** Bias on `in_proj` and `out_proj` (default false). */
  projBias?: boolean;
}

/**
 * The gated MLP of `dense` layers (and of each expert of `moe` layers, unless `moe.intermediateSize` differs).
 *
 * @example
 * ```ts
 * import type { HybridMLPSpec } from '@slmkit/hybrid';
 * const mlp: HybridMLPSpec = { intermediateSize: 128, activation: 'silu' };
 * ```
 */
export interface HybridMLPSpec {
  /** The MLP's inner width. */
  intermediateSize: number;
  /** The gate's activation (default `silu`). */
  activation?: 'silu' | 'gelu' | 'gelu_tanh' | 'relu';
}

/**
 * The sparse mixture of experts of `moe` layers.
 *
 * @example
 * ```ts
 * import type { HybridMoESpec } from '@slmkit/hybrid';
 * const jamba: HybridMoESpec = { numExperts: 16, topK: 2, normalize: false };
 * ```
 */
export interface HybridMoESpec {
  /** Routed experts. */
  numExperts: number;
  /** Experts per token. */
  topK: number;
  /** Whether the k routing weights are renormalised to sum to 1 (Mixtral: yes; Jamba: no). */
  normalize: boolean;
  /** Each expert's inner width (default `mlp.intermediateSize`). */
  intermediateSize?: number;
}

/**
 * Zamba's shared transformer block: attention over `[hidden ; embeddings]` (width `2 · hiddenSize`) and a gated
 * MLP, its output mapped back into the residual stream by each using layer's own `linear`.
 *
 * @example
 * ```ts
 * import type { SharedBlockSpec } from '@slmkit/hybrid';
 * const zamba: SharedBlockSpec = { numHeads: 4, numKVHeads: 4, headDim: 16 };
 * ```
 */
export interface SharedBlockSpec {
  /** Query heads of the shared attention. */
  numHeads: number;
  /** Key/value heads of the shared attention. */
  numKVHeads: number;
  /** Head dim of the shared attention (its width is `numHeads · headDim`). */
  headDim: number;
}

/**
 * A whole hybrid stack: sizes, the blocks the layers draw from, and the layer pattern. JSON-serialisable;
 * {@link validateHybridSpec} checks it strictly, naming the layer and the field of any problem.
 *
 * @example
 * ```ts
 * import { validateHybridSpec, type HybridSpec } from '@slmkit/hybrid';
 * // Mamba with attention every 4th layer and a mixture of experts every 2nd.
 * const spec: HybridSpec = {
 *   vocabSize: 256, hiddenSize: 32, normEps: 1e-6, tieWordEmbeddings: true,
 *   attention: { numHeads: 4, numKVHeads: 2, headDim: 8, rotary: null },
 *   mamba: { intermediateSize: 64, stateSize: 8, convKernel: 4, timeStepRank: 2 },
 *   mlp: { intermediateSize: 64 },
 *   moe: { numExperts: 4, topK: 2, normalize: false },
 *   layers: Array.from({ length: 8 }, (_, i) => ({
 *     mixer: i % 4 === 3 ? 'attention' : 'mamba',
 *     feedForward: i % 2 === 1 ? 'moe' : 'dense',
 *   })),
 * };
 * validateHybridSpec(spec);
 * ```
 */
export interface HybridSpec {
  /** Vocabulary size. */
  vocabSize: number;
  /** Model width. */
  hiddenSize: number;
  /** Epsilon of every RMSNorm. */
  normEps: number;
  /** Whether the LM head is the embedding matrix. */
  tieWordEmbeddings: boolean;
  /** Needed when a layer has an attention or `hymba` mixer. */
  attention?: HybridAttentionSpec;
  /** Needed when a layer has a `mamba` or `hymba` mixer. */
  mamba?: HybridMambaSpec;
  /** Needed when a layer has a `dense` feed-forward (or a `moe` one, for its experts' width). */
  mlp?: HybridMLPSpec;
  /** Needed when a layer has a `moe` feed-forward. */
  moe?: HybridMoESpec;
  /** Zamba's shared blocks, referenced by {@link LayerSpec.sharedBlock}. */
  sharedBlocks?: SharedBlockSpec[];
  /** Hymba's meta tokens: this many learned rows prepended to the input on prefill (default 0). */
  metaTokens?: number;
  /**
   * The sliding-window rule of windowed `hymba` layers when a call continues a cache (decoding): `consistent`
   * (default) keeps the full forward's `q − k ≤ W` (W + 1 positions), so cached decoding equals the full forward;
   * `reference` uses NVIDIA's decode rule `q − k ≤ W − 1` (W positions), reproducing its generation exactly. Meta
   * tokens stay visible either way. See `HymbaDecodeWindow`.
   */
  hymbaDecodeWindow?: 'consistent' | 'reference';
  /** The layers, in order. */
  layers: LayerSpec[];
  /** Token that ends a sequence (generation stops there by default). */
  eosTokenId?: number | number[] | null;
  /** Token a prompt starts with. */
  bosTokenId?: number | null;
  /** Padding token. */
  padTokenId?: number | null;
}

const MIXERS: readonly MixerKind[] = ['attention', 'sliding-attention', 'mamba', 'hymba'];
const FEED_FORWARDS: readonly FeedForwardKind[] = ['dense', 'moe', 'none'];

function fail(field: string, expected: unknown, found: unknown, detail?: string): never {
  const shown = typeof found === 'string' ? `"${found}"` : JSON.stringify(found) ?? String(found);
  throw new ConfigError(`HybridSpec: ${field} must be ${String(expected)}, found ${shown}${detail == null ? '' : ` (${detail})`}`, {
    field,
    expected,
    found,
  });
}

function positiveInt(field: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(field, 'a positive integer', v);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v != null && typeof v === 'object' && !Array.isArray(v);
}

function knownKeys(field: string, v: Record<string, unknown>, keys: readonly string[]): void {
  for (const k of Object.keys(v)) if (!keys.includes(k)) fail(`${field}.${k}`, `one of the fields ${keys.join(', ')}`, k, 'unknown field');
}

/**
 * Checks a {@link HybridSpec} and returns it: every size a positive integer, every layer's mixer and feed-forward
 * known, the sections that the layers use present, shared-block and KV-sharing references valid.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} whose `field` names the first problem, with the layer index
 *   for a layer's (`layers[3].kvFrom`), the expected and the found value.
 *
 * @example
 * ```ts
 * import { validateHybridSpec } from '@slmkit/hybrid';
 * try {
 *   validateHybridSpec({
 *     vocabSize: 32, hiddenSize: 16, normEps: 1e-6, tieWordEmbeddings: true,
 *     layers: [{ mixer: 'mamba', feedForward: 'none' }],
 *   });
 * } catch (e) {
 *   console.log((e as Error).message); // HybridSpec: mamba must be a Mamba section ... (layers[0] has a mamba mixer)
 * }
 * ```
 */
export function validateHybridSpec(spec: HybridSpec): HybridSpec {
  if (!isObject(spec)) fail('spec', 'an object', spec);
  const s = spec as unknown as Record<string, unknown>;
  knownKeys('spec', s, [
    'vocabSize', 'hiddenSize', 'normEps', 'tieWordEmbeddings', 'attention', 'mamba', 'mlp', 'moe', 'sharedBlocks',
    'metaTokens', 'layers', 'eosTokenId', 'bosTokenId', 'padTokenId', 'hymbaDecodeWindow',
  ]);
  positiveInt('vocabSize', spec.vocabSize);
  positiveInt('hiddenSize', spec.hiddenSize);
  if (typeof spec.normEps !== 'number' || !(spec.normEps > 0) || !Number.isFinite(spec.normEps)) fail('normEps', 'a finite number > 0', spec.normEps);
  if (typeof spec.tieWordEmbeddings !== 'boolean') fail('tieWordEmbeddings', 'a boolean', spec.tieWordEmbeddings);
  if (spec.metaTokens != null && (!Number.isInteger(spec.metaTokens) || spec.metaTokens < 0)) fail('metaTokens', 'a non-negative integer', spec.metaTokens);
  if (!Array.isArray(spec.layers) || spec.layers.length === 0) fail('layers', 'a non-empty array', spec.layers);
  if (spec.hymbaDecodeWindow != null && spec.hymbaDecodeWindow !== 'consistent' && spec.hymbaDecodeWindow !== 'reference') {
    fail('hymbaDecodeWindow', '"consistent" | "reference"', spec.hymbaDecodeWindow);
  }

  const uses = (pred: (l: LayerSpec) => boolean): number => spec.layers.findIndex((l) => isObject(l) && pred(l));
  spec.layers.forEach((layer, i) => {
    const at = `layers[${i}]`;
    if (!isObject(layer)) fail(at, 'an object { mixer, feedForward }', layer);
    knownKeys(at, layer as unknown as Record<string, unknown>, ['mixer', 'feedForward', 'sharedBlock', 'kvFrom', 'window']);
    if (!MIXERS.includes(layer.mixer)) fail(`${at}.mixer`, MIXERS.map((m) => `"${m}"`).join(' | '), layer.mixer);
    if (!FEED_FORWARDS.includes(layer.feedForward)) fail(`${at}.feedForward`, FEED_FORWARDS.map((m) => `"${m}"`).join(' | '), layer.feedForward);
    if (layer.window != null) {
      if (typeof layer.window !== 'boolean') fail(`${at}.window`, 'a boolean', layer.window);
      if (layer.mixer !== 'hymba') fail(`${at}.window`, 'absent unless the mixer is "hymba" (use "sliding-attention")', layer.window);
    }
    if (layer.sharedBlock != null) {
      const n = spec.sharedBlocks?.length ?? 0;
      if (!Number.isInteger(layer.sharedBlock) || layer.sharedBlock < 0 || layer.sharedBlock >= n) {
        fail(`${at}.sharedBlock`, n === 0 ? 'absent (the spec has no sharedBlocks)' : `an index into sharedBlocks, 0 … ${n - 1}`, layer.sharedBlock);
      }
      if (layer.mixer !== 'mamba') fail(`${at}.sharedBlock`, 'used with a "mamba" mixer (Zamba)', layer.mixer);
    }
    if (layer.kvFrom != null) {
      if (!Number.isInteger(layer.kvFrom) || layer.kvFrom < 0 || layer.kvFrom >= i) fail(`${at}.kvFrom`, `the index of an earlier layer, 0 … ${i - 1}`, layer.kvFrom);
      const producer = spec.layers[layer.kvFrom];
      if (layer.mixer === 'mamba') fail(`${at}.kvFrom`, 'used with an attention or "hymba" mixer', layer.mixer);
      if (producer.mixer !== layer.mixer || producer.window !== layer.window) {
        fail(`${at}.kvFrom`, `a layer with the same mixer and window as layer ${i}`, `layer ${layer.kvFrom} (${producer.mixer}${producer.window ? ', window' : ''})`);
      }
      if (producer.kvFrom != null) fail(`${at}.kvFrom`, `a layer that computes its own keys and values (layer ${layer.kvFrom} reads layer ${producer.kvFrom}'s)`, layer.kvFrom);
    }
  });

  const needAttention = uses((l) => l.mixer !== 'mamba');
  if (needAttention >= 0) {
    const a = spec.attention;
    if (!isObject(a)) fail('attention', 'an attention section { numHeads, numKVHeads, headDim, rotary }', a, `layers[${needAttention}] has a ${spec.layers[needAttention].mixer} mixer`);
    knownKeys('attention', a as unknown as Record<string, unknown>, ['numHeads', 'numKVHeads', 'headDim', 'valueHeadDim', 'rotary', 'slidingWindow', 'bias']);
    positiveInt('attention.numHeads', a.numHeads);
    positiveInt('attention.numKVHeads', a.numKVHeads);
    positiveInt('attention.headDim', a.headDim);
    if (a.numHeads % a.numKVHeads !== 0) fail('attention.numKVHeads', `a divisor of numHeads = ${a.numHeads}`, a.numKVHeads);
    if (a.valueHeadDim != null) positiveInt('attention.valueHeadDim', a.valueHeadDim);
    if (a.rotary !== null && !isObject(a.rotary)) fail('attention.rotary', 'a RotaryConfig or null', a.rotary);
    const windowed = uses((l) => l.mixer === 'sliding-attention' || l.window === true);
    if (windowed >= 0 && a.slidingWindow == null) fail('attention.slidingWindow', 'a positive integer', a.slidingWindow, `layers[${windowed}] is windowed`);
    if (a.slidingWindow != null) positiveInt('attention.slidingWindow', a.slidingWindow);
  }
  const needMamba = uses((l) => l.mixer === 'mamba' || l.mixer === 'hymba');
  if (needMamba >= 0) {
    const m = spec.mamba;
    if (!isObject(m)) fail('mamba', 'a Mamba section { intermediateSize, stateSize, convKernel, timeStepRank }', m, `layers[${needMamba}] has a ${spec.layers[needMamba].mixer} mixer`);
    knownKeys('mamba', m as unknown as Record<string, unknown>, ['intermediateSize', 'stateSize', 'convKernel', 'timeStepRank', 'numHeads', 'dtBCNorm', 'convBias', 'projBias']);
    for (const k of ['intermediateSize', 'stateSize', 'convKernel', 'timeStepRank'] as const) positiveInt(`mamba.${k}`, m[k]);
    if (m.numHeads != null) {
      positiveInt('mamba.numHeads', m.numHeads);
      if (m.intermediateSize % m.numHeads !== 0) fail('mamba.numHeads', `a divisor of intermediateSize = ${m.intermediateSize}`, m.numHeads);
    }
  }
  const needMlp = uses((l) => l.feedForward === 'dense');
  if (needMlp >= 0 || (spec.sharedBlocks?.length ?? 0) > 0) {
    if (!isObject(spec.mlp)) fail('mlp', 'an MLP section { intermediateSize }', spec.mlp, needMlp >= 0 ? `layers[${needMlp}] has a dense feed-forward` : 'the shared blocks have an MLP');
    knownKeys('mlp', spec.mlp as unknown as Record<string, unknown>, ['intermediateSize', 'activation']);
    positiveInt('mlp.intermediateSize', spec.mlp.intermediateSize);
  }
  const needMoe = uses((l) => l.feedForward === 'moe');
  if (needMoe >= 0) {
    const e = spec.moe;
    if (!isObject(e)) fail('moe', 'a MoE section { numExperts, topK, normalize }', e, `layers[${needMoe}] has a moe feed-forward`);
    knownKeys('moe', e as unknown as Record<string, unknown>, ['numExperts', 'topK', 'normalize', 'intermediateSize']);
    positiveInt('moe.numExperts', e.numExperts);
    positiveInt('moe.topK', e.topK);
    if (e.topK > e.numExperts) fail('moe.topK', `at most numExperts = ${e.numExperts}`, e.topK);
    if (typeof e.normalize !== 'boolean') fail('moe.normalize', 'a boolean', e.normalize);
    if (e.intermediateSize == null && !isObject(spec.mlp)) fail('moe.intermediateSize', 'a positive integer (or an mlp section)', e.intermediateSize);
    if (e.intermediateSize != null) positiveInt('moe.intermediateSize', e.intermediateSize);
  }
  spec.sharedBlocks?.forEach((b, i) => {
    if (!isObject(b)) fail(`sharedBlocks[${i}]`, 'an object { numHeads, numKVHeads, headDim }', b);
    for (const k of ['numHeads', 'numKVHeads', 'headDim'] as const) positiveInt(`sharedBlocks[${i}].${k}`, b[k]);
    if (b.numHeads % b.numKVHeads !== 0) fail(`sharedBlocks[${i}].numKVHeads`, `a divisor of numHeads = ${b.numHeads}`, b.numKVHeads);
  });
  if ((spec.metaTokens ?? 0) > 0 && needAttention < 0) fail('metaTokens', '0 when no layer attends', spec.metaTokens);
  const hymba = uses((l) => l.mixer === 'hymba');
  if (hymba >= 0) {
    // Hymba: the attention output (H heads of valueHeadDim) and the SSM output share one width before out_proj.
    const a = spec.attention!;
    const m = spec.mamba!;
    const Dv = a.valueHeadDim ?? a.headDim;
    if (Dv * a.numHeads !== m.intermediateSize) {
      fail('attention.valueHeadDim', `mamba.intermediateSize / numHeads = ${m.intermediateSize / a.numHeads}`, Dv, `layers[${hymba}] is hymba: its attention and SSM outputs are averaged`);
    }
    if ((m.numHeads ?? 1) !== 1) fail('mamba.numHeads', '1 (a hymba block has one SSM head group)', m.numHeads, `layers[${hymba}] is hymba`);
  }
  return spec;
}
