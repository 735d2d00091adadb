/**
 * What one model family is to slmkit: the Hugging Face `model_type` it reads, how its `config.json` maps onto a
 * {@link CausalLMConfig}, and how it names its parameters.
 *
 * @module
 */
import type { CausalLMConfig, TransformerFamily } from '../config.js';
import type { FamilyNames } from './names.js';

/**
 * One transformer family: its `model_type`, its config mapping and its parameter names.
 *
 * @example
 * ```ts
 * import { llamaFamily, type ModelFamily } from '@slmkit/models';
 * const family: ModelFamily = llamaFamily;
 * console.log(family.modelType, family.names.finalNorm); // "llama" "norm"
 * ```
 */
export interface ModelFamily {
  /** The Hugging Face `model_type` (also the {@link CausalLMConfig.family} it produces). */
  readonly modelType: TransformerFamily;
  /** The `*ForCausalLM` class of `transformers` whose checkpoints it loads. */
  readonly hfClass: string;
  /** Where its parameter names differ from Llama's. */
  readonly names: Readonly<FamilyNames>;
  /**
   * Maps a parsed `config.json` to a {@link CausalLMConfig}, with the `transformers` config class's defaults for
   * absent fields.
   *
   * @throws `ConfigError` naming the field when a required field is missing or a value is malformed.
   */
  configFromHF(json: Record<string, unknown>): CausalLMConfig;
}
