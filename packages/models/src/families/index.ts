/**
 * The families slmkit loads, by Hugging Face `model_type`, and {@link configFromHF}, which picks one.
 *
 * @module
 */
import { ConfigError } from '@slmkit/core';
import type { CausalLMConfig, TransformerFamily } from '../config.js';
import type { ModelFamily } from './family.js';
import { gemmaFamily } from './gemma.js';
import { llamaFamily } from './llama.js';
import { mistralFamily } from './mistral.js';
import { phiFamily } from './phi.js';
import { phi3Family } from './phi3.js';
import { qwen2Family } from './qwen2.js';
import { stablelmFamily } from './stablelm.js';
import { mixtralFamily } from './mixtral.js';
import { olmoeFamily } from './olmoe.js';
import { qwen2MoeFamily } from './qwen2-moe.js';

export type { ModelFamily } from './family.js';
export type { FamilyNames, MoENames } from './names.js';
export { llamaFamily, llamaConfigFromHF } from './llama.js';
export { mistralFamily, mistralConfigFromHF } from './mistral.js';
export { qwen2Family, qwen2ConfigFromHF } from './qwen2.js';
export { gemmaFamily, gemmaConfigFromHF } from './gemma.js';
export { phiFamily, phiConfigFromHF } from './phi.js';
export { phi3Family, phi3ConfigFromHF } from './phi3.js';
export { stablelmFamily, stablelmConfigFromHF } from './stablelm.js';
export { mixtralFamily, mixtralConfigFromHF } from './mixtral.js';
export { qwen2MoeFamily, qwen2MoeConfigFromHF } from './qwen2-moe.js';
export { olmoeFamily, olmoeConfigFromHF } from './olmoe.js';

/**
 * Every family slmkit loads, by Hugging Face `model_type`.
 *
 * @example
 * ```ts
 * import { FAMILIES } from '@slmkit/models';
 * console.log(Object.keys(FAMILIES)); // ["llama", "mistral", "qwen2", "gemma", "phi", "phi3", "stablelm", "mixtral", "qwen2_moe", "olmoe"]
 * ```
 */
export const FAMILIES: Readonly<Record<TransformerFamily, ModelFamily>> = Object.freeze({
  llama: llamaFamily,
  mistral: mistralFamily,
  qwen2: qwen2Family,
  gemma: gemmaFamily,
  phi: phiFamily,
  phi3: phi3Family,
  stablelm: stablelmFamily,
  mixtral: mixtralFamily,
  qwen2_moe: qwen2MoeFamily,
  olmoe: olmoeFamily,
});

/**
 * The family of a Hugging Face `model_type`.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} (field `model_type`) listing the supported types when it is missing or unknown.
 *
 * @example
 * ```ts
 * import { familyOf } from '@slmkit/models';
 * console.log(familyOf('phi3').hfClass); // "Phi3ForCausalLM"
 * ```
 */
export function familyOf(modelType: unknown): ModelFamily {
  if (typeof modelType === 'string' && Object.prototype.hasOwnProperty.call(FAMILIES, modelType)) {
    return FAMILIES[modelType as TransformerFamily];
  }
  const supported = Object.keys(FAMILIES);
  const found = modelType === undefined ? 'nothing' : JSON.stringify(modelType);
  throw new ConfigError(
    `config.json: model_type must be one of ${supported.join(', ')}, found ${found}` +
      (modelType === undefined ? ' (config.json has no model_type)' : ' (no transformer family of that type in @slmkit/models)'),
    { field: 'model_type', expected: supported, found: modelType },
  );
}

/**
 * Maps a parsed Hugging Face `config.json` to a {@link CausalLMConfig}, choosing the family by `model_type`.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the field: `model_type` when it is missing or unsupported, otherwise the
 *   first missing or malformed field of that family's config.
 *
 * @example
 * ```ts
 * import { configFromHF } from '@slmkit/models';
 * const config = configFromHF({
 *   model_type: 'qwen2', vocab_size: 151936, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24,
 *   num_attention_heads: 14, num_key_value_heads: 2, tie_word_embeddings: true,
 * });
 * console.log(config.family, config.headDim); // "qwen2" 64
 * ```
 */
export function configFromHF(json: Record<string, unknown>): CausalLMConfig {
  if (json == null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ConfigError(`config.json must be a JSON object, found ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json}`, {
      field: 'config.json',
      expected: 'an object',
      found: json,
    });
  }
  return familyOf(json.model_type).configFromHF(json);
}
