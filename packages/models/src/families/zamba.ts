/**
 * The `zamba` family (Zyphra's Zamba, `ZambaForCausalLM`): a multi-head Mamba backbone with one shared attention +
 * MLP block applied at the hybrid layers, as a {@link HybridLMConfig}.
 *
 * @module
 */
import { ConfigError } from '@slmkit/core';
import type { LayerSpec } from '@slmkit/hybrid';
import type { HybridLMConfig } from '../hybrid-lm.js';
import { HFFields } from './hf-fields.js';

/**
 * Maps a Zamba `config.json` to a {@link HybridLMConfig}, with `transformers`' `ZambaConfig` defaults for absent
 * fields. `layers_block_type` gives the layers: `mamba` (a pre-norm multi-head Mamba layer) or `hybrid` (the shared
 * block, then a Mamba layer); without it the pattern is `transformers`' default (`mamba, mamba, hybrid`, then
 * `hybrid` at every `i % attn_layer_period == attn_layer_offset` of the remaining layers). Every hybrid layer uses
 * the one shared block: attention over `[hidden ; embeddings]` (`attention_hidden_size` must be `2 · hidden_size`)
 * with `num_attention_heads` heads of `attention_head_dim`, no positional encoding, and a gated MLP of
 * `intermediate_size` with `hidden_act`. The Mamba layers have `n_mamba_heads` heads.
 *
 * @throws {@link @slmkit/core!ConfigError | ConfigError} naming the field when one is missing or malformed.
 *
 * @example
 * ```ts
 * import { zambaConfigFromHF } from '@slmkit/models';
 * const c = zambaConfigFromHF({ model_type: 'zamba', hidden_size: 32, num_hidden_layers: 5, attn_layer_period: 2, attn_layer_offset: 1 });
 * console.log(c.layers.map((l) => (l.sharedBlock == null ? 'mamba' : 'hybrid')).join(' ')); // mamba mamba hybrid mamba hybrid
 * console.log(c.sharedBlocks, c.mamba?.numHeads); // [{ numHeads: 16, numKVHeads: 16, headDim: 4 }] 2
 * ```
 */
export function zambaConfigFromHF(json: Record<string, unknown>): HybridLMConfig {
  if (json.model_type !== 'zamba') {
    throw new ConfigError(`zambaConfigFromHF: model_type must be "zamba", found ${JSON.stringify(json.model_type)}`, {
      field: 'model_type',
      expected: 'zamba',
      found: json.model_type,
    });
  }
  const f = new HFFields(json, 'zamba');
  const hiddenSize = f.int('hidden_size', 3712);
  const numLayers = f.int('num_hidden_layers', 76);
  const numHeads = f.int('num_attention_heads', 16);
  // The shared attention reads the concatenation [hidden ; embeddings]: its input width is fixed at 2 · hidden_size.
  const attentionHidden = f.int('attention_hidden_size', 2 * hiddenSize);
  if (attentionHidden !== 2 * hiddenSize) f.fail('attention_hidden_size', `2 · hidden_size = ${2 * hiddenSize} (the width of [hidden ; embeddings])`, attentionHidden);
  const headDim = f.int('attention_head_dim', Math.floor((2 * hiddenSize) / numHeads));
  const mambaHeads = f.int('n_mamba_heads', 2);
  const intermediateSize = f.int('mamba_expand', 2) * hiddenSize;
  if (intermediateSize % mambaHeads !== 0) f.fail('n_mamba_heads', `a divisor of mamba_expand · hidden_size = ${intermediateSize}`, mambaHeads);
  const rank = json.mamba_dt_rank;
  const timeStepRank = rank === 'auto' || rank == null ? Math.ceil(hiddenSize / 16) : f.int('mamba_dt_rank');
  const mambaAct = json.hidden_mamba_act ?? 'silu';
  if (mambaAct !== 'silu') f.fail('hidden_mamba_act', '"silu" (what the Mamba layers use)', mambaAct);
  const activation = f.activation(['hidden_act'], 'gelu');
  if (activation === 'relu2') f.fail('hidden_act', 'one of silu, gelu, gelu_tanh, relu', json.hidden_act);

  let kinds: unknown[];
  if (json.layers_block_type != null) {
    if (!Array.isArray(json.layers_block_type)) f.fail('layers_block_type', `a list of ${numLayers} "mamba" | "hybrid"`, json.layers_block_type);
    kinds = json.layers_block_type as unknown[];
    if (kinds.length !== numLayers) f.fail('layers_block_type', `a list of num_hidden_layers = ${numLayers} entries`, `${kinds.length} entries`);
  } else {
    const period = f.int('attn_layer_period', 6);
    const offset = f.int('attn_layer_offset', 4);
    kinds = ['mamba', 'mamba', 'hybrid', ...Array.from({ length: Math.max(0, numLayers - 3) }, (_, i) => (i % period === offset ? 'hybrid' : 'mamba'))].slice(0, numLayers);
  }
  const layers: LayerSpec[] = kinds.map((kind, i) => {
    if (kind === 'mamba') return { mixer: 'mamba', feedForward: 'none' };
    if (kind === 'hybrid') return { mixer: 'mamba', feedForward: 'none', sharedBlock: 0 };
    return f.fail(`layers_block_type[${i}]`, '"mamba" or "hybrid"', kind);
  });
  const anyHybrid = layers.some((l) => l.sharedBlock != null);
  return {
    family: 'zamba',
    vocabSize: f.int('vocab_size', 32000),
    hiddenSize,
    normEps: f.positive('rms_norm_eps', 1e-5),
    tieWordEmbeddings: f.flag('tie_word_embeddings', true),
    mamba: {
      intermediateSize,
      stateSize: f.int('mamba_d_state', 16),
      convKernel: f.int('mamba_d_conv', 4),
      timeStepRank,
      numHeads: mambaHeads,
      convBias: f.flag('mamba_conv_bias', true),
      projBias: f.flag('mamba_proj_bias', false),
    },
    mlp: { intermediateSize: f.int('intermediate_size', 14848), activation: activation as 'silu' | 'gelu' | 'gelu_tanh' | 'relu' },
    sharedBlocks: anyHybrid ? [{ numHeads, numKVHeads: f.kvHeads(numHeads), headDim }] : undefined,
    layers,
    bosTokenId: f.tokenId('bos_token_id', 1),
    eosTokenId: f.tokenIds('eos_token_id', 2),
    padTokenId: f.tokenId('pad_token_id', 0),
  };
}
