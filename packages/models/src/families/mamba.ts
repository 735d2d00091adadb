/**
 * The Mamba-1 families: `mamba` (state-spaces/mamba-*-hf) and `falcon_mamba` (tiiuae/falcon-mamba-7b), their
 * typed config and its mapping from `config.json`.
 *
 * @module
 */
import { ConfigError, checkPositiveInt } from '@slmkit/core';
import { HFFields } from './hf-fields.js';

/**
 * The Hugging Face `model_type`s of the Mamba-1 families.
 *
 * @example
 * ```ts
 * import type { MambaFamily } from '@slmkit/models';
 * const family: MambaFamily = 'falcon_mamba';
 * ```
 */
export type MambaFamily = 'mamba' | 'falcon_mamba';

/**
 * The typed, JSON-serialisable configuration of a {@link MambaLM}: `MambaConfig` / `FalconMambaConfig` of
 * `transformers`, in camelCase.
 *
 * @example
 * ```ts
 * import type { MambaConfig } from '@slmkit/models';
 * const tiny: MambaConfig = {
 *   family: 'mamba', vocabSize: 128, hiddenSize: 48, intermediateSize: 96, stateSize: 8, numLayers: 2,
 *   convKernel: 4, timeStepRank: 3, layerNormEpsilon: 1e-5, useBias: false, useConvBias: true,
 *   mixerRmsEps: null, tieWordEmbeddings: true, bosTokenId: 1, eosTokenId: 2, padTokenId: 0,
 * };
 * ```
 */
export interface MambaConfig {
  /** `mamba` or `falcon_mamba` (weightless RMSNorms of dt, B and C). */
  family: MambaFamily;
  /** `vocab_size`. */
  vocabSize: number;
  /** `hidden_size`. */
  hiddenSize: number;
  /** `intermediate_size` (`expand · hidden_size`). */
  intermediateSize: number;
  /** `state_size`, N. */
  stateSize: number;
  /** `num_hidden_layers`. */
  numLayers: number;
  /** `conv_kernel`. */
  convKernel: number;
  /** `time_step_rank` (`"auto"` in config.json means `ceil(hidden_size / 16)`). */
  timeStepRank: number;
  /** `layer_norm_epsilon`, of the block norms and the final norm. */
  layerNormEpsilon: number;
  /** `use_bias`: bias on `in_proj` and `out_proj`. */
  useBias: boolean;
  /** `use_conv_bias`. */
  useConvBias: boolean;
  /** Falcon-Mamba's `mixer_rms_eps` (null for Mamba: no dt/B/C norms). */
  mixerRmsEps: number | null;
  /** `tie_word_embeddings`: no `lm_head.weight`, the embedding matrix is the head. */
  tieWordEmbeddings: boolean;
  /** `bos_token_id`. */
  bosTokenId: number | null;
  /** `eos_token_id`: where generation stops by default. */
  eosTokenId: number | number[] | null;
  /** `pad_token_id`. */
  padTokenId: number | null;
}

/**
 * Checks a {@link MambaConfig} eagerly.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the first invalid field.
 *
 * @example
 * ```ts
 * import { mamba130m, validateMambaConfig } from '@slmkit/models';
 * validateMambaConfig(mamba130m()); // fine
 * ```
 */
export function validateMambaConfig(config: MambaConfig): void {
  if (config == null || typeof config !== 'object') {
    throw new ConfigError('MambaConfig must be an object', { field: 'config', expected: 'MambaConfig', found: config });
  }
  if (config.family !== 'mamba' && config.family !== 'falcon_mamba') {
    throw new ConfigError(`MambaConfig: family must be "mamba" or "falcon_mamba", found ${JSON.stringify(config.family)}`, {
      field: 'family',
      expected: ['mamba', 'falcon_mamba'],
      found: config.family,
    });
  }
  for (const f of ['vocabSize', 'hiddenSize', 'intermediateSize', 'stateSize', 'numLayers', 'convKernel', 'timeStepRank'] as const) {
    checkPositiveInt('MambaConfig', f, config[f]);
  }
  if (!(config.layerNormEpsilon > 0)) {
    throw new ConfigError(`MambaConfig: layerNormEpsilon must be > 0, found ${config.layerNormEpsilon}`, { field: 'layerNormEpsilon', expected: '> 0', found: config.layerNormEpsilon });
  }
  if (config.family === 'falcon_mamba' && !(typeof config.mixerRmsEps === 'number' && config.mixerRmsEps > 0)) {
    throw new ConfigError(`MambaConfig: falcon_mamba needs mixerRmsEps > 0, found ${config.mixerRmsEps}`, { field: 'mixerRmsEps', expected: '> 0', found: config.mixerRmsEps });
  }
}

/**
 * Maps a Mamba or Falcon-Mamba `config.json` to a {@link MambaConfig}, with `transformers`' defaults for absent
 * fields.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the field when one is missing or malformed.
 *
 * @example
 * ```ts
 * import { mambaConfigFromHF } from '@slmkit/models';
 * const c = mambaConfigFromHF({ model_type: 'mamba', vocab_size: 50280, hidden_size: 768, num_hidden_layers: 24 });
 * console.log(c.intermediateSize, c.timeStepRank, c.stateSize); // 1536 48 16
 * ```
 */
export function mambaConfigFromHF(json: Record<string, unknown>): MambaConfig {
  const modelType = json.model_type;
  if (modelType !== 'mamba' && modelType !== 'falcon_mamba') {
    throw new ConfigError(`mambaConfigFromHF: model_type must be "mamba" or "falcon_mamba", found ${JSON.stringify(modelType)}`, {
      field: 'model_type',
      expected: ['mamba', 'falcon_mamba'],
      found: modelType,
    });
  }
  const f = new HFFields(json, modelType);
  const hiddenSize = f.int('hidden_size', 768);
  const expand = f.int('expand', 2);
  const rank = json.time_step_rank;
  const timeStepRank = rank === 'auto' || rank == null ? Math.ceil(hiddenSize / 16) : f.int('time_step_rank');
  const config: MambaConfig = {
    family: modelType,
    vocabSize: f.int('vocab_size', 50280),
    hiddenSize,
    intermediateSize: f.int('intermediate_size', expand * hiddenSize),
    stateSize: f.int('state_size', 16),
    numLayers: f.int('num_hidden_layers', 32),
    convKernel: f.int('conv_kernel', 4),
    timeStepRank,
    layerNormEpsilon: f.positive('layer_norm_epsilon', 1e-5),
    useBias: f.flag('use_bias', false),
    useConvBias: f.flag('use_conv_bias', true),
    mixerRmsEps: modelType === 'falcon_mamba' ? f.positive('mixer_rms_eps', 1e-6) : null,
    tieWordEmbeddings: f.flag('tie_word_embeddings', true),
    bosTokenId: f.tokenId('bos_token_id', 0),
    eosTokenId: f.tokenIds('eos_token_id', 0),
    padTokenId: f.tokenId('pad_token_id', 0),
  };
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') f.fail('hidden_act', '"silu" (the only activation Mamba uses)', act);
  validateMambaConfig(config);
  return config;
}
