/**
 * Typed errors. Every error slmkit throws for bad input is one of these four, and its message says what was
 * expected, what was found, and where.
 *
 * @module
 */

/**
 * Optional structured context carried by every slmkit error, so callers can react to the field that was wrong
 * without parsing the message.
 *
 * @example
 * ```ts
 * import { ConfigError } from '@slmkit/core';
 * try {
 *   throw new ConfigError('kvHeads (3) must divide heads (8)', { field: 'kvHeads', expected: 'a divisor of 8', found: 3 });
 * } catch (e) {
 *   if (e instanceof ConfigError) console.log(e.details.field); // "kvHeads"
 * }
 * ```
 */
export interface ErrorDetails {
  /** The option, tensor or field that was wrong. */
  field?: string;
  /** What was expected, in words or as a value. */
  expected?: unknown;
  /** What was found. */
  found?: unknown;
}

/**
 * Base class of every error slmkit throws on purpose. Catch this to catch them all.
 *
 * @example
 * ```ts
 * import { SlmkitError, ShapeError } from '@slmkit/core';
 * const e = new ShapeError('x must be rank 3', { field: 'x', expected: 3, found: 2 });
 * console.log(e instanceof SlmkitError); // true
 * ```
 */
export class SlmkitError extends Error {
  /** Structured context: the field, the expected and the found value where known. */
  readonly details: ErrorDetails;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = new.target.name;
    this.details = details;
  }
}

/**
 * A configuration or constructor option is invalid (a wrong type, out of range, or inconsistent with another).
 *
 * @example
 * ```ts
 * import { ConfigError } from '@slmkit/core';
 * const heads = 8, kvHeads = 3;
 * if (heads % kvHeads !== 0) {
 *   console.log(new ConfigError(`kvHeads (${kvHeads}) must divide heads (${heads})`).message);
 * }
 * ```
 */
export class ConfigError extends SlmkitError {}

/**
 * A tensor has the wrong rank, shape or dtype for the block it was passed to.
 *
 * @example
 * ```ts
 * import { ShapeError } from '@slmkit/core';
 * const err = new ShapeError('Linear input: last dimension must be 16, found 8', { field: 'x', expected: 16, found: 8 });
 * console.log(err.name); // "ShapeError"
 * ```
 */
export class ShapeError extends SlmkitError {}

/**
 * A backend cannot start, is not installed, or lacks something an operation needs.
 *
 * @example
 * ```ts
 * import { initBackend, BackendError } from '@slmkit/core';
 * try {
 *   await initBackend('cuda');
 * } catch (e) {
 *   if (e instanceof BackendError) console.log(e.message); // says how to install @tensorflow/tfjs-node-gpu
 * }
 * ```
 */
export class BackendError extends SlmkitError {}

/**
 * One thing wrong with a checkpoint: its kind, the tensor or field it concerns, and a sentence.
 *
 * @example
 * ```ts
 * import { CheckpointError } from '@slmkit/core';
 * function describe(e: CheckpointError): string[] {
 *   return e.problems.filter((p) => p.kind === 'shape').map((p) => p.message);
 * }
 * ```
 */
export interface CheckpointProblem {
  /** What kind of problem this is. */
  kind: 'missing' | 'unexpected' | 'shape' | 'dtype' | 'format';
  /** The tensor name (or file field) concerned. */
  name: string;
  /** A sentence with the expected and found values. */
  message: string;
}

/**
 * A checkpoint file is malformed, or its tensors do not fit the model. When loading weights, one
 * `CheckpointError` lists every missing, unexpected and mis-shaped tensor at once in {@link CheckpointError.problems}.
 *
 * @example
 * ```ts
 * import { CheckpointError } from '@slmkit/core';
 * const err = new CheckpointError('1 tensor missing', [
 *   { kind: 'missing', name: 'lm_head.weight', message: 'lm_head.weight: not in the checkpoint' },
 * ]);
 * console.log(err.problems.length); // 1
 * ```
 */
export class CheckpointError extends SlmkitError {
  /** Every problem found, in a stable order (missing, unexpected, shape, dtype, format). */
  readonly problems: CheckpointProblem[];

  constructor(message: string, problems: CheckpointProblem[] = [], details: ErrorDetails = {}) {
    super(message, details);
    this.problems = problems;
  }
}
