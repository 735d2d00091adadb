// The main job, for now a demo: build a tiny model from @slmkit/core blocks, run one forward on the default
// backend (or --backend NAME), and print the backend and the output shape. The benchmarks issue turns this into
// the per-block benchmark runner.
import * as tf from '@tensorflow/tfjs-core';
import { Embedding, GatedMLP, Linear, Module, RMSNorm, initBackend, type BackendName } from '@slmkit/core';

/** One pre-norm residual MLP block over token embeddings, with an untied LM head. */
class TinyLM extends Module {
  readonly embed_tokens: Embedding;
  readonly norm_1: RMSNorm;
  readonly mlp: GatedMLP;
  readonly norm: RMSNorm;
  readonly lm_head: Linear;

  constructor(vocab: number, hidden: number, intermediate: number) {
    super();
    this.embed_tokens = this.registerModule('embed_tokens', new Embedding(vocab, hidden));
    this.norm_1 = this.registerModule('norm_1', new RMSNorm(hidden, { eps: 1e-6 }));
    this.mlp = this.registerModule('mlp', GatedMLP.create(hidden, intermediate, { activation: 'silu', bias: false }));
    this.norm = this.registerModule('norm', new RMSNorm(hidden, { eps: 1e-6 }));
    this.lm_head = this.registerModule('lm_head', new Linear(hidden, vocab, { bias: false }));
  }

  forward(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const h = this.embed_tokens.forward(ids); // [B, T, D]
      const r = tf.add(h, this.mlp.forward(this.norm_1.forward(h))); // [B, T, D]
      return this.lm_head.forward(this.norm.forward(r)) as tf.Tensor3D; // [B, T, V]
    });
  }
}

function argValue(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const backend = await initBackend(argValue('--backend') as BackendName | undefined);
const model = new TinyLM(256, 64, 172);
const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8]], [1, 8], 'int32');
const logits = model.forward(ids);
console.log(`backend: ${backend.name} (${backend.reason})`);
console.log(`parameters: ${model.parameterCount().total}`);
console.log(`input shape: [${ids.shape.join(', ')}] -> logits shape: [${logits.shape.join(', ')}]`);
tf.dispose([ids, logits]);
model.dispose();
