// The layer-pattern spec's validation: each problem is a ConfigError naming the layer and the field, the
// expected and the found value.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@slmkit/core';
import { validateHybridSpec, type HybridSpec } from '../src/index.js';

const base = (): HybridSpec => ({
  vocabSize: 32,
  hiddenSize: 16,
  normEps: 1e-6,
  tieWordEmbeddings: true,
  attention: { numHeads: 4, numKVHeads: 2, headDim: 4, rotary: null, slidingWindow: 4 },
  mamba: { intermediateSize: 32, stateSize: 4, convKernel: 4, timeStepRank: 2 },
  mlp: { intermediateSize: 32 },
  moe: { numExperts: 4, topK: 2, normalize: false },
  layers: [
    { mixer: 'mamba', feedForward: 'dense' },
    { mixer: 'attention', feedForward: 'moe' },
    { mixer: 'sliding-attention', feedForward: 'none' },
  ],
});

/** The ConfigError `validateHybridSpec` throws for `spec`. */
function errorOf(spec: unknown): ConfigError {
  try {
    validateHybridSpec(spec as HybridSpec);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('no error');
}

describe('validateHybridSpec', () => {
  it('accepts a valid spec and returns it; the spec survives JSON', () => {
    const spec = base();
    expect(validateHybridSpec(spec)).toBe(spec);
    expect(validateHybridSpec(JSON.parse(JSON.stringify(spec)))).toEqual(spec);
  });

  const cases: [string, (s: HybridSpec) => unknown, string, RegExp][] = [
    ['a bad mixer', (s) => (s.layers[1].mixer = 'transformer' as never), 'layers[1].mixer', /"attention" \| "sliding-attention" \| "mamba" \| "hymba", found "transformer"/],
    ['a bad feed-forward', (s) => (s.layers[2].feedForward = 'swiglu' as never), 'layers[2].feedForward', /found "swiglu"/],
    ['an unknown layer field', (s) => ((s.layers[0] as unknown as Record<string, unknown>).norm = 'rms'), 'layers[0].norm', /unknown field/],
    ['kvFrom pointing forward', (s) => (s.layers[1].kvFrom = 2), 'layers[1].kvFrom', /an earlier layer, 0 … 0, found 2/],
    ['kvFrom across mixer kinds', (s) => (s.layers[2].kvFrom = 1), 'layers[2].kvFrom', /the same mixer and window as layer 2/],
    ['kvFrom on a Mamba layer', (s) => (s.layers.push({ mixer: 'mamba', feedForward: 'none', kvFrom: 0 })), 'layers[3].kvFrom', /attention or "hymba" mixer/],
    ['a shared block that does not exist', (s) => (s.layers[0].sharedBlock = 0), 'layers[0].sharedBlock', /no sharedBlocks/],
    ['a missing Mamba section', (s) => delete s.mamba, 'mamba', /layers\[0\] has a mamba mixer/],
    ['a missing MoE section', (s) => delete s.moe, 'moe', /layers\[1\] has a moe feed-forward/],
    ['a missing window', (s) => delete s.attention!.slidingWindow, 'attention.slidingWindow', /layers\[2\] is windowed/],
    ['KV heads not dividing the heads', (s) => (s.attention!.numKVHeads = 3), 'attention.numKVHeads', /a divisor of numHeads = 4, found 3/],
    ['topK above the experts', (s) => (s.moe!.topK = 5), 'moe.topK', /at most numExperts = 4, found 5/],
    ['a zero size', (s) => (s.mamba!.stateSize = 0), 'mamba.stateSize', /a positive integer, found 0/],
    ['Mamba heads not dividing the width', (s) => (s.mamba!.numHeads = 3), 'mamba.numHeads', /a divisor of intermediateSize = 32/],
    ['an empty stack', (s) => (s.layers = []), 'layers', /a non-empty array/],
    ['window on a non-Hymba layer', (s) => (s.layers[1].window = true), 'layers[1].window', /use "sliding-attention"/],
    ['a bad eps', (s) => (s.normEps = -1), 'normEps', /> 0, found -1/],
  ];
  it.each(cases)('rejects %s, naming %s', (_, edit, field, message) => {
    const spec = base();
    edit(spec);
    const e = errorOf(spec);
    expect(e.details.field).toBe(field);
    expect(e.message).toMatch(message);
  });
});
