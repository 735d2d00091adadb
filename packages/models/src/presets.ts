/**
 * Named presets: the published shapes of real small models, each a one-liner over {@link CausalLMConfig}.
 *
 * Each preset is its model's Hugging Face `config.json` (the fields that matter, as published; the repository is
 * named on each) mapped by {@link configFromHF}, so a preset is exactly what loading that checkpoint's config
 * gives. The shapes (widths, layers, heads, vocabulary, tying) are checked in the tests against
 * `@slmkit/fixtures/specs/param-counts.json`, whose parameter counts `transformers` computed from the same shapes.
 *
 * Each call returns a fresh object, so a caller may change one (a shorter context, fewer layers) without touching
 * anybody else's.
 *
 * @module
 */
import type { CausalLMConfig } from './config.js';
import { configFromHF } from './families/index.js';

/** Maps a literal config.json; the clone keeps the literal's nested objects out of the result. */
function fromHF(json: Record<string, unknown>): CausalLMConfig {
  return configFromHF(structuredClone(json));
}

// The published config.json of each model, trimmed to the fields the mapping reads (dropout, initializer range,
// torch dtype and the like are left out; absent fields take the config class's defaults, as in `transformers`).

const TINYLLAMA = {
  model_type: 'llama', vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22,
  num_attention_heads: 32, num_key_value_heads: 4, hidden_act: 'silu', max_position_embeddings: 2048,
  rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: null, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};

/** SmolLM (v1): a Llama with tied embeddings, `<|endoftext|>` (id 0) as bos and eos. */
function smollm(shape: { hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number }) {
  return {
    model_type: 'llama', vocab_size: 49152, ...shape, hidden_act: 'silu', max_position_embeddings: 2048,
    rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: null, tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 0,
  };
}

const LLAMA_3_2_1B = {
  model_type: 'llama', vocab_size: 128256, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
  num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, hidden_act: 'silu', max_position_embeddings: 131072,
  rms_norm_eps: 1e-5, rope_theta: 500000,
  rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  attention_bias: false, mlp_bias: false, tie_word_embeddings: true, bos_token_id: 128000, eos_token_id: 128001,
};

const MISTRAL_7B = {
  model_type: 'mistral', vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 8, hidden_act: 'silu', max_position_embeddings: 32768,
  rms_norm_eps: 1e-5, rope_theta: 10000, sliding_window: 4096, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};

/** Qwen2 base models: rope theta 1e6, a 131k context, `<|endoftext|>` (151643) as bos and eos, no window in use. */
function qwen2(shape: { hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number }) {
  return {
    model_type: 'qwen2', vocab_size: 151936, ...shape, hidden_act: 'silu', max_position_embeddings: 131072,
    rms_norm_eps: 1e-6, rope_theta: 1000000, use_sliding_window: false, sliding_window: 131072,
    max_window_layers: shape.num_hidden_layers, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151643,
  };
}

const GEMMA_2B = {
  model_type: 'gemma', vocab_size: 256000, hidden_size: 2048, intermediate_size: 16384, num_hidden_layers: 18,
  num_attention_heads: 8, num_key_value_heads: 1, head_dim: 256, hidden_act: 'gelu', hidden_activation: 'gelu_pytorch_tanh',
  max_position_embeddings: 8192, rms_norm_eps: 1e-6, rope_theta: 10000, attention_bias: false,
  bos_token_id: 2, eos_token_id: 1, pad_token_id: 0,
};

/**
 * Phi-1.5 and Phi-2. phi-1_5's config.json leaves bos and eos null; 50256 is `<|endoftext|>` of the CodeGen
 * tokenizer both share, the id phi-2's config.json names.
 */
function phi(shape: { hidden_size: number; intermediate_size: number; num_hidden_layers: number; partial_rotary_factor: number }) {
  return {
    model_type: 'phi', vocab_size: 51200, ...shape, num_attention_heads: 32, num_key_value_heads: 32,
    hidden_act: 'gelu_new', max_position_embeddings: 2048, layer_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: null,
    qk_layernorm: false, tie_word_embeddings: false, bos_token_id: 50256, eos_token_id: 50256,
  };
}

const PHI_3_MINI_4K = {
  model_type: 'phi3', vocab_size: 32064, hidden_size: 3072, intermediate_size: 8192, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 32, hidden_act: 'silu', max_position_embeddings: 4096,
  original_max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: null,
  sliding_window: 2047, attention_bias: false, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 32000,
  pad_token_id: 32000,
};

const MIXTRAL_8X7B = {
  model_type: 'mixtral', vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 8, hidden_act: 'silu', max_position_embeddings: 32768,
  rms_norm_eps: 1e-5, rope_theta: 1000000, sliding_window: null, num_local_experts: 8, num_experts_per_tok: 2,
  router_aux_loss_coef: 0.02, router_jitter_noise: 0, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};

/**
 * TinyLlama 1.1B (`TinyLlama/TinyLlama-1.1B-Chat-v1.0`): Llama 2 layout, GQA 32 q / 4 kv heads, 2k context.
 * 1,100,048,384 parameters.
 *
 * @example
 * ```ts
 * import { tinyllama, countParameters } from '@slmkit/models';
 * console.log(countParameters(tinyllama()).total); // 1100048384
 * ```
 */
export function tinyllama(): CausalLMConfig {
  return fromHF(TINYLLAMA);
}

/**
 * SmolLM 135M (`HuggingFaceTB/SmolLM-135M`): a deep, narrow Llama (30 layers at width 576, 9 q / 3 kv heads) with
 * tied embeddings. 134,515,008 parameters.
 *
 * @example
 * ```ts
 * import { smollm135m } from '@slmkit/models';
 * const config = { ...smollm135m(), numLayers: 4 }; // a shallow variant for experiments
 * console.log(config.hiddenSize); // 576
 * ```
 */
export function smollm135m(): CausalLMConfig {
  return fromHF(smollm({ hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3 }));
}

/**
 * SmolLM 360M (`HuggingFaceTB/SmolLM-360M`): 32 layers at width 960, 15 q / 5 kv heads, tied embeddings.
 * 361,821,120 parameters.
 *
 * @example
 * ```ts
 * import { smollm360m } from '@slmkit/models';
 * console.log(smollm360m().numKVHeads); // 5
 * ```
 */
export function smollm360m(): CausalLMConfig {
  return fromHF(smollm({ hidden_size: 960, intermediate_size: 2560, num_hidden_layers: 32, num_attention_heads: 15, num_key_value_heads: 5 }));
}

/**
 * SmolLM 1.7B (`HuggingFaceTB/SmolLM-1.7B`): 24 layers at width 2048, full multi-head attention (32 kv heads),
 * tied embeddings. 1,711,376,384 parameters.
 *
 * @example
 * ```ts
 * import { smollm1_7b } from '@slmkit/models';
 * console.log(smollm1_7b().numHeads === smollm1_7b().numKVHeads); // true (MHA)
 * ```
 */
export function smollm1_7b(): CausalLMConfig {
  return fromHF(smollm({ hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 24, num_attention_heads: 32, num_key_value_heads: 32 }));
}

/**
 * Llama 3.2 1B (`meta-llama/Llama-3.2-1B`): 16 layers, GQA 32 q / 8 kv heads, a 128k vocabulary with tied
 * embeddings, rope theta 500000 with Llama 3.1's frequency scaling (factor 32 over an 8k original context).
 * 1,235,814,400 parameters.
 *
 * @example
 * ```ts
 * import { llama32_1b } from '@slmkit/models';
 * console.log(llama32_1b().rotary.scaling?.type); // "llama3"
 * ```
 */
export function llama32_1b(): CausalLMConfig {
  return fromHF(LLAMA_3_2_1B);
}

/**
 * Mistral 7B v0.1 (`mistralai/Mistral-7B-v0.1`): GQA 32 q / 8 kv heads and a 4096-token sliding window (query i
 * sees key j iff 0 <= i - j < 4096). 7,241,732,096 parameters.
 *
 * @example
 * ```ts
 * import { mistral7b } from '@slmkit/models';
 * console.log(mistral7b().slidingWindow); // 4096
 * ```
 */
export function mistral7b(): CausalLMConfig {
  return fromHF(MISTRAL_7B);
}

/**
 * Qwen2 0.5B (`Qwen/Qwen2-0.5B`): 24 layers at width 896, GQA 14 q / 2 kv heads, biases on q/k/v, a 152k
 * vocabulary with tied embeddings. 494,032,768 parameters.
 *
 * @example
 * ```ts
 * import { qwen2_0_5b } from '@slmkit/models';
 * console.log(qwen2_0_5b().attentionBias); // { q: true, k: true, v: true, o: false }
 * ```
 */
export function qwen2_0_5b(): CausalLMConfig {
  return fromHF(qwen2({ hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2 }));
}

/**
 * Qwen2 1.5B (`Qwen/Qwen2-1.5B`): 28 layers at width 1536, GQA 12 q / 2 kv heads, biases on q/k/v, tied
 * embeddings. 1,543,714,304 parameters.
 *
 * @example
 * ```ts
 * import { qwen2_1_5b } from '@slmkit/models';
 * console.log(qwen2_1_5b().headDim); // 128
 * ```
 */
export function qwen2_1_5b(): CausalLMConfig {
  return fromHF(qwen2({ hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2 }));
}

/**
 * Gemma 2B (`google/gemma-2b`): multi-query attention (8 q heads, 1 kv head) with head_dim 256 at width 2048,
 * GeGLU with the tanh gelu, RMSNorm computing `x * (1 + w)`, embeddings scaled by sqrt(2048), a 256k vocabulary,
 * tied. 2,506,172,416 parameters.
 *
 * @example
 * ```ts
 * import { gemma2b } from '@slmkit/models';
 * const g = gemma2b();
 * console.log(g.numHeads * g.headDim, g.hiddenSize); // 2048 2048
 * ```
 */
export function gemma2b(): CausalLMConfig {
  return fromHF(GEMMA_2B);
}

/**
 * Phi-1.5 (`microsoft/phi-1_5`): 24 layers at width 2048, parallel attention and MLP behind one LayerNorm, rotary
 * on half of each 64-wide head, biases everywhere including the LM head. 1,418,270,720 parameters.
 *
 * @example
 * ```ts
 * import { phi1_5 } from '@slmkit/models';
 * console.log(phi1_5().rotary.rotaryDim); // 32
 * ```
 */
export function phi1_5(): CausalLMConfig {
  return fromHF(phi({ hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 24, partial_rotary_factor: 0.5 }));
}

/**
 * Phi-2 (`microsoft/phi-2`): 32 layers at width 2560, the Phi-1.5 layout with rotary on 32 of each 80-wide head.
 * 2,779,683,840 parameters.
 *
 * @example
 * ```ts
 * import { phi2 } from '@slmkit/models';
 * console.log(phi2().headDim, phi2().rotary.rotaryDim); // 80 32
 * ```
 */
export function phi2(): CausalLMConfig {
  return fromHF(phi({ hidden_size: 2560, intermediate_size: 10240, num_hidden_layers: 32, partial_rotary_factor: 0.4 }));
}

/**
 * Phi-3 mini, 4k context (`microsoft/Phi-3-mini-4k-instruct`): 32 layers at width 3072, multi-head attention,
 * q/k/v fused into one `qkv_proj` and gate/up into one `gate_up_proj` in the checkpoint, a 2047-token sliding
 * window. 3,821,079,552 parameters.
 *
 * @example
 * ```ts
 * import { phi3mini4k } from '@slmkit/models';
 * const p = phi3mini4k();
 * console.log(p.fusedQKV, p.fusedGateUp); // true true
 * ```
 */
export function phi3mini4k(): CausalLMConfig {
  return fromHF(PHI_3_MINI_4K);
}

/**
 * Mixtral 8x7B (`mistralai/Mixtral-8x7B-v0.1`): Mistral 7B's attention (GQA 32 q / 8 kv heads, no sliding window,
 * rope theta 1e6) with a sparse mixture of 8 SwiGLU experts of width 14336 in each of its 32 layers, 2 per token.
 * 46,702,792,704 parameters, of which 12,879,925,248 are active per token.
 *
 * @example
 * ```ts
 * import { countParameters, mixtral8x7b } from '@slmkit/models';
 * const { total, active } = countParameters(mixtral8x7b());
 * console.log(total, active); // 46702792704 12879925248
 * ```
 */
export function mixtral8x7b(): CausalLMConfig {
  return fromHF(MIXTRAL_8X7B);
}

/**
 * The name of a preset in {@link PRESETS}; the same names as the entries of
 * `@slmkit/fixtures/specs/param-counts.json`.
 *
 * @example
 * ```ts
 * import type { PresetName } from '@slmkit/models';
 * const name: PresetName = 'smollm-135m';
 * ```
 */
export type PresetName =
  | 'tinyllama-1.1b'
  | 'smollm-135m'
  | 'smollm-360m'
  | 'smollm-1.7b'
  | 'llama-3.2-1b'
  | 'mistral-7b'
  | 'qwen2-0.5b'
  | 'qwen2-1.5b'
  | 'gemma-2b'
  | 'phi-1.5'
  | 'phi-2'
  | 'phi-3-mini-4k'
  | 'mixtral-8x7b';

/**
 * Every preset by name; each value makes a fresh {@link CausalLMConfig}. Frozen, so a typo cannot replace one.
 *
 * @example
 * ```ts
 * import { PRESETS, countParameters, type PresetName } from '@slmkit/models';
 * for (const name of Object.keys(PRESETS) as PresetName[]) {
 *   console.log(name, countParameters(PRESETS[name]()).total);
 * }
 * ```
 */
export const PRESETS: Readonly<Record<PresetName, () => CausalLMConfig>> = Object.freeze({
  'tinyllama-1.1b': tinyllama,
  'smollm-135m': smollm135m,
  'smollm-360m': smollm360m,
  'smollm-1.7b': smollm1_7b,
  'llama-3.2-1b': llama32_1b,
  'mistral-7b': mistral7b,
  'qwen2-0.5b': qwen2_0_5b,
  'qwen2-1.5b': qwen2_1_5b,
  'gemma-2b': gemma2b,
  'phi-1.5': phi1_5,
  'phi-2': phi2,
  'phi-3-mini-4k': phi3mini4k,
  'mixtral-8x7b': mixtral8x7b,
});
