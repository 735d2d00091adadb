/**
 * `Embedding`: the token lookup table at the bottom of every language model, and the tied output head at its top.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { Module } from '../module.js';

/**
 * Options of {@link Embedding}.
 *
 * @example
 * ```ts
 * import type { EmbeddingOptions } from '@slmkit/core';
 * const opts: EmbeddingOptions = { seed: 7, checkIds: true };
 * ```
 */
export interface EmbeddingOptions {
  /**
   * Seed of the initial values (standard normal, like `torch.nn.Embedding`). With a seed the table is the same on
   * every backend; without one, `Math.random` is used.
   */
  seed?: number;
  /**
   * Whether {@link Embedding.forward} checks that every id is in `[0, numEmbeddings)` (default `true`). The check
   * reduces the ids to their minimum and maximum on the device and reads those two numbers back, so it costs one
   * small device-to-host read per call: negligible next to a model step, but a synchronisation point on WebGPU.
   * Without it an out-of-range id is not caught: the cpu and wasm backends throw a bare `GatherV2` error, and
   * WebGPU silently returns a row of zeros.
   */
  checkIds?: boolean;
}

/**
 * A lookup table: row `i` of `W` (shape `[numEmbeddings, dim]`) is the vector of token `i`, so
 * `forward(ids)[..., :] = W[ids[...], :]`. The parameter is named `weight`, as in a Hugging Face `state_dict`
 * (`model.embed_tokens.weight`).
 *
 * For models with tied embeddings the same table is the output head: {@link Embedding.attend} computes the
 * logits `x Wᵀ`, one score per vocabulary entry.
 *
 * Initialised standard normal, like `torch.nn.Embedding`; pretrained weights replace it through
 * {@link Module.loadWeights}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Embedding } from '@slmkit/core';
 * const embed = new Embedding(100, 8, { seed: 0 });
 * const ids = tf.tensor2d([[1, 2, 3], [4, 5, 99]], undefined, 'int32');
 * const h = embed.forward(ids); // [2, 3, 8]
 * const logits = embed.attend(h); // [2, 3, 100]: a tied output head
 * console.log(h.shape, logits.shape);
 * tf.dispose([ids, h, logits]);
 * embed.dispose();
 * ```
 */
export class Embedding extends Module {
  /** Number of rows: the vocabulary size. */
  readonly numEmbeddings: number;
  /** Width of each row. */
  readonly dim: number;
  /** `W`, shape `[numEmbeddings, dim]`. */
  readonly weight: tf.Variable;
  private readonly checkIds: boolean;

  /**
   * @param numEmbeddings - number of rows, the vocabulary size (a positive integer).
   * @param dim - width of each row (a positive integer).
   * @param options - seed and id checking; see {@link EmbeddingOptions}.
   * @throws {@link ConfigError} when a size is not a positive integer or an option has the wrong type.
   */
  constructor(numEmbeddings: number, dim: number, options: EmbeddingOptions = {}) {
    super();
    for (const [field, value] of [
      ['numEmbeddings', numEmbeddings],
      ['dim', dim],
    ] as const) {
      if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
        throw new ConfigError(`Embedding: ${field} must be a positive integer, found ${String(value)}`, {
          field,
          expected: 'a positive integer',
          found: value,
        });
      }
    }
    const checkIds = options.checkIds ?? true;
    if (typeof checkIds !== 'boolean') {
      throw new ConfigError(`Embedding: checkIds must be a boolean, found ${String(checkIds)}`, {
        field: 'checkIds',
        expected: 'boolean',
        found: checkIds,
      });
    }
    if (options.seed != null && !Number.isFinite(options.seed)) {
      throw new ConfigError(`Embedding: seed must be a finite number, found ${String(options.seed)}`, {
        field: 'seed',
        expected: 'a finite number',
        found: options.seed,
      });
    }
    this.numEmbeddings = numEmbeddings;
    this.dim = dim;
    this.checkIds = checkIds;
    this.weight = this.registerParameter('weight', tf.randomNormal([numEmbeddings, dim], 0, 1, 'float32', options.seed));
  }

  /**
   * Looks up the rows of `ids`.
   *
   * @param ids - int32 tensor of any shape `[...]`, every value in `[0, numEmbeddings)`.
   * @returns float32 `[..., dim]`; the caller owns it.
   * @throws {@link ShapeError} when `ids` is not int32, or (with `checkIds`, the default) when an id is out of
   *   range; the message gives the smallest and largest id found and the valid range.
   */
  forward(ids: tf.Tensor): tf.Tensor {
    if (ids.dtype !== 'int32') {
      throw new ShapeError(`Embedding: ids must be int32, found ${ids.dtype}`, {
        field: 'ids',
        expected: 'int32',
        found: ids.dtype,
      });
    }
    if (this.checkIds && ids.size > 0) this.assertIdsInRange(ids);
    return tf.tidy(() => {
      // Gathering from a 1-D index list keeps every backend on its simplest GatherV2 path.
      const flat = tf.reshape(ids, [ids.size]); // [N]
      const rows = tf.gather(this.weight, flat); // [N, dim]
      return tf.reshape(rows, [...ids.shape, this.dim]); // [..., dim]
    });
  }

  /**
   * The tied output head: scores every vocabulary entry against `x`, `logits = x Wᵀ`.
   *
   * @param x - float32 `[..., dim]`.
   * @returns `[..., numEmbeddings]`; the caller owns it.
   * @throws {@link ShapeError} when `x` is not float32 or its last dimension is not `dim`.
   */
  attend(x: tf.Tensor): tf.Tensor {
    if (x.rank < 1 || x.shape[x.rank - 1] !== this.dim || x.dtype !== 'float32') {
      const found = x.rank < 1 ? 'a scalar' : `last dimension ${x.shape[x.rank - 1]}`;
      throw new ShapeError(
        `Embedding.attend: input must be float32 with last dimension dim = ${this.dim}, found ${x.dtype} ${found} ` +
          `(input shape [${x.shape.join(', ')}])`,
        { field: 'x', expected: this.dim, found: x.shape.slice() },
      );
    }
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const rows = lead.reduce((a, b) => a * b, 1);
      const x2d = tf.reshape(x, [rows, this.dim]); // [N, dim]
      const logits = tf.matMul(x2d, this.weight, false, true); // [N, num]
      return tf.reshape(logits, [...lead, this.numEmbeddings]); // [..., num]
    });
  }

  private assertIdsInRange(ids: tf.Tensor): void {
    // Two scalars come back instead of every id, so the read stays cheap for long prompts and on WebGPU.
    const bounds = tf.tidy(() => tf.stack([tf.min(ids), tf.max(ids)]));
    let lo: number;
    let hi: number;
    try {
      [lo, hi] = bounds.dataSync() as Int32Array;
    } finally {
      bounds.dispose();
    }
    if (lo < 0 || hi >= this.numEmbeddings) {
      const bad = lo < 0 ? lo : hi;
      throw new ShapeError(
        `Embedding: token id ${bad} is out of range [0, ${this.numEmbeddings - 1}] ` +
          `(ids range from ${lo} to ${hi}; numEmbeddings = ${this.numEmbeddings})`,
        { field: 'ids', expected: `ids in [0, ${this.numEmbeddings - 1}]`, found: { min: lo, max: hi } },
      );
    }
  }
}
