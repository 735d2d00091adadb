/**
 * The hybrid of this example, written as a layer-pattern spec: Mamba layers, attention every 4th layer, a
 * mixture of experts every 2nd. Nothing else is needed to build it.
 */
import type { HybridLMConfig } from '@slmkit/models';

/** A Mamba stack with attention every 4th layer and a mixture of 4 experts (top 2) every 2nd. */
export function mambaWithAttentionAndMoE(numLayers = 8, vocabSize = 16): HybridLMConfig {
  return {
    family: 'custom', vocabSize, hiddenSize: 32, normEps: 1e-6, tieWordEmbeddings: true,
    attention: { numHeads: 4, numKVHeads: 2, headDim: 8, rotary: { headDim: 8, base: 10_000, maxPositionEmbeddings: 256 } },
    mamba: { intermediateSize: 64, stateSize: 8, convKernel: 4, timeStepRank: 2 },
    mlp: { intermediateSize: 64 },
    moe: { numExperts: 4, topK: 2, normalize: true },
    layers: Array.from({ length: numLayers }, (_, i) => ({
      mixer: i % 4 === 3 ? 'attention' : 'mamba',
      feedForward: i % 2 === 1 ? 'moe' : 'dense',
    })),
  };
}
