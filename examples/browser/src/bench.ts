/**
 * A small in-page benchmark: a few blocks, each timed as the median of a handful of runs after warm-up. Every run
 * reads its output back (`await data()`), so the time covers the GPU work and not only its submission.
 */
import * as tf from '@tensorflow/tfjs-core';
import { GatedMLP, Linear, RMSNorm, RotaryEmbedding } from '@slmkit/core';
import { Attention } from '@slmkit/attention';
import type { CausalLM, ModelCache } from '@slmkit/models';
import type { BenchRow } from './results.js';

/** One timed call, with untimed work before and after it. */
interface Timed {
  run: () => tf.Tensor;
  /** Awaited before the clock starts, so its device work is finished and not counted. */
  before?: () => void | Promise<void>;
  after?: () => void;
  dispose: () => void;
}

export interface BenchCase {
  name: string;
  shape: string;
  setup: () => Timed;
}

const D = 256; // model width of the block cases
const T = 64; // tokens of the prefill cases

function input(seed: number): tf.Tensor3D {
  return tf.randomNormal([1, T, D], 0, 1, 'float32', seed); // [1, T, D]
}

/** The block cases (seeded, so every backend times the same numbers) and two whole-model cases. */
export function benchCases(model: CausalLM, ids: number[][]): BenchCase[] {
  const x = `[1, ${T}, ${D}]`;
  return [
    {
      name: `Linear ${D}→${D}`,
      shape: x,
      setup: () => {
        const layer = new Linear(D, D, { bias: false, seed: 1 });
        const h = input(2);
        return { run: () => layer.forward(h), dispose: () => (layer.dispose(), h.dispose()) };
      },
    },
    {
      name: 'RMSNorm',
      shape: x,
      setup: () => {
        const norm = new RMSNorm(D, { eps: 1e-5 });
        const h = input(3);
        return { run: () => norm.forward(h), dispose: () => (norm.dispose(), h.dispose()) };
      },
    },
    {
      name: `GatedMLP ${D}→688 (SwiGLU)`,
      shape: x,
      setup: () => {
        const mlp = GatedMLP.create(D, 688, { activation: 'silu', seed: 4 });
        const h = input(5);
        return { run: () => mlp.forward(h), dispose: () => (mlp.dispose(), h.dispose()) };
      },
    },
    {
      name: 'Attention GQA 8/2 heads, prefill',
      shape: x,
      setup: () => {
        const H = 8, KV = 2, Dh = D / H;
        const attn = new Attention(
          { hiddenSize: D, numHeads: H, numKVHeads: KV, headDim: Dh },
          {
            qProj: new Linear(D, H * Dh, { bias: false, seed: 6 }),
            kProj: new Linear(D, KV * Dh, { bias: false, seed: 7 }),
            vProj: new Linear(D, KV * Dh, { bias: false, seed: 8 }),
            oProj: new Linear(H * Dh, D, { bias: false, seed: 9 }),
            rotary: new RotaryEmbedding({ headDim: Dh, base: 10_000, maxPositionEmbeddings: 2048 }),
          },
        );
        const h = input(10);
        return { run: () => attn.forward(h), dispose: () => (attn.dispose(), h.dispose()) };
      },
    },
    // Ids come from the host on every call, as in a real loop. (A tensor kept across calls would live on the GPU, and
    // the embedding's synchronous id check would then read it back from there.)
    {
      name: 'CausalLM forward (the checkpoint)',
      shape: `[${ids.length}, ${ids[0].length}] ids`,
      setup: () => {
        let t: tf.Tensor2D | null = null;
        const release = () => {
          t?.dispose();
          t = null;
        };
        return { before: () => (t = tf.tensor2d(ids, undefined, 'int32')), run: () => model.forward(t!), after: release, dispose: release };
      },
    },
    {
      name: 'CausalLM decode step (the checkpoint)',
      shape: `[${ids.length}, 1] after ${ids[0].length}`,
      setup: () => {
        let cache: ModelCache | null = null;
        let next: tf.Tensor2D | null = null;
        const release = () => {
          cache?.dispose();
          next?.dispose();
          cache = null;
          next = null;
        };
        return {
          // The prefill is not timed: each run is one token through a cache of the prompt.
          before: async () => {
            cache = model.createCache();
            const prompt = tf.tensor2d(ids, undefined, 'int32');
            const last = model.forwardLast(prompt, { cache }); // [B, V]
            await last.data(); // the prefill has finished on the device
            tf.dispose([prompt, last]);
            next = tf.tensor2d(ids.map((r) => [r[0]]), undefined, 'int32');
          },
          run: () => model.forwardLast(next!, { cache: cache! }),
          after: release,
          dispose: release,
        };
      },
    },
  ];
}

function median(sorted: number[]): number {
  const m = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
}

/** Runs each case: `warmup` untimed runs (shader compilation, allocation), then `repeats` timed ones. */
export async function runBench(
  cases: BenchCase[],
  options: { warmup?: number; repeats?: number; onRow?: (row: BenchRow, done: number) => void } = {},
): Promise<BenchRow[]> {
  const warmup = options.warmup ?? 2;
  const repeats = options.repeats ?? 5;
  const rows: BenchRow[] = [];
  for (const c of cases) {
    const timed = c.setup();
    const times: number[] = [];
    try {
      for (let i = 0; i < warmup + repeats; i++) {
        await timed.before?.();
        const t0 = performance.now();
        const y = timed.run();
        await y.data();
        const ms = performance.now() - t0;
        y.dispose();
        timed.after?.();
        if (i >= warmup) times.push(ms);
      }
    } finally {
      timed.dispose();
    }
    times.sort((a, b) => a - b);
    const row: BenchRow = { name: c.name, shape: c.shape, medianMs: median(times), minMs: times[0], maxMs: times[times.length - 1], repeats };
    rows.push(row);
    options.onRow?.(row, rows.length);
  }
  return rows;
}
