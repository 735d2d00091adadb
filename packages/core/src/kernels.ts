/**
 * Kernel plumbing: an op with a naive tfjs-ops implementation (the oracle and the fallback) and fused kernels
 * registered per backend with `tf.registerKernel`, gradients alongside. The op reports which implementation ran
 * and warns once per backend when it falls back.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors.js';

/**
 * Which implementation of a {@link FusedOp} ran: the backend's fused kernel, or the naive tfjs-ops version.
 *
 * @example
 * ```ts
 * import type { Implementation } from '@slmkit/core';
 * const ran: Implementation = 'fused';
 * ```
 */
export type Implementation = 'fused' | 'naive';

/**
 * The record of one call of a {@link FusedOp}.
 *
 * @example
 * ```ts
 * import type { KernelRun } from '@slmkit/core';
 * const run: KernelRun = { op: 'SlmkitSelectiveScan', backend: 'wasm', implementation: 'fused' };
 * ```
 */
export interface KernelRun {
  /** The kernel name the op registers under. */
  op: string;
  /** The tfjs backend that was current. */
  backend: string;
  /** What ran. */
  implementation: Implementation;
}

/**
 * Options of a {@link FusedOp} call.
 *
 * @example
 * ```ts
 * import type { FusedOpOptions } from '@slmkit/core';
 * const oracle: FusedOpOptions = { implementation: 'naive' };
 * ```
 */
export interface FusedOpOptions {
  /**
   * `auto` (default): the fused kernel where the current backend has one, else naive with a one-time warning.
   * `naive`: always the tfjs-ops version. `fused`: the kernel, or a {@link ConfigError} if this backend has none.
   */
  implementation?: 'auto' | Implementation;
}

/**
 * An op built by {@link defineFusedOp}: call it like a function; it also tells what ran last.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { defineFusedOp } from '@slmkit/core';
 * const scaleAdd = defineFusedOp<{ a: tf.Tensor; b: tf.Tensor }, { alpha: number }>({
 *   kernelName: 'DocScaleAdd',
 *   naive: ({ a, b }, { alpha }) => tf.add(tf.mul(a, alpha), b),
 * });
 * const y = scaleAdd({ a: tf.ones([2]), b: tf.ones([2]) }, { alpha: 2 }); // [3, 3]
 * console.log(scaleAdd.lastRun?.implementation); // "naive" until a kernel is registered for this backend
 * ```
 */
export interface FusedOp<I extends Record<string, tf.Tensor>, A extends object> {
  (inputs: I, attrs: A, options?: FusedOpOptions): tf.Tensor;
  /** The kernel name used with `tf.registerKernel`. */
  readonly kernelName: string;
  /** The last call's record, or undefined before the first call. */
  readonly lastRun: KernelRun | undefined;
  /** Whether a fused kernel is registered for `backend` (default: the current backend). */
  hasKernel(backend?: string): boolean;
}

/**
 * The spec of {@link defineFusedOp}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { FusedOpSpec } from '@slmkit/core';
 * const spec: FusedOpSpec<{ x: tf.Tensor }, {}> = { kernelName: 'DocSquare', naive: ({ x }) => tf.square(x) };
 * ```
 */
export interface FusedOpSpec<I extends Record<string, tf.Tensor>, A extends object> {
  /** A unique kernel name, by convention `Slmkit` + the op name in PascalCase. */
  kernelName: string;
  /** The reference implementation in plain tfjs ops: the oracle in tests and the fallback. */
  naive: (inputs: I, attrs: A) => tf.Tensor;
}

const warned = new Set<string>();

/**
 * Defines an op that runs a fused kernel when the current backend has one registered under `kernelName` (see
 * {@link registerFusedKernel}) and the naive tfjs-ops version otherwise, warning once per (op, backend) when it
 * falls back. Gradients of the fused path come from the gradient registered with the kernel; the naive path
 * differentiates through tfjs ops.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { defineFusedOp, registerFusedKernel } from '@slmkit/core';
 *
 * const square = defineFusedOp<{ x: tf.Tensor }, {}>({ kernelName: 'DocSquare2', naive: ({ x }) => tf.square(x) });
 * registerFusedKernel({
 *   kernelName: 'DocSquare2',
 *   backendName: 'cpu',
 *   kernelFunc: ({ inputs, backend }) => {
 *     const x = inputs.x as tf.Tensor;
 *     const data = (backend as any).readSync(x.dataId) as Float32Array; // a typed-array loop over the input
 *     const out = data.map((v) => v * v);
 *     return (backend as any).makeTensorInfo(x.shape, 'float32', out);
 *   },
 *   gradient: { inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as tf.Tensor, tf.mul(x, 2)) }) },
 * });
 * ```
 */
export function defineFusedOp<I extends Record<string, tf.Tensor>, A extends object>(spec: FusedOpSpec<I, A>): FusedOp<I, A> {
  let lastRun: KernelRun | undefined;
  const hasKernel = (backend: string = tf.getBackend()): boolean => tf.getKernel(spec.kernelName, backend) != null;
  const op = (inputs: I, attrs: A, options: FusedOpOptions = {}): tf.Tensor => {
    const mode = options.implementation ?? 'auto';
    const backend = tf.getBackend();
    let implementation: Implementation;
    if (mode === 'naive') {
      implementation = 'naive';
    } else if (hasKernel(backend)) {
      implementation = 'fused';
    } else if (mode === 'fused') {
      throw new ConfigError(`${spec.kernelName}: no fused kernel registered for backend "${backend}"`, {
        field: 'implementation',
        expected: 'a backend with a fused kernel',
        found: backend,
      });
    } else {
      implementation = 'naive';
      const key = `${spec.kernelName}/${backend}`;
      if (!warned.has(key)) {
        warned.add(key);
        console.warn(`slmkit: ${spec.kernelName} has no fused kernel on "${backend}"; using the naive tfjs-ops version`);
      }
    }
    lastRun = { op: spec.kernelName, backend, implementation };
    if (implementation === 'naive') return spec.naive(inputs, attrs);
    return tf.engine().runKernel(
      spec.kernelName,
      inputs as unknown as tf.NamedTensorMap,
      attrs as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
  };
  Object.defineProperty(op, 'kernelName', { value: spec.kernelName });
  Object.defineProperty(op, 'lastRun', { get: () => lastRun });
  Object.defineProperty(op, 'hasKernel', { value: hasKernel });
  return op as FusedOp<I, A>;
}

/**
 * A fused kernel for one backend, with an optional gradient (registered once per kernel name, shared by all
 * backends).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { FusedKernelSpec } from '@slmkit/core';
 * const spec: FusedKernelSpec = {
 *   kernelName: 'DocIdentity',
 *   backendName: 'cpu',
 *   kernelFunc: ({ inputs }) => inputs.x as tf.TensorInfo,
 * };
 * ```
 */
export interface FusedKernelSpec {
  /** The op's kernel name, as given to {@link defineFusedOp}. */
  kernelName: string;
  /** The tfjs backend this kernel runs on (`cpu`, `wasm`, `webgpu`). */
  backendName: string;
  /** The kernel itself, in tfjs's `KernelFunc` form. */
  kernelFunc: tf.KernelFunc;
  /** The gradient, in tfjs's `GradConfig` form minus `kernelName`. */
  gradient?: Omit<tf.GradConfig, 'kernelName'>;
}

/**
 * Registers a fused kernel for one backend (and its gradient, if given and not yet registered). Registering the
 * same kernel twice for a backend replaces the first.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { registerFusedKernel } from '@slmkit/core';
 * registerFusedKernel({
 *   kernelName: 'DocNegate',
 *   backendName: 'cpu',
 *   kernelFunc: ({ inputs }) => tf.neg(inputs.x as tf.Tensor),
 *   gradient: { gradFunc: (dy) => ({ x: () => tf.neg(dy as tf.Tensor) }) },
 * });
 * ```
 */
export function registerFusedKernel(spec: FusedKernelSpec): void {
  if (tf.getKernel(spec.kernelName, spec.backendName) != null) {
    tf.unregisterKernel(spec.kernelName, spec.backendName);
  }
  tf.registerKernel({ kernelName: spec.kernelName, backendName: spec.backendName, kernelFunc: spec.kernelFunc });
  if (spec.gradient != null && tf.getGradient(spec.kernelName) == null) {
    tf.registerGradient({ kernelName: spec.kernelName, ...spec.gradient });
  }
}

/**
 * The gradients of `f` at `inputs` for the upstream gradient `dy`, taken inside a registered gradient (a
 * `gradFunc`): how a fused kernel without a backward kernel differentiates by recomputing its forward with tfjs
 * ops. Inputs listed in `names` that are empty (size 0: an absent optional input) get a zero gradient of their
 * shape and are not differentiated; the result is in `names` order.
 *
 * A `tf.grads` inside a `gradFunc` runs while the outer `tf.grads` is in its backward pass: it starts its own tape
 * and clears the engine's when done, which would break the outer one. This puts the outer tape back (it touches
 * the engine's `state.activeTape`, a tfjs internal, in this one place).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { recomputeGradients } from '@slmkit/core';
 * // Inside a gradFunc: d/dx and d/dy of sum(x · y), with an absent (empty) bias.
 * const x = tf.tensor1d([1, 2]);
 * const y = tf.tensor1d([3, 4]);
 * const bias = tf.zeros([0]);
 * const [dx, dy, dBias] = recomputeGradients(['x', 'y', 'bias'], { x, y, bias }, (t) => tf.mul(t.x, t.y), tf.ones([2]));
 * console.log(dx.arraySync(), dy.arraySync(), dBias.shape); // [3, 4] [1, 2] [0]
 * ```
 */
export function recomputeGradients<N extends string>(
  names: readonly N[],
  inputs: Readonly<Record<N, tf.Tensor>>,
  f: (inputs: Record<N, tf.Tensor>) => tf.Tensor,
  dy: tf.Tensor,
): tf.Tensor[] {
  const present = names.filter((name) => inputs[name].size > 0);
  const g = (...xs: tf.Tensor[]): tf.Tensor => {
    const all = { ...inputs } as Record<N, tf.Tensor>;
    present.forEach((name, i) => (all[name] = xs[i]));
    return f(all);
  };
  const engine = tf.engine() as unknown as { state: { activeTape: unknown } };
  const outerTape = engine.state.activeTape;
  let partial: tf.Tensor[];
  try {
    partial = tf.grads(g)(present.map((name) => inputs[name]), dy);
  } finally {
    engine.state.activeTape = outerTape;
  }
  return names.map((name) => {
    const i = present.indexOf(name);
    return i >= 0 ? partial[i] : tf.zeros(inputs[name].shape);
  });
}

/**
 * What {@link fusedGradient} needs: the kernel's input names (in the order its backward kernel returns their
 * gradients), that backward kernel's name, and the tfjs-ops forward to differentiate where a backend lacks it.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { FusedGradientSpec } from '@slmkit/core';
 * const spec: FusedGradientSpec<'x', object> = {
 *   inputNames: ['x'],
 *   gradKernelName: 'DocSquareGrad',
 *   recompute: ({ x }) => tf.square(x),
 * };
 * ```
 */
export interface FusedGradientSpec<N extends string, A> {
  /** The kernel's inputs, in the order of the backward kernel's outputs. */
  inputNames: readonly N[];
  /** The backward kernel: inputs the forward's and `dy`, attrs the forward's, one gradient per input. */
  gradKernelName: string;
  /** The forward in tfjs ops, differentiated (see {@link recomputeGradients}) where there is no backward kernel. */
  recompute: (inputs: Record<N, tf.Tensor>, attrs: A) => tf.Tensor;
  /** Told which way each gradient ran. */
  onRun?: (run: { backend: string; path: 'kernel' | 'recompute' }) => void;
}

/**
 * The gradient to register with a fused kernel (`registerFusedKernel({ gradient })`): the backend's backward
 * kernel where it has one, otherwise {@link recomputeGradients} of the tfjs-ops forward from the saved inputs.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { fusedGradient } from '@slmkit/core';
 * const gradient = fusedGradient<'x', object>({ inputNames: ['x'], gradKernelName: 'DocSquareGrad', recompute: ({ x }) => tf.square(x) });
 * console.log(gradient.inputsToSave); // ["x"]
 * ```
 */
export function fusedGradient<N extends string, A>(spec: FusedGradientSpec<N, A>): Omit<tf.GradConfig, 'kernelName'> {
  const { inputNames, gradKernelName, recompute, onRun } = spec;
  return {
    inputsToSave: [...inputNames],
    gradFunc: (dy, saved, attrs) => {
      const inputs = Object.fromEntries(inputNames.map((name, i) => [name, saved[i]])) as Record<N, tf.Tensor>;
      const a = attrs as unknown as A;
      const backend = tf.getBackend();
      const path = tf.getKernel(gradKernelName, backend) != null ? 'kernel' : 'recompute';
      onRun?.({ backend, path });
      const grads =
        path === 'kernel'
          ? (tf.engine().runKernel(gradKernelName, { ...inputs, dy } as unknown as tf.NamedTensorMap, { ...a } as unknown as tf.NamedAttrMap) as tf.Tensor[])
          : recomputeGradients(inputNames, inputs, (all) => recompute(all, a), dy as tf.Tensor);
      return Object.fromEntries(inputNames.map((name, i) => [name, () => grads[i]]));
    },
  };
}

/** What {@link runTypedKernel} and {@link tensorStorage} need of a `cpu` or `wasm` backend. */
interface TypedArrayBackend {
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
  /** `wasm` only (`cpu` has a `makeOutput` of another signature: the two are told apart by `typedArrayFromHeap`). */
  makeOutput?(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap?(info: tf.TensorInfo): Float32Array | Int32Array;
  /** `cpu`: its tensors' arrays, by data id. */
  data?: { get(dataId: object): { values?: unknown } | undefined };
}

/**
 * The `cpu` or `wasm` backend's own storage of a float32 or int32 tensor: a view of the wasm heap (detached when the
 * heap next grows, so take it after allocating), or the cpu backend's array. Writing to it changes the tensor in
 * place, which tfjs otherwise never does: only for storage that no other tensor or caller can see.
 *
 * @param backend - a `cpu` or `wasm` backend (`tf.backend()`, or a kernel's `backend`).
 * @throws Error for another backend, or a tensor without such storage (a complex or string tensor).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { tensorStorage } from '@slmkit/core';
 * await tf.setBackend('cpu');
 * const x = tf.tensor1d([1, 2, 3]);
 * console.log(Array.from(tensorStorage(tf.backend(), x))); // [1, 2, 3]
 * x.dispose();
 * ```
 */
export function tensorStorage<V extends Float32Array | Int32Array = Float32Array>(backend: unknown, info: tf.TensorInfo): V {
  const b = backend as TypedArrayBackend;
  if (b.typedArrayFromHeap != null) return b.typedArrayFromHeap(info) as V;
  const values = b.data?.get(info.dataId)?.values;
  if (!(values instanceof Float32Array) && !(values instanceof Int32Array)) {
    throw new Error(`tensorStorage: no float32 or int32 storage for a tensor on backend ${tf.getBackend()}`);
  }
  return values as V;
}

/**
 * Runs a float32 kernel written as a typed-array loop on `cpu` or `wasm`, inside a `kernelFunc`: `body` gets views
 * of the inputs and of the outputs to fill (one per shape in `outShapes`). On `wasm` they are views of the
 * backend's heap (no copy in or out; the outputs are allocated first, since growing the heap detaches earlier
 * views); on `cpu` the inputs are the backend's arrays and the outputs new arrays handed to it. Inputs may be int32
 * (their views are `Int32Array`s): name the view type `V` to receive both.
 *
 * @returns the outputs, for the `kernelFunc` to return.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { registerFusedKernel, runTypedKernel } from '@slmkit/core';
 * registerFusedKernel({
 *   kernelName: 'DocTwice',
 *   backendName: 'cpu',
 *   kernelFunc: ({ inputs, backend }) => {
 *     const x = inputs.x as tf.TensorInfo;
 *     const [y] = runTypedKernel(backend, [x], [x.shape], ([v], [out]) => {
 *       for (let i = 0; i < out.length; i++) out[i] = 2 * v[i];
 *     });
 *     return y;
 *   },
 * });
 * ```
 */
export function runTypedKernel<V extends Float32Array | Int32Array = Float32Array>(
  backend: unknown,
  inputs: readonly tf.TensorInfo[],
  outShapes: readonly number[][],
  body: (inputs: V[], outputs: Float32Array[]) => void,
): tf.TensorInfo[] {
  const b = backend as TypedArrayBackend;
  if (b.typedArrayFromHeap != null) {
    const outs = outShapes.map((shape) => b.makeOutput!(shape, 'float32'));
    body(
      inputs.map((t) => tensorStorage<V>(b, t)),
      outs.map((t) => tensorStorage(b, t)),
    );
    return outs;
  }
  const outs = outShapes.map((shape) => new Float32Array(shape.reduce((x, y) => x * y, 1)));
  body(
    inputs.map((t) => tensorStorage<V>(b, t)),
    outs,
  );
  return outs.map((values, i) => b.makeTensorInfo(outShapes[i], 'float32', values));
}
