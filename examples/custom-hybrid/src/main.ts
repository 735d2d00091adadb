/**
 * The custom-hybrid example: build the hybrid of {@link mambaWithAttentionAndMoE} from its spec, train it for a
 * few Adam steps on a toy task (continue a sequence that counts up by a fixed step, mod the vocabulary), then
 * generate from a prompt of that task through the hybrid cache (KV caches for the attention layers, SSM states for
 * the Mamba layers).
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@slmkit/core';
import { HybridLM } from '@slmkit/models';
import { mambaWithAttentionAndMoE } from './model.js';

export interface MainOptions {
  /** Backend to run on (default: the platform default, `wasm` in Node). */
  backend?: BackendName;
  /** Training steps (default 40). */
  steps?: number;
  /** Where lines go (default `console.log`). */
  log?: (line: string) => void;
}

export interface MainResult {
  backend: string;
  layers: string[];
  parameters: number;
  /** The training loss of every step. */
  losses: number[];
  prompt: number[];
  generated: number[];
  /** What the task says comes next. */
  expected: number[];
  numTensors: { before: number; after: number };
}

/** A batch of the toy task: row r counts from `start_r` by `stride`, mod V. */
function batch(rows: number, length: number, V: number, stride: number, seed: number): number[][] {
  return Array.from({ length: rows }, (_, r) => {
    const start = (seed * 7 + r * 5) % V;
    return Array.from({ length }, (_, t) => (start + t * stride) % V);
  });
}

/** Mean next-token cross-entropy of `logits` `[B, T, V]` against `ids` `[B, T]`. */
function nextTokenLoss(logits: tf.Tensor3D, ids: tf.Tensor2D): tf.Scalar {
  const [B, T, V] = logits.shape;
  const predicted = tf.slice(logits, [0, 0, 0], [B, T - 1, V]); // [B, T − 1, V]
  const targets = tf.cast(tf.oneHot(tf.slice(ids, [0, 1], [B, T - 1]), V), 'float32'); // [B, T − 1, V]
  return tf.losses.softmaxCrossEntropy(targets, predicted) as tf.Scalar;
}

export async function main(options: MainOptions = {}): Promise<MainResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const steps = options.steps ?? 40;
  const info = await initBackend(options.backend);
  log(`backend: ${info.name} (${info.reason})`);
  const before = tf.memory().numTensors;

  const model = new HybridLM(mambaWithAttentionAndMoE());
  const V = model.config.vocabSize;
  const layers = model.config.layers.map((l) => `${l.mixer}+${l.feedForward}`);
  const parameters = model.parameterCount().total;
  log(`layers: ${layers.join(', ')}`);
  log(`parameters: ${parameters}`);

  const optimizer = tf.train.adam(3e-3);
  const variables = model.namedParameters().map(([, v]) => v);
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const ids = tf.tensor2d(batch(8, 16, V, 3, step), undefined, 'int32');
    const loss = optimizer.minimize(() => nextTokenLoss(model.forward(ids), ids), true, variables)!;
    losses.push((await loss.data())[0]);
    tf.dispose([ids, loss]);
    if (step % 10 === 0 || step === steps - 1) log(`step ${step}: loss ${losses[step].toFixed(4)}`);
  }
  optimizer.dispose();

  const prompt = batch(1, 8, V, 3, 1000)[0];
  const out = await model.generate([prompt], { maxNewTokens: 6, stopTokens: [] });
  const expected = Array.from({ length: 6 }, (_, t) => (prompt[prompt.length - 1] + 3 * (t + 1)) % V);
  log(`prompt ${prompt.join(' ')} → ${out.tokens[0].join(' ')} (the task continues ${expected.join(' ')})`);
  model.dispose();
  return {
    backend: info.name,
    layers,
    parameters,
    losses,
    prompt,
    generated: out.tokens[0],
    expected,
    numTensors: { before, after: tf.memory().numTensors },
  };
}
