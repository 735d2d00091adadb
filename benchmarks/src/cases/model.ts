/**
 * The whole SmolLM-135M preset (`smollm135m()`: 30 layers, d 576, GQA 9/3, MLP 1536, tied 49152-token
 * embeddings), randomly initialised: a prefill forward of T = 128 tokens to all logits, and one decode step against
 * a cache already holding `ctx` positions in every layer.
 *
 * GFLOP/s counts the matmuls (about 2 FLOPs per parameter per token, the embedding gather aside, plus attention's
 * useful causal work); a decode step is bound by memory, so it reports GB/s for reading every weight and the
 * cached keys and values once.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CausalLM, smollm135m, type ModelCache } from '@slmkit/models';
import { benchCase, type BenchCase, type CaseInstance } from '../registry.js';
import { BATCH, F32 } from '../shapes.js';

const config = smollm135m();
const { vocabSize: V, hiddenSize: D, numLayers: L, numHeads: H, numKVHeads: KV, headDim: Dh, intermediateSize: FF } = config;

/** Weights each token multiplies through: per layer q, k, v, o and the three MLP projections, then the head. */
const matmulParams = L * (D * (2 * H * Dh + 2 * KV * Dh) + 3 * D * FF) + D * V;
const shape = (axis: Record<string, number>) => ({ B: BATCH, ...axis, layers: L, d: D, vocab: V });

function randomIds(T: number): tf.Tensor2D {
  return tf.randomUniform([BATCH, T], 0, V, 'int32') as tf.Tensor2D; // [B, T]
}

const prefill = [128].map((T) =>
  benchCase({
    block: 'model',
    series: 'model/smollm135m/prefill',
    axis: { name: 'T', value: T },
    phase: 'prefill',
    shape: shape({ T }),
    flops: 2 * BATCH * T * matmulParams + L * 4 * BATCH * H * Dh * ((T * (T + 1)) / 2),
    // Tens of seconds a run on 2 wasm cores: too long for the one-minute subset.
    quick: false,
    setup: () => {
      const lm = new CausalLM(config);
      const ids = randomIds(T);
      return {
        run: () => lm.forward(ids), // [B, T, V]
        teardown: () => {
          ids.dispose();
          lm.dispose();
        },
      };
    },
  }),
);

const decode = [128, 512, 2048].map((ctx) =>
  benchCase({
    block: 'model',
    series: 'model/smollm135m/decode',
    axis: { name: 'ctx', value: ctx },
    phase: 'decode',
    shape: shape({ ctx }),
    bytes: (matmulParams + L * 2 * BATCH * KV * ctx * Dh) * F32,
    quick: ctx === 128 || ctx === 2048,
    setup: () => modelDecodeStep(new CausalLM(config), randomIds(1), ctx),
  }),
);

/**
 * One new token `ids` (`[B, 1]`) through `lm` against caches holding `ctx` positions in every layer. Every layer's
 * cache starts from the same random keys and values (a decode step's cost does not depend on them); a step grows the
 * cache, so before each timed step it is rolled back to `ctx` positions (or rebuilt where it cannot be). Disposes
 * `lm` and `ids` at teardown.
 */
export function modelDecodeStep(lm: CausalLM, ids: tf.Tensor2D, ctx: number): CaseInstance {
  const { numKVHeads, headDim } = lm.config;
  const k0 = tf.randomNormal([BATCH, numKVHeads, ctx, headDim]) as tf.Tensor4D; // [B, KV, ctx, Dh]
  const v0 = tf.randomNormal([BATCH, numKVHeads, ctx, headDim]) as tf.Tensor4D; // [B, KV, ctx, Dh]
  let cache: ModelCache | undefined;
  return {
    beforeEach: () => {
      // Rolled back to ctx positions, keeping the buffers a decoding cache has (see the attention cases).
      if (cache?.canTruncate(ctx)) return cache.truncate(ctx);
      cache?.dispose();
      cache = lm.createCache();
      for (const layer of cache.layers) {
        const kv = layer.update(k0, v0);
        tf.dispose([kv.keys, kv.values]);
      }
    },
    run: () => lm.forward(ids, { cache: cache! }), // [B, 1, V]
    teardown: () => {
      cache?.dispose();
      tf.dispose([ids, k0, v0]);
      lm.dispose();
    },
  };
}

export const cases: BenchCase[] = [...prefill, ...decode];
