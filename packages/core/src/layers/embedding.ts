/**
 * `Embedding`: the token lookup table at the bottom of every language model, and the tied output head at its top.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendError, ConfigError, ShapeError } from '../errors.js';
import { Module } from '../module.js';
import { checkFlag, checkPositiveInt } from '../validate.js';

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
   * reads the ids on the host with `dataSync()`. That is free on cpu and wasm, and on WebGPU for ids made from
   * host data (a tokenizer's output, a sampled token) that no GPU op has used yet, since tfjs keeps their host
   * copy until then. For ids computed on a GPU, call {@link Embedding.validateIds} first (it reads them
   * asynchronously); otherwise `forward` throws a {@link BackendError} in Node's WebGPU, where synchronous reads
   * of device data are impossible, and stalls the pipeline in a browser. With `false`, nothing is read and an
   * out-of-range id is not caught: cpu and wasm throw a bare `GatherV2` error and WebGPU silently returns a row of
   * zeros.
   */
  checkIds?: boolean;
}

/**
 * A lookup table: row `i` of `W` (shape `[numEmbeddings, dim]`) is the vector of token `i`, so
 * `forward(ids)[..., :] = W[ids[...], :]`. The parameter is named `weight`, as in a Hugging Face `state_dict`
 * (`model.embed_tokens.weight`).
 *
 * For models with tied embeddings the same table is the output head: {@link Embedding.attend} computes the
 * logits `x Wᵀ`, one score per vocabulary entry. That is the largest matmul of a small model (SmolLM-135M's is
 * 576 × 49152), so the table is stored in the head's layout: the variable {@link Embedding.weight} is `Wᵀ`, shape
 * `[dim, numEmbeddings]`, the head is a plain `matMul(x, weight)`, and the lookup gathers columns. A head
 * multiplying by `W` transposed would be about 7x slower on tfjs-backend-wasm 4.22 (90 ms instead of 13 ms a
 * decode step at SmolLM's size), and keeping a second, transposed copy for the head would cost a whole extra
 * table of memory (113 MB for SmolLM-135M, 2 GB for a 256k-token vocabulary); gathering columns instead of rows
 * costs little next to the rest of a forward (a few milliseconds for 128 tokens on wasm). The checkpoint keeps
 * Hugging Face's `[numEmbeddings, dim]`: {@link Module.loadWeights} takes that tensor (and reports shapes that
 * way) and {@link Module.stateDict} gives it back; see {@link ParameterOptions.transposed}.
 *
 * Initialised standard normal, like `torch.nn.Embedding` (drawn in the `[numEmbeddings, dim]` layout, so a seed
 * gives the same table as it did before it was stored transposed); pretrained weights replace it through
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
  /**
   * `Wᵀ`, shape `[dim, numEmbeddings]`: column `i` is the vector of token `i`. It is the transpose of Hugging
   * Face's `weight` (`[numEmbeddings, dim]`), which is what checkpoints, {@link Module.loadWeights} and
   * {@link Module.stateDict} use. To set it from a `[numEmbeddings, dim]` table, load it:
   * `await embedding.loadWeights({ weight })`.
   */
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
    checkPositiveInt('Embedding', 'numEmbeddings', numEmbeddings);
    checkPositiveInt('Embedding', 'dim', dim);
    const checkIds = checkFlag('Embedding', 'checkIds', options.checkIds, true);
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
    this.weight = this.registerParameter(
      'weight',
      tf.tidy(() => tf.transpose(tf.randomNormal([numEmbeddings, dim], 0, 1, 'float32', options.seed))), // [dim, num]
      { transposed: true },
    );
  }

  /**
   * Looks up the rows of `ids`.
   *
   * @param ids - int32 tensor of any shape `[...]`, every value in `[0, numEmbeddings)`.
   * @returns float32 `[..., dim]`; the caller owns it.
   * @throws {@link ShapeError} when `ids` is not int32, or (with `checkIds`, the default) when an id is out of
   *   range; the message gives the first bad id, its position, the smallest and largest id and the valid range.
   * @throws {@link BackendError} (with `checkIds`) when the ids live on a GPU and cannot be read synchronously
   *   here; see {@link Embedding.validateIds}.
   */
  forward(ids: tf.Tensor): tf.Tensor {
    checkIdsDtype(ids);
    if (this.checkIds && ids.size > 0) this.checkRange(ids.shape, this.readIdsSync(ids));
    return tf.tidy(() => {
      // Gathering from a 1-D index list keeps every backend on its simplest GatherV2 path.
      const flat = tf.reshape(ids, [ids.size]) as tf.Tensor1D; // [N]
      const columns = gatherColumns(this.weight, flat); // [dim, N]
      return tf.reshape(tf.transpose(columns), [...ids.shape, this.dim]); // [N, dim] -> [..., dim]
    });
  }

  /**
   * The tied output head: scores every vocabulary entry against `x`, `logits = x Wᵀ` (`matMul(x, weight)`, the
   * table being stored `[dim, numEmbeddings]`).
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
      const logits = tf.matMul(x2d, this.weight); // [N, dim] · [dim, num] -> [N, num]
      return tf.reshape(logits, [...lead, this.numEmbeddings]); // [..., num]
    });
  }

  /**
   * Checks that every id is in `[0, numEmbeddings)`, reading the ids asynchronously. {@link Embedding.forward}
   * does the same check synchronously; call this first for ids that were computed on a GPU backend (in Node's
   * WebGPU a synchronous read of device data is impossible, and in a browser it stalls). Afterwards tfjs keeps a
   * host copy of the ids, so the check in `forward` costs nothing.
   *
   * @param ids - int32 tensor of any shape.
   * @throws {@link ShapeError} when `ids` is not int32 or an id is out of range.
   *
   * @example
   * ```ts
   * import * as tf from '@tensorflow/tfjs-core';
   * import { Embedding } from '@slmkit/core';
   * const embed = new Embedding(10, 4);
   * const logits = tf.randomNormal([2, 10]);
   * const next = tf.argMax(logits, -1); // int32 [2], computed on the device
   * await embed.validateIds(next);
   * const h = embed.forward(next); // [2, 4]
   * tf.dispose([logits, next, h]);
   * embed.dispose();
   * ```
   */
  async validateIds(ids: tf.Tensor): Promise<void> {
    checkIdsDtype(ids);
    this.checkRange(ids.shape, await ids.data());
  }

  private checkRange(shape: number[], values: tf.TypedArray | ArrayLike<number>): void {
    let lo = Infinity;
    let hi = -Infinity;
    let firstBad = -1;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
      if (firstBad < 0 && (v < 0 || v >= this.numEmbeddings)) firstBad = i;
    }
    if (firstBad < 0) return;
    const bad = values[firstBad];
    throw new ShapeError(
      `Embedding: token id ${bad} at position [${unravel(firstBad, shape).join(', ')}] is out of range ` +
        `[0, ${this.numEmbeddings - 1}] (ids range from ${lo} to ${hi}; numEmbeddings = ${this.numEmbeddings})`,
      { field: 'ids', expected: `ids in [0, ${this.numEmbeddings - 1}]`, found: { id: bad, min: lo, max: hi } },
    );
  }

  private readIdsSync(ids: tf.Tensor): tf.TypedArray | ArrayLike<number> {
    const backend = tf.getBackend();
    let values: tf.TypedArray | ArrayLike<number> | null = null;
    let cause = '';
    if (backend === 'webgpu') {
      // Never read device data synchronously on WebGPU: in a browser it can lose the device. Ids made from host
      // data, or read once with data(), still have a host copy; use that.
      values = hostCopy(ids);
      if (values == null) cause = 'the ids live only on the GPU';
    } else {
      try {
        values = ids.dataSync();
      } catch (e) {
        cause = (e as Error).message;
      }
    }
    if (values != null) return values;
    throw new BackendError(
      `Embedding: cannot read the ids synchronously on the ${backend} backend to check their range (${cause}). ` +
        'Call `await embedding.validateIds(ids)` before forward, or build the Embedding with checkIds: false.',
      { field: 'ids', expected: 'ids readable on the host', found: backend },
    );
  }
}

/**
 * The host copy the WebGPU backend keeps of a tensor until it uploads it (and again after an async read), or
 * null. This reads tfjs-backend-webgpu's `tensorMap`, an internal: if it changes shape, the answer is null and
 * the caller asks for `validateIds`, which is always correct.
 */
function hostCopy(ids: tf.Tensor): tf.TypedArray | null {
  const backend = tf.engine().backend as unknown as {
    tensorMap?: { get(dataId: object): { values?: tf.TypedArray | null } | undefined };
  };
  return backend.tensorMap?.get(ids.dataId)?.values ?? null;
}

function checkIdsDtype(ids: tf.Tensor): void {
  if (ids.dtype !== 'int32') {
    throw new ShapeError(`Embedding: ids must be int32, found ${ids.dtype}`, {
      field: 'ids',
      expected: 'int32',
      found: ids.dtype,
    });
  }
}

/** The multi-index of flat position `i` in a row-major tensor of `shape`. */
function unravel(i: number, shape: number[]): number[] {
  const out: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    out.unshift(i % shape[d]);
    i = Math.floor(i / shape[d]);
  }
  return out;
}

/**
 * `table[:, ids]`, `[dim, num]` and int32 `[N]` to `[dim, N]`, with a gradient that scatters the columns back,
 * summing repeated ids. tfjs's own `gather` gradient needs `UnsortedSegmentSum`, which tfjs-backend-wasm lacks;
 * `ScatterNd` (which sums duplicates) runs everywhere, so embeddings train on wasm too.
 */
function gatherColumns(table: tf.Tensor, ids: tf.Tensor1D): tf.Tensor2D {
  const [dim, num] = table.shape as [number, number];
  const op = tf.customGrad(((w: tf.Tensor, idx: tf.Tensor, save: tf.GradSaveFunc) => {
    save([idx]);
    return {
      value: tf.gather(w, idx, 1), // [dim, N]
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
        tf.transpose(tf.scatterND(tf.expandDims(saved[0], 1), tf.transpose(dy), [num, dim])), // [N, dim] → [num, dim] → [dim, num]
        tf.zerosLike(saved[0]),
      ],
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (w: tf.Tensor, idx: tf.Tensor) => tf.Tensor2D;
  return op(table, ids);
}
