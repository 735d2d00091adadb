/**
 * Eager validation shared by every block: each check throws a typed error whose message names the owner, the
 * field, the expected and the found value.
 *
 * @module
 */
import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from './errors.js';
import { Module } from './module.js';

/**
 * Throws a {@link ConfigError} unless `value` is a positive integer.
 *
 * @param owner - the block or function, for the message (`Linear`).
 * @param field - the option's name (`inFeatures`).
 *
 * @example
 * ```ts
 * import { checkPositiveInt } from '@slmkit/core';
 * checkPositiveInt('MyBlock', 'heads', 8); // ok
 * // checkPositiveInt('MyBlock', 'heads', 0) throws "MyBlock: heads must be a positive integer, found 0"
 * ```
 */
export function checkPositiveInt(owner: string, field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new ConfigError(`${owner}: ${field} must be a positive integer, found ${String(value)}`, {
      field,
      expected: 'a positive integer',
      found: value,
    });
  }
}

/**
 * Throws a {@link ConfigError} unless `eps` is a finite number greater than 0.
 *
 * @example
 * ```ts
 * import { checkEps } from '@slmkit/core';
 * checkEps('RMSNorm', 1e-6); // ok
 * ```
 */
export function checkEps(owner: string, eps: unknown): void {
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps <= 0) {
    throw new ConfigError(`${owner}: eps must be a finite number > 0, found ${String(eps)}`, {
      field: 'eps',
      expected: 'a finite number > 0',
      found: eps,
    });
  }
}

/**
 * Returns `value` if it is a boolean, `fallback` if it is null or undefined, and throws a {@link ConfigError}
 * otherwise.
 *
 * @example
 * ```ts
 * import { checkFlag } from '@slmkit/core';
 * const bias = checkFlag('Linear', 'bias', undefined, true); // true
 * ```
 */
export function checkFlag(owner: string, field: string, value: unknown, fallback: boolean): boolean {
  if (value == null) return fallback;
  if (typeof value !== 'boolean') {
    throw new ConfigError(`${owner}: ${field} must be a boolean, found ${String(value)}`, {
      field,
      expected: 'boolean',
      found: value,
    });
  }
  return value;
}

/**
 * Throws a {@link ShapeError} unless `x` is a float32 tensor of rank at least 1 whose last dimension is `expected`.
 *
 * @param label - what the expected size is called, for the message (`inFeatures`).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { checkLastDim } from '@slmkit/core';
 * const x = tf.zeros([2, 3, 16]);
 * checkLastDim('MyBlock', x, 16, 'hidden'); // ok
 * ```
 */
export function checkLastDim(owner: string, x: tf.Tensor, expected: number, label: string): void {
  if (x.rank < 1 || x.shape[x.rank - 1] !== expected) {
    const found = x.rank < 1 ? 'a scalar' : String(x.shape[x.rank - 1]);
    throw new ShapeError(
      `${owner}: input's last dimension must be ${label} = ${expected}, found ${found} (input shape [${x.shape.join(', ')}])`,
      { field: 'x', expected, found: x.shape.slice() },
    );
  }
  if (x.dtype !== 'float32') {
    throw new ShapeError(`${owner}: input must be float32, found ${x.dtype}`, {
      field: 'x',
      expected: 'float32',
      found: x.dtype,
    });
  }
}

/**
 * Throws a {@link ConfigError} unless `p` is a projection (a {@link Module} with a `forward`) and, when widths are
 * given, maps `inFeatures` to `outFeatures` (as far as it declares its widths): how a block checks the parts a caller
 * hands it.
 *
 * @param field - the part's name (`inProj`).
 * @param inFeatures - the input width the block needs, if it checks widths here.
 * @param outFeatures - the output width the block needs, if it checks widths here.
 *
 * @example
 * ```ts
 * import { Linear, checkProjection } from '@slmkit/core';
 * checkProjection('MyBlock', 'upProj', new Linear(16, 64), 16, 64); // ok
 * checkProjection('MyBlock', 'downProj', new Linear(64, 16)); // ok: a projection, widths not checked
 * // checkProjection('MyBlock', 'upProj', new Linear(16, 32), 16, 64) throws "MyBlock: upProj must map 16 → 64 features, found 16 → 32"
 * ```
 */
export function checkProjection(
  owner: string,
  field: string,
  p: unknown,
  inFeatures?: number,
  outFeatures?: number,
): void {
  if (!(p instanceof Module) || typeof (p as { forward?: unknown }).forward !== 'function') {
    const found = p instanceof Module ? `${p.constructor.name} without forward()` : p === null ? 'null' : typeof p;
    throw new ConfigError(`${owner}: ${field} must be a Module with forward(x), found ${found}`, {
      field,
      expected: 'a Projection (a Module with forward)',
      found,
    });
  }
  if (inFeatures == null || outFeatures == null) return;
  const { inFeatures: inF, outFeatures: outF } = p as { inFeatures?: number; outFeatures?: number };
  if ((inF != null && inF !== inFeatures) || (outF != null && outF !== outFeatures)) {
    throw new ConfigError(`${owner}: ${field} must map ${inFeatures} → ${outFeatures} features, found ${inF} → ${outF}`, {
      field,
      expected: [inFeatures, outFeatures],
      found: [inF, outF],
    });
  }
}
