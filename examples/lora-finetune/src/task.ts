/**
 * The task: count. Each example is a run of consecutive token ids (`17 18 19 20 …`) starting anywhere in a range,
 * so the model must learn "the next token is this one plus one". A random-weight model gets it about never right;
 * a rank-8 LoRA on the attention and MLP projections learns it in a few dozen steps.
 */

/** mulberry32: a small seedable PRNG, uniform in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface CountingTask {
  /** Smallest token id used. */
  low: number;
  /** One past the largest token id used. */
  high: number;
  /** Tokens per example. */
  length: number;
}

/** The default: ids 10 … 99 (inside the fixture's vocabulary of 128), 12 tokens per example. */
export const COUNTING: CountingTask = { low: 10, high: 100, length: 12 };

/** `batch` examples `[batch][length]`: runs of consecutive ids, each starting at a random id in range. */
export function countingBatch(task: CountingTask, batch: number, random: () => number): number[][] {
  const starts = task.high - task.low - task.length + 1;
  return Array.from({ length: batch }, () => {
    const start = task.low + Math.floor(random() * starts);
    return Array.from({ length: task.length }, (_, i) => start + i);
  });
}
