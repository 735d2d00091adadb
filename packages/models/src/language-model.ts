/**
 * `LanguageModel`: what every language model class shares (`CausalLM`, `MambaLM`, `Mamba2LM`, `HybridLM`): logits
 * from the body's final hidden states, the last position's logits, generation and streaming.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module } from '@slmkit/core';
import { generate, stream, type GenerateInput, type GenerateOptions, type GenerateOutput, type GenerateStep, type GenerativeLM, type PromptTokenizer } from './generate.js';

/**
 * The base of the language model classes: a subclass says how ids become final hidden states (`hidden`, which
 * reads and updates the cache in `options`) and how hidden states become logits (`head`: an LM head, or the tied
 * embedding matrix); `forward`, `forwardLast`, `generate` and `stream` are the same for every family.
 *
 * @typeParam Options - the per-call options of `forward` (a cache, a padding mask, kernels).
 * @typeParam Cache - the decoding state `createCache()` returns.
 *
 * @example
 * ```ts
 * import { CausalLM, LanguageModel, MambaLM, configFromHF, mambaConfigFromHF } from '@slmkit/models';
 * const models: LanguageModel<object, { dispose(): void }>[] = [
 *   new CausalLM(configFromHF({ model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 })),
 *   new MambaLM(mambaConfigFromHF({ model_type: 'mamba', vocab_size: 32, hidden_size: 16, num_hidden_layers: 1, state_size: 4 })),
 * ];
 * for (const m of models) {
 *   const out = await m.generate([[1, 2, 3]], { maxNewTokens: 2, stopTokens: [] });
 *   console.log(out.tokens[0].length); // 2
 *   m.dispose();
 * }
 * ```
 */
export abstract class LanguageModel<Options extends object, Cache extends { dispose(): void }> extends Module {
  /** The vocabulary size and the stop / padding ids (each class has its own config type). */
  abstract readonly config: Readonly<{ vocabSize: number; eosTokenId: number | number[] | null; padTokenId: number | null }>;

  /**
   * Turns text into ids and back, so {@link LanguageModel.generate} accepts strings. `fromPretrained` sets it when
   * the folder has a tokenizer and one is available; assign your own otherwise.
   */
  tokenizer: PromptTokenizer | undefined = undefined;

  /** The final hidden states `[B, T, D]` (after the final norm) of `ids` `[B, T]`, reading and updating the cache. */
  protected abstract hidden(ids: tf.Tensor2D, options: Options): tf.Tensor3D;

  /** The LM head: `[B, T, D]` to `[B, T, vocabSize]`. */
  protected abstract head(hidden: tf.Tensor3D): tf.Tensor3D;

  /** A new, empty decoding state for this model; the caller owns it and disposes it. */
  abstract createCache(): Cache;

  /**
   * The logits of every position.
   *
   * @param ids - int32 `[B, T]`, every id in `[0, vocabSize)`.
   * @param options - a cache to continue from and update, a padding mask, kernels (see each class's options).
   * @returns float32 `[B, T, vocabSize]`; the caller owns it. With a cache, the cache now also holds these `T`
   *   positions.
   * @throws `ShapeError` for ids of the wrong rank or dtype, out-of-range ids, or a mask of the wrong shape;
   *   `ConfigError` for a cache of another model.
   */
  forward(ids: tf.Tensor2D, options: Options = {} as Options): tf.Tensor3D {
    return tf.tidy(() => this.head(this.hidden(ids, options)));
  }

  /**
   * The logits of the last position of each row only: `forward(ids, options)[:, -1, :]` without computing the LM
   * head for the other positions (what a prefill or a decoding step needs).
   *
   * @returns float32 `[B, vocabSize]`; the caller owns it.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { CausalLM, configFromHF } from '@slmkit/models';
   * const model = new CausalLM(configFromHF({
   *   model_type: 'gemma', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
   *   num_attention_heads: 2, num_key_value_heads: 1, head_dim: 16,
   * }));
   * const cache = model.createCache();
   * const ids = tf.tensor2d([[3, 4, 5]], undefined, 'int32');
   * const last = model.forwardLast(ids, { cache }); // [1, 64]
   * console.log(last.shape, cache.length); // [1, 64] 3
   * tf.dispose([ids, last]);
   * cache.dispose();
   * model.dispose();
   * ```
   */
  forwardLast(ids: tf.Tensor2D, options: Options = {} as Options): tf.Tensor2D {
    return tf.tidy(() => {
      const hidden = this.hidden(ids, options); // [B, T, D]
      const [B, T, D] = hidden.shape;
      const last = tf.slice(hidden, [0, T - 1, 0], [B, 1, D]) as tf.Tensor3D; // [B, 1, D]
      return tf.reshape(this.head(last), [B, this.config.vocabSize]) as tf.Tensor2D; // [B, V]
    });
  }

  /**
   * Generates up to `maxNewTokens` tokens after each row of `input`: one prefill through a fresh cache, then one
   * token at a time through it (or, with `draft`, speculative decoding). Greedy unless sampling options are given
   * (see `SamplingOptions`); a row stops at its first stop token (default: the config's `eosTokenId`; pass
   * `stopTokens: []` to never stop early), and the loop ends when every row has stopped.
   *
   * @param input - ids `[B, T]` (an int32 tensor or `number[][]`), or, with a {@link LanguageModel.tokenizer}, a
   *   string or a list of strings (left-padded to one length).
   * @returns the new tokens per row and the full sequences (prompt + new tokens).
   * @throws `ConfigError` for invalid options, `ShapeError` for ids of the wrong shape or out of range.
   *
   * @example
   * ```ts
   * import { CausalLM, configFromHF } from '@slmkit/models';
   * const model = new CausalLM(configFromHF({
   *   model_type: 'phi3', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
   *   num_attention_heads: 4,
   * }));
   * const greedy = await model.generate([[1, 2, 3]], { maxNewTokens: 5 });
   * const sampled = await model.generate([[1, 2, 3]], { maxNewTokens: 5, temperature: 0.8, topK: 20, seed: 7 });
   * console.log(greedy.tokens, greedy.sequences[0].length, sampled.tokens[0].length); // [[...]] 8 5
   * model.dispose();
   * ```
   */
  generate(input: GenerateInput, options: GenerateOptions): Promise<GenerateOutput> {
    return generate(this as unknown as GenerativeLM<Cache>, input, options);
  }

  /**
   * {@link LanguageModel.generate} as an async iterator of steps: each step gives the new token of every row (null
   * for a row that has stopped). Leaving the loop early stops the generation.
   *
   * @example
   * ```ts
   * import { MambaLM, mambaConfigFromHF } from '@slmkit/models';
   * const model = new MambaLM(mambaConfigFromHF({ model_type: 'mamba', vocab_size: 32, hidden_size: 16, num_hidden_layers: 1, state_size: 4 }));
   * for await (const step of model.stream([[1, 2]], { maxNewTokens: 2 })) console.log(step.step, step.tokens);
   * model.dispose();
   * ```
   */
  stream(input: GenerateInput, options: Omit<GenerateOptions, 'onToken'>): AsyncIterableIterator<GenerateStep> {
    return stream(this as unknown as GenerativeLM<Cache>, input, options);
  }
}
