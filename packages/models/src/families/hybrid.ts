/**
 * The hybrid families (`jamba`, and the hybrids built on the same spec) and {@link hybridConfigFromHF}, which picks one.
 *
 * @module
 */
import { ConfigError } from '@slmkit/core';
import type { HybridLMConfig } from '../hybrid-lm.js';
import { jambaConfigFromHF } from './jamba.js';
import { zambaConfigFromHF } from './zamba.js';
import { hymbaConfigFromHF } from './hymba.js';

export { jambaConfigFromHF } from './jamba.js';
export { zambaConfigFromHF } from './zamba.js';
export { hymbaConfigFromHF, hymba1_5b } from './hymba.js';

/** Each hybrid `model_type` and its `config.json` mapping. */
const HYBRID_FAMILIES: Readonly<Record<string, (json: Record<string, unknown>) => HybridLMConfig>> = Object.freeze({
  jamba: jambaConfigFromHF,
  zamba: zambaConfigFromHF,
  hymba: hymbaConfigFromHF,
});

/**
 * The Hugging Face `model_type`s that load as a {@link HybridLM}.
 *
 * @example
 * ```ts
 * import { HYBRID_MODEL_TYPES } from '@slmkit/models';
 * console.log(HYBRID_MODEL_TYPES.includes('jamba')); // true
 * ```
 */
export const HYBRID_MODEL_TYPES: readonly string[] = Object.freeze(Object.keys(HYBRID_FAMILIES));

/**
 * Maps a hybrid family's `config.json` to a {@link HybridLMConfig}, choosing the family by `model_type`.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the field: `model_type` when it is not a hybrid
 *   family, otherwise the first missing or malformed field.
 *
 * @example
 * ```ts
 * import { hybridConfigFromHF } from '@slmkit/models';
 * const c = hybridConfigFromHF({ model_type: 'jamba', hidden_size: 32, num_hidden_layers: 4, attn_layer_offset: 2, attn_layer_period: 4 });
 * console.log(c.family, c.layers[2].mixer); // "jamba" "attention"
 * ```
 */
export function hybridConfigFromHF(json: Record<string, unknown>): HybridLMConfig {
  const type = json?.model_type;
  if (typeof type !== 'string' || !Object.prototype.hasOwnProperty.call(HYBRID_FAMILIES, type)) {
    throw new ConfigError(`config.json: model_type must be one of ${HYBRID_MODEL_TYPES.join(', ')}, found ${JSON.stringify(type)}`, {
      field: 'model_type',
      expected: HYBRID_MODEL_TYPES,
      found: type,
    });
  }
  return HYBRID_FAMILIES[type](json);
}
