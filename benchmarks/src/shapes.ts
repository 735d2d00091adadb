/**
 * The default shapes: SmolLM-135M (HuggingFaceTB/SmolLM-135M config.json), the small Llama-style model every
 * case is sized after unless it says otherwise.
 */
export const SMOLLM = {
  hidden: 576,
  heads: 9,
  kvHeads: 3,
  headDim: 64,
  intermediate: 1536,
  vocab: 49152,
  layers: 30,
  ropeTheta: 10000,
  maxPositions: 2048,
  rmsEps: 1e-5,
} as const;

/** Batch size of every case: the single-stream inference and fine-tuning this library is for. */
export const BATCH = 1;

/** Bytes in a float32 or int32. */
export const F32 = 4;

/** Prefill is the phase of every T > 1; a single new token is a decode step. */
export function phaseOf(T: number): 'prefill' | 'decode' {
  return T === 1 ? 'decode' : 'prefill';
}
