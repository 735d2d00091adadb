/**
 * `ssdScan`: Mamba-2's state-space-duality scan (Dao & Gu 2024, arXiv 2405.21060), and `ssdStateUpdate`, its
 * single-step form for decoding.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, defineFusedOp, type Implementation } from '@slmkit/core';
import { SSD_KERNEL, registerSsdCpuKernels } from './ssd-kernels-cpu.js';
import { registerSsdWebGPUKernel } from './ssd-kernel-webgpu.js';
import { chunkedSsdScan, naiveSsdScan, type SsdKernelAttrs, type SsdKernelInputs } from './ssd-naive.js';

// The cpu / wasm kernels register the gradient every backend shares; the WGSL kernel is forward only.
registerSsdCpuKernels();
registerSsdWebGPUKernel();

const fusedOp = defineFusedOp<SsdKernelInputs, SsdKernelAttrs>({ kernelName: SSD_KERNEL, naive: naiveSsdScan });

/**
 * The implementations of {@link ssdScan}: `naive` (the sequential recurrence in tfjs ops, the oracle), `chunked`
 * (the four-step SSD algorithm in tfjs ops) and `fused` (the backend's kernel).
 *
 * @example
 * ```ts
 * import type { SsdImplementation } from '@slmkit/ssm';
 * const oracle: SsdImplementation = 'naive';
 * ```
 */
export type SsdImplementation = Implementation | 'chunked';

/**
 * Options of {@link ssdScan}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { SsdScanOptions } from '@slmkit/ssm';
 * // What Mamba2Mixer passes: dt_bias, the softplus and the lower clamp time_step_min.
 * const options: SsdScanOptions = { D: tf.ones([4]), dtBias: tf.zeros([4]), dtSoftplus: true, dtLimit: [1e-3, Infinity] };
 * ```
 */
export interface SsdScanOptions {
  /** Chunk length of the chunked implementation (default 256, Mamba-2's `chunk_size`); any L works. */
  chunkSize?: number;
  /** The skip connection, one scalar per head, `[H]`: `y += D[h] · x`. */
  D?: tf.Tensor;
  /** The gate, `[B, L, H, P]`: `y ← y ⊙ silu(z)`. */
  z?: tf.Tensor;
  /** Added to `dt` before the softplus, `[H]` (Mamba-2's `dt_bias`). */
  dtBias?: tf.Tensor;
  /** Whether `dt ← softplus(dt + dtBias)` (default false). */
  dtSoftplus?: boolean;
  /** `[min, max]`: clamp the processed dt (default none; `time_step_min` of `transformers`' Mamba-2 is `[min, Infinity]`). */
  dtLimit?: readonly [number, number];
  /** The state before the first step, `[B, H, P, N]` (default zeros). */
  initialState?: tf.Tensor;
  /** Also return the state after the last step (default false). */
  returnFinalState?: boolean;
  /**
   * `auto` (default): the fused kernel where the backend has one, else `chunked` with a one-time warning.
   * `fused` throws a `ConfigError` on a backend without a kernel.
   */
  implementation?: 'auto' | SsdImplementation;
}

/**
 * What {@link ssdScan} returns with `returnFinalState: true`.
 *
 * @example
 * ```ts
 * import type { SsdScanResult } from '@slmkit/ssm';
 * function shapes(r: SsdScanResult): string {
 *   return `${r.y.shape} ${r.finalState.shape}`; // "1,6,4,8 1,4,8,16"
 * }
 * ```
 */
export interface SsdScanResult {
  /** `[B, L, H, P]`. */
  y: tf.Tensor4D;
  /** `[B, H, P, N]`: the state after the last step. */
  finalState: tf.Tensor4D;
}

/**
 * The record of one {@link ssdScan} call.
 *
 * @example
 * ```ts
 * import type { SsdScanRun } from '@slmkit/ssm';
 * const run: SsdScanRun = { op: 'SlmkitSsdScan', backend: 'wasm', implementation: 'fused' };
 * ```
 */
export interface SsdScanRun {
  /** The kernel name. */
  op: string;
  /** The tfjs backend that was current. */
  backend: string;
  /** What ran. */
  implementation: SsdImplementation;
}

let lastRun: SsdScanRun | undefined;
const warned = new Set<string>();

function shapeError(field: string, expected: string, found: unknown): never {
  const shown = found instanceof tf.Tensor ? `${found.dtype} [${found.shape.join(', ')}]` : String(found);
  throw new ShapeError(`ssdScan: ${field} must be ${expected}, found ${shown}`, { field, expected, found: shown });
}

function checkTensor(field: string, x: unknown, shape: (number | null)[], label: string): tf.Tensor {
  if (!(x instanceof tf.Tensor) || x.dtype !== 'float32' || x.rank !== shape.length || shape.some((s, i) => s != null && x.shape[i] !== s)) {
    shapeError(field, `float32 ${label}`, x);
  }
  return x;
}

function configError(field: string, expected: string, found: unknown): never {
  throw new ConfigError(`ssdScan: ${field} must be ${expected}, found ${JSON.stringify(found) ?? String(found)}`, { field, expected, found });
}

/** Validates the inputs and options and returns them in the kernel's form (absent inputs as empty tensors). */
function kernelArgs(x: tf.Tensor, dt: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor, o: SsdScanOptions): { inputs: SsdKernelInputs; attrs: SsdKernelAttrs } {
  checkTensor('x', x, [null, null, null, null], '[B, L, H, P]');
  const [Bt, L, H, P] = x.shape;
  if (x.size === 0) shapeError('x', '[B, L, H, P] with every size ≥ 1', x);
  checkTensor('dt', dt, [Bt, L, H], `[B, L, H] = [${Bt}, ${L}, ${H}]`);
  checkTensor('A', A, [H], `[H] = [${H}]`);
  checkTensor('B', B, [Bt, L, null, null], `[B, L, G, N] = [${Bt}, ${L}, G, N]`);
  const [, , G, N] = B.shape;
  if (G === 0 || N === 0 || H % G !== 0) shapeError('B', `[B, L, G, N] with N ≥ 1 and G dividing H = ${H}`, B);
  checkTensor('C', C, [Bt, L, G, N], `the shape of B, [${Bt}, ${L}, ${G}, ${N}]`);
  if (o.D != null) checkTensor('D', o.D, [H], `[H] = [${H}]`);
  if (o.z != null) checkTensor('z', o.z, [Bt, L, H, P], `[B, L, H, P] = [${Bt}, ${L}, ${H}, ${P}] like x`);
  if (o.dtBias != null) checkTensor('dtBias', o.dtBias, [H], `[H] = [${H}]`);
  if (o.initialState != null) checkTensor('initialState', o.initialState, [Bt, H, P, N], `[B, H, P, N] = [${Bt}, ${H}, ${P}, ${N}]`);
  for (const flag of ['dtSoftplus', 'returnFinalState'] as const) {
    if (o[flag] != null && typeof o[flag] !== 'boolean') configError(flag, 'a boolean', o[flag]);
  }
  const chunkSize = o.chunkSize ?? 256;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) configError('chunkSize', 'a positive integer', o.chunkSize);
  let dtMin = -Infinity;
  let dtMax = Infinity;
  if (o.dtLimit != null) {
    const lim = o.dtLimit;
    if (!Array.isArray(lim) || lim.length !== 2 || typeof lim[0] !== 'number' || typeof lim[1] !== 'number' || Number.isNaN(lim[0]) || Number.isNaN(lim[1]) || !(lim[0] <= lim[1])) {
      configError('dtLimit', '[min, max] with min ≤ max', lim);
    }
    [dtMin, dtMax] = lim;
  }
  const none = (): tf.Tensor => tf.zeros([0]);
  return {
    inputs: { x, dt, A, B, C, D: o.D ?? none(), z: o.z ?? none(), dtBias: o.dtBias ?? none(), initialState: o.initialState ?? none() },
    attrs: { dtSoftplus: o.dtSoftplus === true, dtMin, dtMax, chunkSize, returnFinalState: o.returnFinalState === true },
  };
}

/** Picks and runs the implementation, recording it. */
function run(inputs: SsdKernelInputs, attrs: SsdKernelAttrs, mode: 'auto' | SsdImplementation): tf.Tensor {
  const backend = tf.getBackend();
  if (!['auto', 'fused', 'chunked', 'naive'].includes(mode)) configError('implementation', '"auto", "fused", "chunked" or "naive"', mode);
  let implementation: SsdImplementation;
  if (mode === 'naive' || mode === 'chunked') {
    implementation = mode;
  } else if (fusedOp.hasKernel(backend)) {
    implementation = 'fused';
  } else if (mode === 'fused') {
    return configError('implementation', 'a backend with a fused ssdScan kernel (cpu, wasm, webgpu)', backend);
  } else {
    implementation = 'chunked';
    if (!warned.has(backend)) {
      warned.add(backend);
      console.warn(`slmkit: ssdScan has no fused kernel on "${backend}"; using the chunked tfjs-ops version`);
    }
  }
  lastRun = { op: SSD_KERNEL, backend, implementation };
  if (implementation === 'naive') return naiveSsdScan(inputs, attrs);
  if (implementation === 'chunked') return chunkedSsdScan(inputs, attrs);
  return fusedOp(inputs, attrs, { implementation: 'fused' });
}

/**
 * The state-space-duality scan of Mamba-2 (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and
 * Efficient Algorithms Through Structured State Space Duality", arXiv 2405.21060), with `mamba_ssm`'s shapes
 * (`mamba_chunk_scan_combined`). A is one scalar per head, so for every batch row, head `h` (reading group
 * `g = ⌊h / (H/G)⌋`) and position `t`:
 *
 * ```text
 * Δ_t   = clamp(softplus(dt_t + dtBias[h]), dtLimit)     (each part optional)
 * S_t   = exp(Δ_t · A[h]) · S_{t−1} + Δ_t · x_t ⊗ B_t[g]    S: [P, N], S_{−1} = initialState (or 0)
 * y_t   = S_t · C_t[g] + D[h] · x_t                       [P]
 * out_t = y_t ⊙ silu(z_t)                                  (when z is given)
 * ```
 *
 * `x, z: [B, L, H, P]`, `dt: [B, L, H]`, `A, D, dtBias: [H]`, `B, C: [B, L, G, N]`, `initialState: [B, H, P, N]`,
 * all float32.
 *
 * Three implementations compute it: `naive` (the recurrence, one tfjs step per position: the oracle), `chunked`
 * (the SSD algorithm in tfjs ops: quadratic attention-like blocks inside chunks of `chunkSize`, a recurrence
 * over chunk states between them; linear in L) and `fused` (`cpu` and `wasm`: one pass over typed arrays;
 * `webgpu`: WGSL, one invocation per batch × head × row of the state). `auto` runs the fused kernel where there
 * is one and `chunked` otherwise, warning once; {@link ssdScanLastRun} says which ran. Gradients reach every
 * input, `initialState` included: on `cpu` and `wasm` through a backward kernel (states recomputed from √L
 * checkpoints, no recorded graph); on `webgpu` the forward is fused and the gradient recomputes through the
 * chunked scan.
 *
 * @returns `y` `[B, L, H, P]`; with `returnFinalState`, `{ y, finalState }`. The caller owns them.
 * @throws {@link @slmkit/core!ShapeError | ShapeError} naming the input whose dtype or shape is wrong;
 *   {@link @slmkit/core!ConfigError | ConfigError} for a bad option or `implementation: 'fused'` on a backend
 *   without a kernel.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { ssdScan, ssdScanLastRun } from '@slmkit/ssm';
 * const [Bt, L, H, P, G, N] = [1, 6, 4, 8, 2, 16];
 * const x = tf.randomNormal([Bt, L, H, P]);
 * const dt = tf.randomNormal([Bt, L, H]);
 * const A = tf.neg(tf.exp(tf.randomNormal([H]))); // A = −exp(A_log)
 * const B = tf.randomNormal([Bt, L, G, N]);
 * const C = tf.randomNormal([Bt, L, G, N]);
 * const { y, finalState } = ssdScan(x, dt, A, B, C, { dtSoftplus: true, chunkSize: 4, returnFinalState: true });
 * console.log(y.shape, finalState.shape, ssdScanLastRun()?.implementation); // [1, 6, 4, 8] [1, 4, 8, 16] "fused"
 * tf.dispose([x, dt, A, B, C, y, finalState]);
 * ```
 */
export function ssdScan(
  x: tf.Tensor,
  dt: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  C: tf.Tensor,
  options: SsdScanOptions & { returnFinalState: true },
): SsdScanResult;
export function ssdScan(x: tf.Tensor, dt: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor, options?: SsdScanOptions): tf.Tensor4D;
export function ssdScan(x: tf.Tensor, dt: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor, options: SsdScanOptions = {}): tf.Tensor4D | SsdScanResult {
  return tf.tidy(() => {
    const { inputs, attrs } = kernelArgs(x, dt, A, B, C, options);
    const out = run(inputs, attrs, options.implementation ?? 'auto'); // [B, L·H·P (+ H·P·N)]
    const [Bt, L, H, P] = x.shape;
    const N = B.shape[3]!;
    const y = tf.reshape(attrs.returnFinalState ? tf.slice(out, [0, 0], [Bt, L * H * P]) : out, [Bt, L, H, P]) as tf.Tensor4D; // [B, L, H, P]
    if (!attrs.returnFinalState) return y;
    const finalState = tf.reshape(tf.slice(out, [0, L * H * P], [Bt, H * P * N]), [Bt, H, P, N]) as tf.Tensor4D; // [B, H, P, N]
    return { y, finalState };
  }) as tf.Tensor4D | SsdScanResult;
}

/**
 * Which implementation the last {@link ssdScan} (or {@link ssdStateUpdate}) call ran, on which backend; undefined
 * before the first call.
 *
 * @example
 * ```ts
 * import { ssdScanLastRun } from '@slmkit/ssm';
 * const run = ssdScanLastRun();
 * if (run != null && run.implementation !== 'fused') console.log(`ssdScan ran ${run.implementation} on ${run.backend}`);
 * ```
 */
export function ssdScanLastRun(): SsdScanRun | undefined {
  return lastRun;
}

/**
 * Whether {@link ssdScan} has a fused kernel on `backend` (default: the current one).
 *
 * @example
 * ```ts
 * import { hasFusedSsdScan } from '@slmkit/ssm';
 * console.log(hasFusedSsdScan('wasm'), hasFusedSsdScan('webgl')); // true false
 * ```
 */
export function hasFusedSsdScan(backend?: string): boolean {
  return fusedOp.hasKernel(backend);
}

/**
 * Options of {@link ssdStateUpdate}: those of {@link ssdScan} without the state options and the chunk size.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { SsdStateUpdateOptions } from '@slmkit/ssm';
 * const options: SsdStateUpdateOptions = { D: tf.ones([4]), dtSoftplus: true };
 * ```
 */
export type SsdStateUpdateOptions = Omit<SsdScanOptions, 'initialState' | 'returnFinalState' | 'chunkSize'>;

/**
 * One decoding step of the Mamba-2 scan: `S ← exp(Δ·A)·S + Δ·x ⊗ B`, `y = S·C + D·x` (gated by `silu(z)`), for
 * one new position. It is {@link ssdScan} of length 1 from `state`, so prefill and decode share the kernels and
 * the maths.
 *
 * @param state - `[B, H, P, N]`, the state after the previous position (not modified).
 * @param x - `[B, H, P]`; `dt` `[B, H]`; `A` `[H]`; `B`, `C` `[B, G, N]`; `z` `[B, H, P]`.
 * @returns `y` `[B, H, P]` and the new state `[B, H, P, N]`; the caller owns both.
 * @throws {@link @slmkit/core!ShapeError | ShapeError} as {@link ssdScan} does.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { ssdStateUpdate } from '@slmkit/ssm';
 * const state = tf.zeros([1, 2, 4, 8]);
 * const x = tf.ones([1, 2, 4]), dt = tf.ones([1, 2]), A = tf.fill([2], -1);
 * const B = tf.ones([1, 1, 8]), C = tf.ones([1, 1, 8]);
 * const { y, state: next } = ssdStateUpdate(state, x, dt, A, B, C);
 * console.log(y.shape, next.shape); // [1, 2, 4] [1, 2, 4, 8]
 * tf.dispose([state, x, dt, A, B, C, y, next]);
 * ```
 */
export function ssdStateUpdate(
  state: tf.Tensor,
  x: tf.Tensor,
  dt: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  C: tf.Tensor,
  options: SsdStateUpdateOptions = {},
): { y: tf.Tensor3D; state: tf.Tensor4D } {
  return tf.tidy(() => {
    if (!(x instanceof tf.Tensor) || x.rank !== 3) shapeError('x', '[B, H, P] (one position)', x);
    const step = (t: tf.Tensor | undefined): tf.Tensor | undefined => (t == null ? undefined : tf.expandDims(t, 1));
    const { y, finalState } = ssdScan(step(x)!, step(dt)!, A, step(B)!, step(C)!, {
      ...options,
      z: step(options.z),
      initialState: state,
      returnFinalState: true,
    });
    return { y: tf.squeeze(y, [1]) as tf.Tensor3D, state: finalState };
  });
}
