/**
 * `selectiveScan`: the Mamba-1 selective scan (Gu & Dao 2023, arXiv 2312.00752), and `selectiveStateUpdate`, its
 * single-step form for decoding.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, defineFusedOp, type FusedOpOptions, type KernelRun } from '@slmkit/core';
import { SCAN_KERNEL, registerCpuKernels } from './kernels-cpu.js';
import { registerWebGPUKernel } from './kernel-webgpu.js';
import { naiveSelectiveScan, type ScanKernelAttrs, type ScanKernelInputs } from './naive.js';

registerCpuKernels();
// The WGSL forward and backward kernels (the gradient is the shared one of kernels-cpu.ts, which runs the backward).
registerWebGPUKernel();

const scanOp = defineFusedOp<ScanKernelInputs, ScanKernelAttrs>({ kernelName: SCAN_KERNEL, naive: naiveSelectiveScan });

/**
 * Options of {@link selectiveScan}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { SelectiveScanOptions } from '@slmkit/ssm';
 * const mamba: SelectiveScanOptions = { D: tf.ones([4]), deltaBias: tf.zeros([4]), deltaSoftplus: true };
 * ```
 */
export interface SelectiveScanOptions extends FusedOpOptions {
  /** The skip connection `D`, `[D]`: `y += D ⊙ u`. */
  D?: tf.Tensor;
  /** The gate `z`, `[B, D, L]`: `y ← y ⊙ silu(z)`. */
  z?: tf.Tensor;
  /** Added to `delta` before the softplus, `[D]` (Mamba's `dt_proj.bias`). */
  deltaBias?: tf.Tensor;
  /** Whether `delta ← softplus(delta + deltaBias)` (default false, as in `mamba_ssm`). */
  deltaSoftplus?: boolean;
  /** The state before the first step, `[B, D, N]` (default zeros): continue a scan, or decode from a prefill. */
  initialState?: tf.Tensor;
  /** Also return the state after the last step (default false). */
  returnLastState?: boolean;
}

/**
 * What {@link selectiveScan} returns with `returnLastState: true`.
 *
 * @example
 * ```ts
 * import type { SelectiveScanResult } from '@slmkit/ssm';
 * function shapes(r: SelectiveScanResult): string {
 *   return `${r.y.shape} ${r.lastState.shape}`; // "1,4,6 1,4,2"
 * }
 * ```
 */
export interface SelectiveScanResult {
  /** `[B, D, L]`. */
  y: tf.Tensor3D;
  /** `[B, D, N]`: the state after the last step. */
  lastState: tf.Tensor3D;
}

function shapeError(field: string, expected: string, found: tf.Tensor | unknown): never {
  const shown = found instanceof tf.Tensor ? `${found.dtype} [${found.shape.join(', ')}]` : String(found);
  throw new ShapeError(`selectiveScan: ${field} must be ${expected}, found ${shown}`, { field, expected, found: shown });
}

function checkTensor(field: string, x: unknown, shape: (number | null)[], label: string): tf.Tensor {
  if (!(x instanceof tf.Tensor) || x.dtype !== 'float32' || x.rank !== shape.length || shape.some((s, i) => s != null && x.shape[i] !== s)) {
    shapeError(field, `float32 ${label}`, x);
  }
  return x;
}

/** Validates the inputs and returns them in the kernel's form (absent optional inputs as empty tensors). */
function kernelInputs(u: tf.Tensor, delta: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor, o: SelectiveScanOptions): ScanKernelInputs {
  checkTensor('u', u, [null, null, null], '[B, D, L]');
  const [Bt, Dc, L] = u.shape;
  if (Bt === 0 || Dc === 0 || L === 0) shapeError('u', '[B, D, L] with every size ≥ 1', u);
  checkTensor('delta', delta, [Bt, Dc, L], `[B, D, L] = [${Bt}, ${Dc}, ${L}] like u`);
  checkTensor('A', A, [Dc, null], `[D, N] with D = ${Dc}`);
  const N = A.shape[1]!;
  if (N === 0) shapeError('A', '[D, N] with N ≥ 1', A);
  const grouped = B instanceof tf.Tensor && B.rank === 4;
  const G = grouped ? B.shape[1]! : 1;
  const bShape = grouped ? [Bt, G, N, L] : [Bt, N, L];
  const bLabel = grouped ? `[B, G, N, L] = [${Bt}, G, ${N}, ${L}]` : `[B, N, L] = [${Bt}, ${N}, ${L}] or grouped [B, G, N, L]`;
  checkTensor('B', B, bShape, bLabel);
  if (Dc % G !== 0) shapeError('B', `grouped with G dividing D = ${Dc}`, B);
  checkTensor('C', C, bShape, `the shape of B, [${bShape.join(', ')}]`);
  if (o.D != null) checkTensor('D', o.D, [Dc], `[D] = [${Dc}]`);
  if (o.z != null) checkTensor('z', o.z, [Bt, Dc, L], `[B, D, L] = [${Bt}, ${Dc}, ${L}] like u`);
  if (o.deltaBias != null) checkTensor('deltaBias', o.deltaBias, [Dc], `[D] = [${Dc}]`);
  if (o.initialState != null) checkTensor('initialState', o.initialState, [Bt, Dc, N], `[B, D, N] = [${Bt}, ${Dc}, ${N}]`);
  for (const flag of ['deltaSoftplus', 'returnLastState'] as const) {
    if (o[flag] != null && typeof o[flag] !== 'boolean') {
      throw new ConfigError(`selectiveScan: ${flag} must be a boolean, found ${typeof o[flag]}`, { field: flag, expected: 'boolean', found: o[flag] });
    }
  }
  const none = (): tf.Tensor => tf.zeros([0]);
  return {
    u,
    delta,
    A,
    B,
    C,
    D: o.D ?? none(),
    z: o.z ?? none(),
    deltaBias: o.deltaBias ?? none(),
    initialState: o.initialState ?? none(),
  };
}

/**
 * The selective scan of Mamba-1 (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State
 * Spaces", arXiv 2312.00752), with the shapes and semantics of `mamba_ssm`'s `selective_scan_fn`. For every batch
 * row `b`, channel `d` and state index `n`:
 *
 * ```text
 * Δ_t   = softplus(delta_t + deltaBias)   (or delta_t without deltaSoftplus)
 * h_t   = exp(Δ_t · A[d, n]) · h_{t−1} + Δ_t · B_t[n] · u_t        h_{−1} = initialState (or 0)
 * y_t   = Σ_n C_t[n] · h_t[n] + D[d] · u_t
 * out_t = y_t · silu(z_t)                                          (when z is given)
 * ```
 *
 * `u, delta, z: [B, D, L]`, `A: [D, N]`, `B, C: [B, N, L]` or grouped `[B, G, N, L]` (channel d reads group
 * `⌊d / (D/G)⌋`), `D, deltaBias: [D]`, `initialState: [B, D, N]`, all float32.
 *
 * It runs a fused kernel where the backend has one (`cpu`, `wasm`: WebAssembly SIMD, four states per instruction;
 * `webgpu`: a WGSL kernel, sequential over time and parallel over batch × channel × state) and the naive tfjs-ops
 * version otherwise, warning once; {@link selectiveScanLastRun} says which ran. Gradients reach every input,
 * `initialState` included, from a backward kernel that recomputes the states instead of recording a graph of L
 * steps: typed arrays on `cpu` and `wasm`, WGSL on `webgpu` (memory O(B·D·N·L) there). On `webgpu` the state size
 * N is at most 256.
 *
 * @returns `y` `[B, D, L]`; with `returnLastState`, `{ y, lastState }`. The caller owns them.
 * @throws {@link @slmkit/core!ShapeError | ShapeError} naming the input whose dtype or shape is wrong;
 *   {@link @slmkit/core!ConfigError | ConfigError} for a non-boolean flag or `implementation: 'fused'` on a
 *   backend without a kernel.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { selectiveScan, selectiveScanLastRun } from '@slmkit/ssm';
 * const [Bt, D, L, N] = [1, 4, 6, 2];
 * const u = tf.randomNormal([Bt, D, L]);
 * const delta = tf.randomNormal([Bt, D, L]);
 * const A = tf.neg(tf.exp(tf.randomNormal([D, N]))); // A = −exp(A_log)
 * const B = tf.randomNormal([Bt, N, L]);
 * const C = tf.randomNormal([Bt, N, L]);
 * const { y, lastState } = selectiveScan(u, delta, A, B, C, { deltaSoftplus: true, returnLastState: true });
 * console.log(y.shape, lastState.shape, selectiveScanLastRun()?.implementation); // [1, 4, 6] [1, 4, 2] "fused"
 * tf.dispose([u, delta, A, B, C, y, lastState]);
 * ```
 */
export function selectiveScan(
  u: tf.Tensor,
  delta: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  C: tf.Tensor,
  options: SelectiveScanOptions & { returnLastState: true },
): SelectiveScanResult;
export function selectiveScan(u: tf.Tensor, delta: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor, options?: SelectiveScanOptions): tf.Tensor3D;
export function selectiveScan(
  u: tf.Tensor,
  delta: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  C: tf.Tensor,
  options: SelectiveScanOptions = {},
): tf.Tensor3D | SelectiveScanResult {
  const returnLastState = options.returnLastState === true;
  const attrs: ScanKernelAttrs = { deltaSoftplus: options.deltaSoftplus === true, returnLastState };
  return tf.tidy(() => {
    const inputs = kernelInputs(u, delta, A, B, C, options);
    const out = scanOp(inputs, attrs, { implementation: options.implementation }); // [B, D, L (+ N)]
    if (!returnLastState) return out as tf.Tensor3D;
    const [Bt, Dc, L] = u.shape;
    const N = A.shape[1]!;
    const y = tf.slice(out, [0, 0, 0], [Bt, Dc, L]) as tf.Tensor3D; // [B, D, L]
    const lastState = tf.slice(out, [0, 0, L], [Bt, Dc, N]) as tf.Tensor3D; // [B, D, N]
    return { y, lastState };
  }) as tf.Tensor3D | SelectiveScanResult;
}

/**
 * Which implementation the last {@link selectiveScan} (or {@link selectiveStateUpdate}) call ran, on which
 * backend; undefined before the first call.
 *
 * @example
 * ```ts
 * import { selectiveScanLastRun } from '@slmkit/ssm';
 * const run = selectiveScanLastRun();
 * if (run?.implementation === 'naive') console.log(`no fused scan on ${run.backend}`);
 * ```
 */
export function selectiveScanLastRun(): KernelRun | undefined {
  return scanOp.lastRun;
}

/**
 * Whether the selective scan has a fused kernel on `backend` (default: the current one).
 *
 * @example
 * ```ts
 * import { hasFusedSelectiveScan } from '@slmkit/ssm';
 * console.log(hasFusedSelectiveScan('wasm'), hasFusedSelectiveScan('webgl')); // true false
 * ```
 */
export function hasFusedSelectiveScan(backend?: string): boolean {
  return scanOp.hasKernel(backend);
}

/**
 * Options of {@link selectiveStateUpdate}: those of {@link selectiveScan} without the state options.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { StateUpdateOptions } from '@slmkit/ssm';
 * const options: StateUpdateOptions = { D: tf.ones([4]), deltaSoftplus: true };
 * ```
 */
export type StateUpdateOptions = Omit<SelectiveScanOptions, 'initialState' | 'returnLastState'>;

/**
 * One decoding step of the selective scan: `h ← exp(Δ·A) ⊙ h + Δ · B ⊗ u`, `y = C · h + D ⊙ u` (gated by
 * `silu(z)`), for one new position. It is {@link selectiveScan} of length 1 from `state`, so prefill and decode
 * share one kernel and one set of maths.
 *
 * @param state - `[B, D, N]`, the state after the previous position (not modified).
 * @param u - `[B, D]`; `delta` `[B, D]`; `A` `[D, N]`; `B`, `C` `[B, N]` or grouped `[B, G, N]`; `z` `[B, D]`.
 * @returns `y` `[B, D]` and the new state `[B, D, N]`; the caller owns both.
 * @throws {@link @slmkit/core!ShapeError | ShapeError} as {@link selectiveScan} does.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { selectiveStateUpdate } from '@slmkit/ssm';
 * const state = tf.zeros([1, 4, 2]);
 * const u = tf.ones([1, 4]), delta = tf.ones([1, 4]);
 * const A = tf.fill([4, 2], -1), B = tf.ones([1, 2]), C = tf.ones([1, 2]);
 * const { y, state: next } = selectiveStateUpdate(state, u, delta, A, B, C);
 * console.log(y.shape, next.shape); // [1, 4] [1, 4, 2]
 * tf.dispose([state, u, delta, A, B, C, y, next]);
 * ```
 */
export function selectiveStateUpdate(
  state: tf.Tensor,
  u: tf.Tensor,
  delta: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  C: tf.Tensor,
  options: StateUpdateOptions = {},
): { y: tf.Tensor2D; state: tf.Tensor3D } {
  return tf.tidy(() => {
    const step = (x: tf.Tensor | undefined): tf.Tensor | undefined => (x == null ? undefined : tf.expandDims(x, -1));
    if (!(u instanceof tf.Tensor) || u.rank !== 2) shapeError('u', '[B, D] (one position)', u);
    const { y, lastState } = selectiveScan(step(u)!, step(delta)!, A, step(B)!, step(C)!, {
      ...options,
      z: step(options.z),
      initialState: state,
      returnLastState: true,
    });
    return { y: tf.squeeze(y, [2]) as tf.Tensor2D, state: lastState };
  });
}
