/**
 * The Mamba-2 family (`mamba2`, e.g. state-spaces/mamba2-*, mistralai/Mamba-Codestral), its typed config and its
 * mapping from `config.json`.
 *
 * @module
 */
import { ConfigError, checkPositiveInt } from '@slmkit/core';
import { HFFields } from './hf-fields.js';

/**
 * The typed, JSON-serialisable configuration of a {@link Mamba2LM}: `Mamba2Config` of `transformers`, in camelCase.
 *
 * @example
 * ```ts
 * import type { Mamba2Config } from '@slmkit/models';
 * const tiny: Mamba2Config = {
 *   family: 'mamba2', vocabSize: 128, hiddenSize: 48, numHeads: 6, headDim: 16, nGroups: 2, stateSize: 8,
 *   numLayers: 2, convKernel: 4, chunkSize: 8, layerNormEpsilon: 1e-5, timeStepMin: 1e-3, useBias: false,
 *   useConvBias: true, tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2, padTokenId: 0,
 * };
 * ```
 */
export interface Mamba2Config {
  /** Always `mamba2`. */
  family: 'mamba2';
  /** `vocab_size`. */
  vocabSize: number;
  /** `hidden_size`. */
  hiddenSize: number;
  /** `num_heads`, H. */
  numHeads: number;
  /** `head_dim`, P; H · P = `expand · hidden_size`, the inner width. */
  headDim: number;
  /** `n_groups`, G (dividing H). */
  nGroups: number;
  /** `state_size`, N. */
  stateSize: number;
  /** `num_hidden_layers`. */
  numLayers: number;
  /** `conv_kernel`. */
  convKernel: number;
  /** `chunk_size` of the chunked scan. */
  chunkSize: number;
  /** `layer_norm_epsilon`, of the block norms, the gated norm and the final norm. */
  layerNormEpsilon: number;
  /** `time_step_min`: `transformers` clamps dt from below at it after the softplus (null: no clamp). */
  timeStepMin: number | null;
  /** `use_bias`: bias on `in_proj` and `out_proj`. */
  useBias: boolean;
  /** `use_conv_bias`. */
  useConvBias: boolean;
  /** `tie_word_embeddings`. */
  tieWordEmbeddings: boolean;
  /** `bos_token_id`. */
  bosTokenId: number | null;
  /** `eos_token_id`: where generation stops by default. */
  eosTokenId: number | number[] | null;
  /** `pad_token_id`. */
  padTokenId: number | null;
}

/**
 * Checks a {@link Mamba2Config} eagerly.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the first invalid field, what was expected and what was found.
 *
 * @example
 * ```ts
 * import { mamba2ConfigFromHF, validateMamba2Config } from '@slmkit/models';
 * validateMamba2Config(mamba2ConfigFromHF({ model_type: 'mamba2', hidden_size: 64, num_heads: 4, head_dim: 32, n_groups: 1 }));
 * ```
 */
export function validateMamba2Config(config: Mamba2Config): void {
  if (config == null || typeof config !== 'object') {
    throw new ConfigError('Mamba2Config must be an object', { field: 'config', expected: 'Mamba2Config', found: config });
  }
  if (config.family !== 'mamba2') {
    throw new ConfigError(`Mamba2Config: family must be "mamba2", found ${JSON.stringify(config.family)}`, { field: 'family', expected: 'mamba2', found: config.family });
  }
  for (const f of ['vocabSize', 'hiddenSize', 'numHeads', 'headDim', 'nGroups', 'stateSize', 'numLayers', 'convKernel', 'chunkSize'] as const) {
    checkPositiveInt('Mamba2Config', f, config[f]);
  }
  if (config.numHeads % config.nGroups !== 0) {
    throw new ConfigError(`Mamba2Config: nGroups must divide numHeads (${config.numHeads}), found ${config.nGroups}`, {
      field: 'nGroups',
      expected: `a divisor of numHeads (${config.numHeads})`,
      found: config.nGroups,
    });
  }
  if (!(typeof config.layerNormEpsilon === 'number' && config.layerNormEpsilon > 0)) {
    throw new ConfigError(`Mamba2Config: layerNormEpsilon must be > 0, found ${config.layerNormEpsilon}`, { field: 'layerNormEpsilon', expected: '> 0', found: config.layerNormEpsilon });
  }
  if (config.timeStepMin !== null && !(typeof config.timeStepMin === 'number' && config.timeStepMin >= 0)) {
    throw new ConfigError(`Mamba2Config: timeStepMin must be a number >= 0 or null, found ${config.timeStepMin}`, { field: 'timeStepMin', expected: '>= 0 or null', found: config.timeStepMin });
  }
}

/**
 * Maps a Mamba-2 `config.json` to a {@link Mamba2Config}, with `transformers`' defaults for absent fields. The
 * inner width `expand · hidden_size` must equal `num_heads · head_dim`.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the field when one is missing, malformed or inconsistent.
 *
 * @example
 * ```ts
 * import { mamba2ConfigFromHF } from '@slmkit/models';
 * // state-spaces/mamba2-130m
 * const c = mamba2ConfigFromHF({
 *   model_type: 'mamba2', vocab_size: 50288, hidden_size: 768, num_heads: 24, head_dim: 64, n_groups: 1,
 *   state_size: 128, num_hidden_layers: 24, tie_word_embeddings: true,
 * });
 * console.log(c.numHeads * c.headDim, c.chunkSize, c.timeStepMin); // 1536 256 0.001
 * ```
 */
export function mamba2ConfigFromHF(json: Record<string, unknown>): Mamba2Config {
  if (json == null || typeof json !== 'object' || json.model_type !== 'mamba2') {
    throw new ConfigError(`mamba2ConfigFromHF: model_type must be "mamba2", found ${JSON.stringify(json?.model_type)}`, {
      field: 'model_type',
      expected: 'mamba2',
      found: json?.model_type,
    });
  }
  const f = new HFFields(json, 'mamba2');
  const hiddenSize = f.int('hidden_size', 4096);
  const expand = f.int('expand', 2);
  const numHeads = f.int('num_heads', 128);
  const headDim = f.int('head_dim', 64);
  if (numHeads * headDim !== expand * hiddenSize) {
    f.fail('head_dim', `expand · hidden_size / num_heads = ${(expand * hiddenSize) / numHeads} (num_heads · head_dim must be the inner width ${expand * hiddenSize})`, json.head_dim);
  }
  const nGroups = f.int('n_groups', 8);
  if (numHeads % nGroups !== 0) f.fail('n_groups', `a divisor of num_heads (${numHeads})`, json.n_groups);
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') f.fail('hidden_act', '"silu" (the only activation Mamba-2 uses)', act);
  const tsm = json.time_step_min;
  if (tsm != null && !(typeof tsm === 'number' && tsm >= 0)) f.fail('time_step_min', 'a number >= 0', tsm);
  const config: Mamba2Config = {
    family: 'mamba2',
    vocabSize: f.int('vocab_size', 32768),
    hiddenSize,
    numHeads,
    headDim,
    nGroups,
    stateSize: f.int('state_size', 128),
    numLayers: f.int('num_hidden_layers', 64),
    convKernel: f.int('conv_kernel', 4),
    chunkSize: f.int('chunk_size', 256),
    layerNormEpsilon: f.positive('layer_norm_epsilon', 1e-5),
    timeStepMin: tsm == null ? 0.001 : (tsm as number),
    useBias: f.flag('use_bias', false),
    useConvBias: f.flag('use_conv_bias', true),
    tieWordEmbeddings: f.flag('tie_word_embeddings', false),
    bosTokenId: f.tokenId('bos_token_id', 0),
    eosTokenId: f.tokenIds('eos_token_id', 2),
    padTokenId: f.tokenId('pad_token_id', 1),
  };
  validateMamba2Config(config);
  return config;
}
