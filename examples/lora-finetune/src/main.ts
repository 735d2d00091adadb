/**
 * The LoRA fine-tuning example: load a Hugging Face checkpoint, put a LoRA on its attention and MLP projections,
 * train only the adapter with Adam on a small task (counting), and show the loss falling and the accuracy rising;
 * then merge the adapter (same predictions, one matmul per projection), save it in PEFT's format, and load it onto
 * a fresh copy of the base model to check it gives the same predictions.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@slmkit/core';
import { caseDir } from '@slmkit/fixtures';
import { fromPretrained, type PretrainedLM } from '@slmkit/models';
import {
  adapterParameters,
  addAdapter,
  disableAdapters,
  enableAdapters,
  loadAdapter,
  mergeAdapters,
  saveAdapter,
  trainAdapterStep,
  unmergeAdapters,
} from '@slmkit/adapters';
import { COUNTING, countingBatch, prng, type CountingTask } from './task.js';

export interface MainOptions {
  /** Backend to run on (default: the platform default, `wasm` in Node). */
  backend?: BackendName;
  /** The base checkpoint folder (default: the tiny Llama of the repository's test fixtures). */
  checkpoint?: string;
  /** Where the adapter is saved (default: `lora-counting` in the working directory). */
  out?: string;
  /** Optimiser steps (default 60). */
  steps?: number;
  /** Examples per step (default 8). */
  batch?: number;
  /** Adam's learning rate (default 2e-2). */
  learningRate?: number;
  /** Seed of the data and the adapter's initial values (default 0). */
  seed?: number;
  task?: CountingTask;
  /** Where lines go (default `console.log`). */
  log?: (line: string) => void;
}

export interface MainResult {
  backend: string;
  /** The loss of every step, before its update. */
  losses: number[];
  /** Parameters: the base model's and the adapter's (the only trainable ones). */
  parameters: { base: number; adapter: number; trainable: number };
  /** Greedy next-token accuracy on held-out examples: base model, after training, merged, reloaded from disk. */
  accuracy: { base: number; trained: number; merged: number; reloaded: number };
  /** Whether every base weight is bit-identical after training. */
  baseUnchanged: boolean;
  /** Largest |merged − unmerged| and |reloaded − trained| over the held-out logits. */
  maxLogitDiff: { merged: number; reloaded: number };
  /** The adapter folder written. */
  saved: string;
  numTensors: { before: number; after: number };
}

/** Next-token accuracy (greedy) and the logits over `ids`: position t predicting token t + 1. */
async function evaluate(model: PretrainedLM, ids: number[][]): Promise<{ accuracy: number; logits: Float32Array }> {
  const input = tf.tensor2d(ids, undefined, 'int32'); // [B, T]
  const logits = model.forward(input); // [B, T, V]
  const predicted = tf.argMax(logits, 2); // [B, T]
  const [guess, data] = await Promise.all([predicted.array() as Promise<number[][]>, logits.data() as Promise<Float32Array>]);
  tf.dispose([input, logits, predicted]);
  let right = 0;
  let total = 0;
  ids.forEach((row, b) => {
    for (let t = 0; t + 1 < row.length; t++, total++) if (guess[b]![t] === row[t + 1]) right++;
  });
  return { accuracy: right / total, logits: data };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function snapshot(model: PretrainedLM, skip: Set<tf.Variable>): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, v] of model.namedParameters()) if (!skip.has(v)) out.set(name, (await v.data()) as Float32Array);
  return out;
}

export async function main(options: MainOptions = {}): Promise<MainResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const task = options.task ?? COUNTING;
  const steps = options.steps ?? 60;
  const batch = options.batch ?? 8;
  const seed = options.seed ?? 0;
  const checkpoint = options.checkpoint ?? caseDir('llama');
  const out = options.out ?? 'lora-counting';

  const info = await initBackend(options.backend);
  log(`backend: ${info.name} (${info.reason})`);
  const before = tf.memory().numTensors;
  const random = prng(seed);
  const heldOut = countingBatch(task, 16, prng(seed + 1000));

  const model = await fromPretrained(checkpoint);
  const fresh = await fromPretrained(checkpoint);
  const optimizer = tf.train.adam(options.learningRate ?? 2e-2);
  let result: MainResult;
  try {
    const base = model.parameterCount().total;
    const baseAccuracy = (await evaluate(model, heldOut)).accuracy;

    // 1. A LoRA on every projection of every layer (rank 8, alpha 16); everything else is frozen.
    const layers = addAdapter(model, 'counting', {
      target: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'in_proj', 'x_proj', 'out_proj'].filter((t) =>
        model.namedModules().some(([n]) => n.endsWith(`.${t}`)),
      ),
      rank: 8,
      alpha: 16,
      seed,
    });
    const adapterVars = new Set(adapterParameters(model));
    const counts = model.parameterCount();
    const parameters = { base, adapter: counts.total - base, trainable: counts.trainable };
    log(`${checkpoint}: ${base.toLocaleString('en-US')} base parameters; LoRA r=8 on ${layers.length} layers adds ${parameters.adapter.toLocaleString('en-US')} (the only trainable ones)`);
    const baseBefore = await snapshot(model, adapterVars);

    // 2. Train the adapter.
    const losses: number[] = [];
    for (let step = 0; step < steps; step++) {
      losses.push(await trainAdapterStep(model, optimizer, countingBatch(task, batch, random)));
      if (step % 10 === 0 || step === steps - 1) log(`step ${String(step).padStart(3)}  loss ${losses[step]!.toFixed(4)}`);
    }
    const trained = await evaluate(model, heldOut);
    const baseAfter = await snapshot(model, adapterVars);
    const baseUnchanged = [...baseBefore].every(([name, v]) => {
      const w = baseAfter.get(name)!;
      return v.length === w.length && v.every((x, i) => x === w[i]);
    });
    disableAdapters(model);
    const disabled = await evaluate(model, heldOut);
    enableAdapters(model);
    log(`held-out next-token accuracy: ${(baseAccuracy * 100).toFixed(1)}% (base) -> ${(trained.accuracy * 100).toFixed(1)}% (with the LoRA); disabled again: ${(disabled.accuracy * 100).toFixed(1)}%`);
    log(`base weights ${baseUnchanged ? 'bit-identical after training' : 'CHANGED'}`);

    // 3. Merge: the same predictions from the base weights alone; then unmerge, exactly.
    mergeAdapters(model);
    const merged = await evaluate(model, heldOut);
    unmergeAdapters(model);
    const mergedDiff = maxAbsDiff(merged.logits, trained.logits);
    log(`merged: accuracy ${(merged.accuracy * 100).toFixed(1)}%, max |merged − unmerged| logit ${mergedDiff.toExponential(2)}`);

    // 4. Save in PEFT's format and load onto a fresh copy of the base.
    await saveAdapter(model, out, { name: 'counting' });
    await loadAdapter(fresh, out, { name: 'counting' });
    const reloaded = await evaluate(fresh, heldOut);
    const reloadedDiff = maxAbsDiff(reloaded.logits, trained.logits);
    log(`saved to ${out}/ (adapter_config.json, adapter_model.safetensors); reloaded: max |Δ logit| ${reloadedDiff.toExponential(2)}`);

    result = {
      backend: info.name,
      losses,
      parameters,
      accuracy: { base: baseAccuracy, trained: trained.accuracy, merged: merged.accuracy, reloaded: reloaded.accuracy },
      baseUnchanged,
      maxLogitDiff: { merged: mergedDiff, reloaded: reloadedDiff },
      saved: out,
      numTensors: { before, after: before },
    };
  } finally {
    optimizer.dispose();
    model.dispose();
    fresh.dispose();
  }
  result.numTensors.after = tf.memory().numTensors;
  return result;
}
