/**
 * Qwen2 (`Qwen2ForCausalLM`, also Qwen2.5): Llama's layer with q/k/v biases, a large `rope_theta` and, when
 * enabled, a sliding window on the upper layers.
 *
 * @module
 */
import type { CausalLMConfig, LayerType } from '../config.js';
import type { ModelFamily } from './family.js';
import { HFFields } from './hf-fields.js';
import { LLAMA_NAMES } from './names.js';

/**
 * Maps a Qwen2 `config.json` to a {@link CausalLMConfig}, with `Qwen2Config`'s defaults (rms_norm_eps 1e-6,
 * max_position_embeddings 32768, untied head, no bos/eos). q, k and v have biases, o has none.
 *
 * The sliding window applies only when `use_sliding_window` is true (it is false in every released Qwen2 and
 * Qwen2.5 checkpoint), and then only to layers `i >= max_window_layers`; an explicit `layer_types` list (newer
 * `transformers`) takes precedence.
 *
 * @throws `ConfigError` naming the field for a missing or malformed value.
 *
 * @example
 * ```ts
 * import { qwen2ConfigFromHF } from '@slmkit/models';
 * const config = qwen2ConfigFromHF({
 *   model_type: 'qwen2', vocab_size: 151936, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24,
 *   num_attention_heads: 14, num_key_value_heads: 2, rope_theta: 1000000, tie_word_embeddings: true,
 *   use_sliding_window: false, sliding_window: 32768, max_window_layers: 21,
 * });
 * console.log(config.slidingWindow, config.attentionBias); // null { q: true, k: true, v: true, o: false }
 * ```
 */
export function qwen2ConfigFromHF(json: Record<string, unknown>): CausalLMConfig {
  return qwen2Config(new HFFields(json, 'qwen2'), 'qwen2', 'explicit');
}

/**
 * Qwen2's config from its fields, for `qwen2` and for `qwen2_moe` (which adds its mixture of experts to it).
 * Internal to the families.
 */
export function qwen2Config(f: HFFields, family: 'qwen2' | 'qwen2_moe', headDimRule: Parameters<HFFields['dimensions']>[0]): CausalLMConfig {
  const dims = f.dimensions(headDimRule);
  const { headDim, numLayers } = dims;
  const maxPositionEmbeddings = f.int('max_position_embeddings', 32768);

  const { slidingWindow, layerTypes } = qwen2Windows(f, numLayers);

  const config: CausalLMConfig = {
    family,
    ...dims,
    activation: f.activation(['hidden_act'], 'silu'),
    mlp: 'gated',
    norm: { type: 'rms', eps: f.positive('rms_norm_eps', 1e-6) },
    rotary: f.rotary({ max_position_embeddings: maxPositionEmbeddings, head_dim: headDim }),
    attentionBias: { q: true, k: true, v: true, o: false },
    mlpBias: false,
    qkNorm: null,
    fusedQKV: false,
    fusedGateUp: false,
    parallelResidual: false,
    slidingWindow,
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    lmHeadBias: false,
    scaleEmbeddings: false,
    maxPositionEmbeddings,
    ...f.specialTokens(null, null, null),
  };
  if (layerTypes !== undefined) config.layerTypes = layerTypes;
  return config;
}

/**
 * Qwen2's sliding-window layout (shared with Qwen2-MoE): an explicit `layer_types` list, else the window on layers
 * `i >= max_window_layers` when `use_sliding_window` is true, else none. `layerTypes` is undefined when no layer
 * is windowed.
 */
export function qwen2Windows(f: HFFields, numLayers: number): { slidingWindow: number | null; layerTypes: LayerType[] | undefined } {
  const json = f.json;
  let layerTypes: LayerType[] | undefined;
  if (Array.isArray(json.layer_types)) {
    const types = json.layer_types as unknown[];
    if (types.length !== numLayers) f.fail('layer_types', `a list of num_hidden_layers (${numLayers}) entries`, types.length);
    types.forEach((t, i) => {
      if (t !== 'full_attention' && t !== 'sliding_attention') f.fail(`layer_types[${i}]`, '"full_attention" or "sliding_attention"', t);
    });
    layerTypes = types as LayerType[];
  } else if (f.flag('use_sliding_window', false)) {
    const maxWindowLayers = f.int('max_window_layers', 28);
    layerTypes = Array.from({ length: numLayers }, (_, i) => (i >= maxWindowLayers ? 'sliding_attention' : 'full_attention'));
  }
  const windowed = layerTypes?.some((t) => t === 'sliding_attention') ?? false;
  return { slidingWindow: windowed ? f.int('sliding_window', 4096) : null, layerTypes: windowed ? layerTypes : undefined };
}

/**
 * The Qwen2 family: `model_type` `qwen2`, Llama's parameter names.
 *
 * @example
 * ```ts
 * import { qwen2Family } from '@slmkit/models';
 * console.log(qwen2Family.hfClass); // "Qwen2ForCausalLM"
 * ```
 */
export const qwen2Family: ModelFamily = Object.freeze({
  modelType: 'qwen2',
  hfClass: 'Qwen2ForCausalLM',
  names: LLAMA_NAMES,
  configFromHF: qwen2ConfigFromHF,
});
