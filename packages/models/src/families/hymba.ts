/**
 * The `hymba` family (NVIDIA's Hymba, `HymbaForCausalLM`, remote code of `nvidia/Hymba-1.5B-Base`): every layer a
 * hybrid-head block (attention heads and SSM heads in parallel), meta tokens, cross-layer KV sharing and sliding
 * windows outside a few global layers, as a {@link HybridLMConfig}.
 *
 * @module
 */
import type { LayerSpec } from '@slmkit/hybrid';
import type { HybridLMConfig } from '../hybrid-lm.js';
import { HFFields } from './hf-fields.js';

/** A list of non-negative integers below `limit`, or a failure naming `field[i]`. */
function indices(f: HFFields, field: string, value: unknown, limit: number): number[] {
  if (!Array.isArray(value)) return f.fail(field, 'a list of layer indices', value);
  return value.map((v, i) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= limit) f.fail(`${field}[${i}]`, `a layer index in 0 … ${limit - 1}`, v);
    return v as number;
  });
}

/**
 * Maps a Hymba `config.json` (NVIDIA's `HymbaConfig`) to a {@link HybridLMConfig}, with that class's defaults for
 * absent fields:
 *
 * - every layer a `hymba` mixer (`layer_type` all `"h"`) with a one-expert feed-forward (`num_experts` must be 1:
 *   the dense SwiGLU stored under `moe.experts.0`);
 * - layers in `global_attn_idx` attend causally over everything; with a `sliding_window` (or `attn_window_size`) W
 *   the others are windowed, `q − k ≤ W` plus the meta tokens (a null `global_attn_idx` windows every layer);
 * - `kv_reuse_group` `[[p, c1, c2…], …]`: each consumer `c` reads layer `p`'s keys and values (`kvFrom: p`);
 * - `num_memory_tokens` meta tokens (`model.memory_tokens`);
 * - the SSM from `mamba_expand` (I = expand · hidden), `mamba_d_state`, `mamba_d_conv`, `mamba_dt_rank` (`"auto"`:
 *   ⌈hidden / 16⌉), `mamba_conv_bias`, `mamba_proj_bias`, `mamba_inner_layernorms` (weighted dt/B/C RMSNorms);
 * - value heads of width I / H; RoPE when `rope` is true (`rope_type` `ntk` with `orig_max_position_embeddings`).
 *
 * The decode window rule is not in `config.json`: set `hymbaDecodeWindow` on the result, or pass it to
 * `fromPretrained` (default `consistent`).
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the field when one is missing or malformed, or
 *   asks for what this port does not run: `num_experts` ≠ 1, `kq_norm` other than `"none"`, a layer type other
 *   than `"h"`, `num_mamba` ≠ 1, `kv_reuse_every_i_layer`, `kv_weight_reuse`, interspersed meta tokens.
 *
 * @example
 * ```ts
 * import { hymbaConfigFromHF } from '@slmkit/models';
 * const c = hymbaConfigFromHF({
 *   model_type: 'hymba', vocab_size: 128, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 4,
 *   num_attention_heads: 4, num_key_value_heads: 2, num_experts: 1, num_memory_tokens: 4, sliding_window: 6,
 *   global_attn_idx: [0, 3], kv_reuse_group: [[1, 2]], rope: true, rope_type: 'ntk',
 *   max_position_embeddings: 128, orig_max_position_embeddings: 64, tie_word_embeddings: true,
 * });
 * console.log(c.layers.map((l) => `${l.window ? 'w' : 'g'}${l.kvFrom ?? ''}`).join(' ')); // g w w1 g
 * ```
 */
export function hymbaConfigFromHF(json: Record<string, unknown>): HybridLMConfig {
  const f = new HFFields(json, 'hymba');
  if (json.model_type !== 'hymba') f.fail('model_type', '"hymba"', json.model_type);
  const hiddenSize = f.int('hidden_size', 4096);
  const numLayers = f.int('num_hidden_layers', 32);
  const numHeads = f.int('num_attention_heads', 32);
  const numKVHeads = f.kvHeads(numHeads, 8);
  if (f.int('num_experts', 16) !== 1) f.fail('num_experts', '1 (a Hymba layer with a routed mixture of experts is not supported)', json.num_experts);
  const kqNorm = json.kq_norm ?? 'none';
  if (kqNorm !== 'none') f.fail('kq_norm', '"none" (q/k norms are not supported)', json.kq_norm);
  if (f.int('num_mamba', 1) !== 1) f.fail('num_mamba', '1', json.num_mamba);
  const reuseEvery = json.kv_reuse_every_i_layer ?? -1;
  if (reuseEvery !== -1) f.fail('kv_reuse_every_i_layer', '-1 (use kv_reuse_group)', reuseEvery);
  if (f.flag('kv_weight_reuse', false)) f.fail('kv_weight_reuse', 'false', json.kv_weight_reuse);
  const interspersed = json.memory_tokens_interspersed_every ?? 0;
  if (interspersed !== 0) f.fail('memory_tokens_interspersed_every', '0 (meta tokens only in front)', interspersed);
  for (const act of ['hidden_act', 'mlp_hidden_act'] as const) {
    if (json[act] != null && json[act] !== 'silu') f.fail(act, '"silu"', json[act]);
  }
  if (json.layer_type != null) {
    if (!Array.isArray(json.layer_type) || json.layer_type.length !== numLayers) f.fail('layer_type', `a list of ${numLayers} layer types`, json.layer_type);
    (json.layer_type as unknown[]).forEach((t, i) => {
      if (t !== 'h') f.fail(`layer_type[${i}]`, '"h" (the hybrid-head layer; other layer types are not supported)', t);
    });
  }
  const dh = f.headDim(hiddenSize, numHeads, false);
  const attnHidden = json.attn_hidden_size ?? -1;
  if (attnHidden !== -1 && attnHidden !== hiddenSize) f.fail('attn_hidden_size', `-1 or hidden_size (${hiddenSize})`, attnHidden);
  const kqHeadDim = json.kq_head_dim ?? -1;
  if (kqHeadDim !== -1 && kqHeadDim !== dh) f.fail('kq_head_dim', `-1 or hidden_size / num_attention_heads (${dh})`, kqHeadDim);

  const expand = f.int('mamba_expand', 2);
  const I = expand * hiddenSize;
  if (I % numHeads !== 0) f.fail('num_attention_heads', `a divisor of mamba_expand · hidden_size (${I})`, numHeads);
  const valueHeadDim = I / numHeads;
  const vHeadDim = json.v_head_dim ?? -1;
  if (vHeadDim !== -1 && vHeadDim !== valueHeadDim) f.fail('v_head_dim', `-1 or mamba_expand · hidden_size / num_attention_heads (${valueHeadDim})`, vHeadDim);
  const rank = json.mamba_dt_rank;
  const timeStepRank = rank === 'auto' || rank == null ? Math.ceil(hiddenSize / 16) : f.int('mamba_dt_rank');
  const normEps = f.positive('rms_norm_eps', 1e-6);

  const bySliding = json.sliding_window ?? null;
  const byAttnWindow = json.attn_window_size ?? null;
  if (bySliding != null && byAttnWindow != null && bySliding !== byAttnWindow) {
    f.fail('attn_window_size', `equal to sliding_window (${String(bySliding)}) when both are given`, byAttnWindow);
  }
  const window = bySliding != null ? f.int('sliding_window') : byAttnWindow != null ? f.int('attn_window_size') : null;
  const global = new Set(json.global_attn_idx == null ? [] : indices(f, 'global_attn_idx', json.global_attn_idx, numLayers));
  const kvFrom = new Map<number, number>();
  const grouped = new Set<number>();
  const groups = json.kv_reuse_group == null ? [] : json.kv_reuse_group;
  if (!Array.isArray(groups)) f.fail('kv_reuse_group', 'a list of layer-index lists', groups);
  (groups as unknown[]).forEach((group, g) => {
    const members = indices(f, `kv_reuse_group[${g}]`, group, numLayers);
    if (members.length < 2) f.fail(`kv_reuse_group[${g}]`, 'a producer followed by at least one consumer', group);
    members.forEach((layer, j) => {
      if (j > 0 && layer <= members[j - 1]) f.fail(`kv_reuse_group[${g}][${j}]`, `a layer after ${members[j - 1]} (ascending)`, layer);
      if (grouped.has(layer)) f.fail(`kv_reuse_group[${g}][${j}]`, 'a layer in no other group', layer);
      grouped.add(layer);
      if (j > 0) kvFrom.set(layer, members[0]);
    });
  });
  const layers: LayerSpec[] = Array.from({ length: numLayers }, (_, i) => {
    const layer: LayerSpec = { mixer: 'hymba', feedForward: 'dense' };
    if (window != null && !global.has(i)) layer.window = true;
    if (kvFrom.has(i)) layer.kvFrom = kvFrom.get(i);
    return layer;
  });
  const rope = f.flag('rope', false);
  return {
    family: 'hymba',
    vocabSize: f.int('vocab_size', 65536),
    hiddenSize,
    normEps,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    attention: {
      numHeads,
      numKVHeads,
      headDim: dh,
      valueHeadDim,
      rotary: rope ? f.rotary({ max_position_embeddings: 262144, rope_theta: 10000 }) : null,
      slidingWindow: window,
    },
    mamba: {
      intermediateSize: I,
      stateSize: f.int('mamba_d_state', 16),
      convKernel: f.int('mamba_d_conv', 4),
      timeStepRank,
      dtBCNorm: f.flag('mamba_inner_layernorms', true) ? { eps: normEps, weight: true } : null,
      convBias: f.flag('mamba_conv_bias', true),
      projBias: f.flag('mamba_proj_bias', false),
    },
    mlp: { intermediateSize: f.int('intermediate_size', 14336), activation: 'silu' },
    metaTokens: json.num_memory_tokens == null || json.num_memory_tokens === 0 ? 0 : f.int('num_memory_tokens'),
    layers,
    bosTokenId: f.tokenId('bos_token_id', 1),
    eosTokenId: f.tokenIds('eos_token_id', 2),
    padTokenId: f.tokenId('pad_token_id', 0),
  };
}

/**
 * Hymba-1.5B (`nvidia/Hymba-1.5B-Base`): 32 hybrid-head layers of width 1600 (25 query heads and 5 KV heads of 64,
 * SSM inner width 3200 with N 16 and dt rank 100, SwiGLU 5504), 128 meta tokens, sliding window 1024 outside the
 * global layers 0, 15 and 31, KV shared in pairs (and the triple 16–18), so 17 of the 32 layers store keys and
 * values; NTK RoPE (original context 2048, max 8192); vocabulary 32001, tied embeddings. Count its parameters
 * without allocating them with `countHybridParameters` from `@slmkit/hybrid`.
 *
 * @example
 * ```ts
 * import { countHybridParameters } from '@slmkit/hybrid';
 * import { hymba1_5b } from '@slmkit/models';
 * const config = hymba1_5b();
 * console.log(countHybridParameters(config).total); // 1522797824
 * ```
 */
export function hymba1_5b(): HybridLMConfig {
  const groups = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [16, 17, 18], [19, 20], [21, 22], [23, 24], [25, 26], [27, 28], [29, 30]];
  return hymbaConfigFromHF({
    model_type: 'hymba', vocab_size: 32001, hidden_size: 1600, intermediate_size: 5504, num_hidden_layers: 32,
    num_attention_heads: 25, num_key_value_heads: 5, num_experts: 1, num_experts_per_tok: 1, kq_norm: 'none',
    layer_type: Array.from({ length: 32 }, () => 'h'), rms_norm_eps: 1e-6, tie_word_embeddings: true,
    mamba_expand: 2, mamba_d_state: 16, mamba_d_conv: 4, mamba_dt_rank: 100, mamba_conv_bias: true,
    mamba_proj_bias: false, mamba_inner_layernorms: true, num_memory_tokens: 128, sliding_window: 1024,
    global_attn_idx: [0, 15, 31], kv_reuse_group: groups, rope: true, rope_type: 'ntk', rope_theta: 10000,
    max_position_embeddings: 8192, orig_max_position_embeddings: 2048, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
  });
}
