/**
 * Presets of the Mamba-1 family (state-spaces/mamba-*-hf) and their parameter counts.
 *
 * @module
 */
import { mambaConfigFromHF, validateMambaConfig, type MambaConfig } from './families/mamba.js';

/** state-spaces/mamba-*-hf: GPT-NeoX vocabulary padded to 50280, expand 2, N 16, conv 4, dt rank ⌈hidden/16⌉, tied. */
function mamba(hiddenSize: number, numLayers: number): MambaConfig {
  return mambaConfigFromHF({
    model_type: 'mamba', vocab_size: 50280, hidden_size: hiddenSize, num_hidden_layers: numLayers, state_size: 16,
    expand: 2, conv_kernel: 4, time_step_rank: 'auto', layer_norm_epsilon: 1e-5, use_bias: false, use_conv_bias: true,
    tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 0, pad_token_id: 0,
  });
}

/**
 * Mamba 130M (state-spaces/mamba-130m-hf): 24 layers of width 768.
 *
 * @example
 * ```ts
 * import { countMambaParameters, mamba130m } from '@slmkit/models';
 * console.log(countMambaParameters(mamba130m()).total); // 129135360
 * ```
 */
export function mamba130m(): MambaConfig {
  return mamba(768, 24);
}

/**
 * Mamba 370M (state-spaces/mamba-370m-hf): 48 layers of width 1024.
 *
 * @example
 * ```ts
 * import { mamba370m } from '@slmkit/models';
 * console.log(mamba370m().intermediateSize); // 2048
 * ```
 */
export function mamba370m(): MambaConfig {
  return mamba(1024, 48);
}

/**
 * Mamba 790M (state-spaces/mamba-790m-hf): 48 layers of width 1536.
 *
 * @example
 * ```ts
 * import { mamba790m } from '@slmkit/models';
 * console.log(mamba790m().timeStepRank); // 96
 * ```
 */
export function mamba790m(): MambaConfig {
  return mamba(1536, 48);
}

/**
 * Mamba 1.4B (state-spaces/mamba-1.4b-hf): 48 layers of width 2048.
 *
 * @example
 * ```ts
 * import { mamba1_4b } from '@slmkit/models';
 * console.log(mamba1_4b().numLayers); // 48
 * ```
 */
export function mamba1_4b(): MambaConfig {
  return mamba(2048, 48);
}

/**
 * Mamba 2.8B (state-spaces/mamba-2.8b-hf): 64 layers of width 2560.
 *
 * @example
 * ```ts
 * import { mamba2_8b } from '@slmkit/models';
 * console.log(mamba2_8b().hiddenSize); // 2560
 * ```
 */
export function mamba2_8b(): MambaConfig {
  return mamba(2560, 64);
}

/**
 * The names of the Mamba presets (those of `param-counts.json`).
 *
 * @example
 * ```ts
 * import type { MambaPresetName } from '@slmkit/models';
 * const name: MambaPresetName = 'mamba-130m';
 * ```
 */
export type MambaPresetName = 'mamba-130m' | 'mamba-370m' | 'mamba-790m' | 'mamba-1.4b' | 'mamba-2.8b';

/**
 * Every Mamba preset by name.
 *
 * @example
 * ```ts
 * import { MAMBA_PRESETS } from '@slmkit/models';
 * console.log(Object.keys(MAMBA_PRESETS).length); // 5
 * ```
 */
export const MAMBA_PRESETS: Readonly<Record<MambaPresetName, () => MambaConfig>> = Object.freeze({
  'mamba-130m': mamba130m,
  'mamba-370m': mamba370m,
  'mamba-790m': mamba790m,
  'mamba-1.4b': mamba1_4b,
  'mamba-2.8b': mamba2_8b,
});

/**
 * The parameter count of a Mamba model, by part.
 *
 * @example
 * ```ts
 * import type { MambaParameterCount } from '@slmkit/models';
 * const show = (c: MambaParameterCount) => `${(c.total / 1e6).toFixed(1)}M, ${c.perLayer} per layer`;
 * ```
 */
export interface MambaParameterCount {
  /** Everything, a tied embedding counted once. */
  total: number;
  /** `vocabSize · hiddenSize`. */
  embedding: number;
  /** One layer: its norm and its mixer. */
  perLayer: number;
  /** One mixer: in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj. */
  mixerPerLayer: number;
  /** The final norm. */
  finalNorm: number;
  /** The LM head, 0 when tied. */
  lmHead: number;
}

/**
 * Counts the parameters of a {@link MambaConfig} without building it (what `model.parameterCount().total` gives).
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} for an invalid config.
 *
 * @example
 * ```ts
 * import { countMambaParameters, mamba2_8b } from '@slmkit/models';
 * console.log(countMambaParameters(mamba2_8b()).total); // 2768345600
 * ```
 */
export function countMambaParameters(config: MambaConfig): MambaParameterCount {
  validateMambaConfig(config);
  const { vocabSize: V, hiddenSize: H, intermediateSize: D, stateSize: N, convKernel: K, timeStepRank: R } = config;
  const bias = config.useBias ? 1 : 0;
  const mixer =
    H * 2 * D + bias * 2 * D + // in_proj
    D * K + (config.useConvBias ? D : 0) + // conv1d
    D * (R + 2 * N) + // x_proj
    R * D + D + // dt_proj
    D * N + D + // A_log, D
    D * H + bias * H; // out_proj
  const perLayer = mixer + H;
  const embedding = V * H;
  const lmHead = config.tieWordEmbeddings ? 0 : V * H;
  return { total: embedding + perLayer * config.numLayers + H + lmHead, embedding, perLayer, mixerPerLayer: mixer, finalNorm: H, lmHead };
}
