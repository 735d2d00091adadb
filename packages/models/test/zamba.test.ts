// The zamba family's config mapping: the fixture's config.json, transformers' defaults, and typed errors that name
// the field. (The fixture's logits and generation are checked in hybrid.test.ts.)
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@slmkit/core';
import { readJson } from '@slmkit/fixtures';
import { hybridConfigFromHF, zambaConfigFromHF } from '../src/index.js';

const fixture = readJson<Record<string, unknown>>('zamba', 'config.json');

describe('zambaConfigFromHF', () => {
  it('maps the fixture config: the layer pattern, one shared block, multi-head Mamba', () => {
    const c = zambaConfigFromHF(fixture);
    expect(c.family).toBe('zamba');
    expect(c.layers).toEqual([
      { mixer: 'mamba', feedForward: 'none' },
      { mixer: 'mamba', feedForward: 'none' },
      { mixer: 'mamba', feedForward: 'none', sharedBlock: 0 },
      { mixer: 'mamba', feedForward: 'none' },
      { mixer: 'mamba', feedForward: 'none', sharedBlock: 0 },
    ]);
    expect(c.sharedBlocks).toEqual([{ numHeads: 4, numKVHeads: 4, headDim: 16 }]);
    expect(c.mamba).toEqual({ intermediateSize: 64, stateSize: 8, convKernel: 4, timeStepRank: 2, numHeads: 2, convBias: true, projBias: false });
    expect(c.mlp).toEqual({ intermediateSize: 48, activation: 'gelu' });
    expect(c.attention).toBeUndefined();
    expect([c.vocabSize, c.hiddenSize, c.normEps, c.tieWordEmbeddings]).toEqual([128, 32, 1e-5, true]);
    expect(hybridConfigFromHF(fixture)).toEqual(c);
  });

  it('follows layers_block_type when given, and transformers\' default pattern otherwise', () => {
    const { layers_block_type: _, ...rest } = fixture;
    // mamba, mamba, hybrid, then hybrid at i % 2 == 1 of the remaining layers.
    expect(zambaConfigFromHF(rest).layers.map((l) => l.sharedBlock ?? -1)).toEqual([-1, -1, 0, -1, 0]);
    const custom = zambaConfigFromHF({ ...fixture, layers_block_type: ['hybrid', 'mamba', 'mamba', 'mamba', 'mamba'] });
    expect(custom.layers.map((l) => l.sharedBlock ?? -1)).toEqual([0, -1, -1, -1, -1]);
    const noHybrid = zambaConfigFromHF({ ...fixture, layers_block_type: ['mamba', 'mamba', 'mamba', 'mamba', 'mamba'] });
    expect(noHybrid.sharedBlocks).toBeUndefined();
  });

  it('uses ZambaConfig\'s defaults: head dim 2·hidden / heads, dt rank ceil(hidden / 16)', () => {
    const c = zambaConfigFromHF({ model_type: 'zamba', hidden_size: 64, num_hidden_layers: 3, num_attention_heads: 4 });
    expect(c.sharedBlocks).toEqual([{ numHeads: 4, numKVHeads: 4, headDim: 32 }]);
    expect(c.mamba?.timeStepRank).toBe(4);
    expect(c.mamba?.numHeads).toBe(2);
    expect(c.mlp?.activation).toBe('gelu');
  });

  const bad: [string, Record<string, unknown>, string, RegExp][] = [
    ['model_type', { model_type: 'jamba' }, 'model_type', /model_type must be "zamba", found "jamba"/],
    ['attention_hidden_size', { attention_hidden_size: 48 }, 'attention_hidden_size', /attention_hidden_size must be 2 · hidden_size = 64 .*found 48/],
    ['n_mamba_heads', { n_mamba_heads: 3 }, 'n_mamba_heads', /n_mamba_heads must be a divisor of mamba_expand · hidden_size = 64, found 3/],
    ['hidden_mamba_act', { hidden_mamba_act: 'relu' }, 'hidden_mamba_act', /hidden_mamba_act must be "silu"/],
    ['layers_block_type length', { layers_block_type: ['mamba'] }, 'layers_block_type', /a list of num_hidden_layers = 5 entries, found "1 entries"/],
    ['layers_block_type entry', { layers_block_type: ['mamba', 'mamba', 'attention', 'mamba', 'hybrid'] }, 'layers_block_type[2]', /"mamba" or "hybrid", found "attention"/],
    ['num_key_value_heads', { num_key_value_heads: 3 }, 'num_key_value_heads', /a divisor of num_attention_heads \(4\), found 3/],
    ['hidden_size', { hidden_size: -1 }, 'hidden_size', /hidden_size must be a positive integer, found -1/],
  ];
  it.each(bad)('rejects a bad %s with a ConfigError naming the field', (_, patch, field, message) => {
    let err: unknown;
    try {
      zambaConfigFromHF({ ...fixture, ...patch });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).details?.field).toBe(field);
    expect((err as Error).message).toMatch(message);
  });
});
