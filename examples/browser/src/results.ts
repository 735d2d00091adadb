/**
 * What the page publishes on `window.__slmkit` for scripts and tests (plain JSON: numbers, strings, arrays).
 */
export interface BenchRow {
  /** The block and phase, e.g. `Attention (GQA 8/2) prefill`. */
  name: string;
  /** The input shape, e.g. `[1, 64, 256]`. */
  shape: string;
  /** Median milliseconds over `repeats` timed runs (after warm-up), including the read-back of the output. */
  medianMs: number;
  minMs: number;
  maxMs: number;
  repeats: number;
}

export interface PageResults {
  /** `running` until everything is done; `error` with `error` set if something failed. */
  status: 'running' | 'done' | 'error';
  /** The tfjs backend in use (`webgpu`, `wasm` or `cpu`). */
  backend?: string;
  /** Why this backend: `requested`, `default`, or the fallback. */
  reason?: string;
  /** The WebGPU adapter, when on webgpu. */
  adapter?: string;
  /** Set when WebGPU was wanted but could not start: why, and that the page runs on wasm instead. */
  fallback?: string;
  /** The checkpoint folder's URL. */
  model?: string;
  modelSummary?: { family: string; layers: number; hidden: number; heads: number; kvHeads: number; vocab: number; parameters: number };
  /** The prompt ids `[B][T]` (the folder's input_ids.json). */
  inputIds?: number[][];
  /** `model.forward(inputIds)`: float32 `[B, T, V]` in row-major order. */
  logits?: number[];
  logitsShape?: number[];
  /** Greedy new tokens per row through the caches. */
  generated?: number[][];
  /** The tokens Hugging Face recorded for the same prompt (the folder's expected.json), when it has them. */
  expectedGenerated?: number[][];
  bench?: BenchRow[];
  /** A few LoRA fine-tuning steps after the benchmark (see `loraFineTune`). */
  lora?: { losses: number[]; stepMs: number[]; layers: number; trainable: number; numTensors: { before: number; after: number } };
  /** Milliseconds: backend start, model load, forward, generate, benchmark, LoRA steps. */
  timings?: Record<string, number>;
  error?: string;
}

declare global {
  interface Window {
    __slmkit?: PageResults;
  }
}
