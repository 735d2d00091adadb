/**
 * `fromPretrained`: a {@link CausalLM} from a Hugging Face checkpoint folder or URL.
 *
 * @module
 */
import { openCheckpoint, readConfigJson, type OpenCheckpointOptions } from '@slmkit/core';
import { CausalLM } from './causal-lm.js';
import type { CausalLMConfig } from './config.js';
import { configFromHF } from './families/index.js';
import { mambaConfigFromHF, type MambaConfig } from './families/mamba.js';
import { MambaLM } from './mamba-lm.js';
import { mamba2ConfigFromHF, type Mamba2Config } from './families/mamba2.js';
import { Mamba2LM } from './mamba2-lm.js';
import { HYBRID_MODEL_TYPES, hybridConfigFromHF } from './families/hybrid.js';
import { HybridLM, type HybridLMConfig } from './hybrid-lm.js';
import { loadTokenizer } from './tokenizer.js';

/**
 * Options of {@link fromPretrained}.
 *
 * @example
 * ```ts
 * import type { FromPretrainedOptions } from '@slmkit/models';
 * const options: FromPretrainedOptions = {
 *   fetch: (input, init) => fetch(input, { ...init, headers: { Authorization: 'Bearer hf_...' } }),
 *   config: (c) => ({ ...c, maxPositionEmbeddings: 4096 }),
 * };
 * ```
 */
export interface FromPretrainedOptions extends OpenCheckpointOptions {
  /** Edits the config mapped from `config.json` before the model is built (e.g. a shorter context). */
  config?: (config: CausalLMConfig) => CausalLMConfig;
  /** Edits the config of a `mamba` / `falcon_mamba` checkpoint before the model is built. */
  mambaConfig?: (config: MambaConfig) => MambaConfig;
  /** Edits the config of a `mamba2` checkpoint before the model is built. */
  mamba2Config?: (config: Mamba2Config) => Mamba2Config;
  /** Edits the config of a hybrid checkpoint (`jamba`, …) before the model is built. */
  hybridConfig?: (config: HybridLMConfig) => HybridLMConfig;
  /**
   * Hymba checkpoints: the sliding-window rule of cached decoding (ignored for other families). `consistent`
   * (default) keeps the full forward's rule (a windowed query sees itself, the W positions before it and the meta
   * tokens), so decoding through the cache equals a full forward over the same tokens, as the model was trained.
   * `reference` reproduces NVIDIA's `modeling_hymba.py`, whose decode path sees one position fewer (W in all) than
   * its own prefill: use it to match NVIDIA's generations exactly. Sets `HybridLMConfig.hymbaDecodeWindow`.
   */
  hymbaDecodeWindow?: 'consistent' | 'reference';
  /**
   * Whether to load the folder's `tokenizer.json` (when it has one) as {@link CausalLM.tokenizer}, so that
   * `generate` accepts text. Default true; a folder without one simply gives a model without a tokenizer.
   */
  tokenizer?: boolean;
}

/**
 * What {@link fromPretrained} returns: a transformer {@link CausalLM}, a {@link MambaLM} for `mamba` and
 * `falcon_mamba` checkpoints, a {@link Mamba2LM} for `mamba2`, or a {@link HybridLM} for the hybrid families (`jamba`, …). All have `forward`,
 * `forwardLast`, `createCache`, `generate`, `stream`, `config`, `tokenizer` and `dispose`; narrow with
 * `instanceof` for the rest.
 *
 * @example
 * ```ts
 * import { CausalLM, HybridLM, type PretrainedLM } from '@slmkit/models';
 * function layers(m: PretrainedLM): number {
 *   return m instanceof CausalLM || m instanceof HybridLM ? m.model.layers.length : m.layers.length;
 * }
 * ```
 */
export type PretrainedLM = CausalLM | MambaLM | HybridLM | Mamba2LM;

/**
 * Loads a causal language model from a Hugging Face checkpoint: reads `config.json`, maps it by `model_type`
 * ({@link configFromHF}; `mamba` and `falcon_mamba` through `mambaConfigFromHF` to a {@link MambaLM}, `mamba2` through
 * `mamba2ConfigFromHF` to a {@link Mamba2LM}), builds the
 * model, and loads every tensor of `model.safetensors` (or of the
 * shards a `model.safetensors.index.json` lists) strictly, under its Hugging Face name. Tied embeddings need no
 * `lm_head.weight`; Phi-3's fused `qkv_proj` and `gate_up_proj` load as stored. The checkpoint is closed before
 * returning, and the model is disposed if anything fails. When the folder has a `tokenizer.json`, it becomes the
 * model's {@link CausalLM.tokenizer} (see `loadTokenizer`).
 *
 * @param location - a folder (Node), or an http(s) URL of one (also the only kind in a browser).
 * @throws `ConfigError` for a missing or malformed `config.json`, an unsupported `model_type` or a bad field;
 *   `CheckpointError` listing every missing, unexpected and mis-shaped tensor at once.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { initBackend } from '@slmkit/core';
 * import { fromPretrained } from '@slmkit/models';
 * await initBackend('wasm');
 * const model = await fromPretrained('./checkpoints/SmolLM-135M'); // config.json + model.safetensors
 * const ids = tf.tensor2d([[1, 504, 3458, 314]], undefined, 'int32');
 * const logits = model.forward(ids); // [1, 4, 49152]
 * const out = await model.generate(ids, { maxNewTokens: 8 }); // greedy
 * console.log(logits.shape, out.tokens[0]);
 * tf.dispose([ids, logits]);
 * model.dispose();
 * ```
 */
export async function fromPretrained(location: string | URL, options: FromPretrainedOptions = {}): Promise<PretrainedLM> {
  const json = await readConfigJson(location, options);
  let build: () => PretrainedLM;
  if (json != null && typeof json === 'object' && HYBRID_MODEL_TYPES.includes(json.model_type as string)) {
    let config = hybridConfigFromHF(json);
    if (config.family === 'hymba' && options.hymbaDecodeWindow != null) config = { ...config, hymbaDecodeWindow: options.hymbaDecodeWindow };
    if (options.hybridConfig != null) config = options.hybridConfig(config);
    build = () => new HybridLM(config);
  } else if (json != null && typeof json === 'object' && (json.model_type === 'mamba' || json.model_type === 'falcon_mamba')) {
    let config = mambaConfigFromHF(json);
    if (options.mambaConfig != null) config = options.mambaConfig(config);
    build = () => new MambaLM(config);
  } else if (json != null && typeof json === 'object' && json.model_type === 'mamba2') {
    let config = mamba2ConfigFromHF(json);
    if (options.mamba2Config != null) config = options.mamba2Config(config);
    build = () => new Mamba2LM(config);
  } else {
    let config = configFromHF(json);
    if (options.config != null) config = options.config(config);
    build = () => new CausalLM(config);
  }
  // Read before any tensor exists, so that a malformed tokenizer.json leaves nothing to free.
  const tokenizer = options.tokenizer === false ? null : await loadTokenizer(location, options);
  const model = build();
  model.tokenizer = tokenizer ?? undefined;
  try {
    const checkpoint = await openCheckpoint(location, options);
    try {
      await model.loadWeights(checkpoint, { strict: true });
    } finally {
      await checkpoint.close();
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
