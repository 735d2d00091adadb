/**
 * The fused selective-scan kernels of the `cpu` and `wasm` backends (one pass over typed arrays, state in a small
 * buffer, no per-step tensors), the backward kernel they share, and the gradient every backend uses (it runs the
 * backend's backward kernel: this one on `cpu` and `wasm`, the WGSL one of `kernel-webgpu.ts` on `webgpu`).
 *
 * On `wasm` the kernels read and write the backend's tensors in place on the wasm heap (`typedArrayFromHeap`);
 * on `cpu` they read the backend's arrays (`readSync`) and hand it new ones (`makeTensorInfo`).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { fusedGradient, registerFusedKernel } from '@slmkit/core';
import { SCAN_INPUT_NAMES, naiveSelectiveScan, type ScanKernelAttrs, type ScanKernelInputs } from './naive.js';
import { scanBackward, scanForward, type ScanArrays, type ScanDims } from './scan-math.js';

/** The forward kernel's name. */
export const SCAN_KERNEL = 'SlmkitSelectiveScan';
/** The backward kernel's name (inputs: the forward's nine and `dy`; outputs: nine gradients in input order). */
export const SCAN_GRAD_KERNEL = 'SlmkitSelectiveScanGrad';

// What the kernels need of a backend: `cpu` has readSync / makeTensorInfo; `wasm` also has the heap helpers
// (`cpu` has a `makeOutput` too, with another signature: tell them apart by `typedArrayFromHeap`).
interface TypedBackend {
  readSync(dataId: object): unknown;
  makeTensorInfo?(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
  makeOutput?(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap?(info: tf.TensorInfo): Float32Array;
}

/** The scan's sizes, read off the kernel's input shapes. */
export function scanDims(inputs: Record<string, tf.TensorInfo>, attrs: ScanKernelAttrs): ScanDims {
  const [batch, channels, length] = inputs.u.shape;
  const stateSize = inputs.A.shape[1];
  const groups = inputs.B.shape.length === 4 ? inputs.B.shape[1] : 1;
  return { batch, channels, length, stateSize, groups, deltaSoftplus: attrs.deltaSoftplus };
}

function view(backend: TypedBackend, info: tf.TensorInfo): Float32Array {
  if (backend.typedArrayFromHeap != null) return backend.typedArrayFromHeap(info);
  return backend.readSync(info.dataId) as Float32Array;
}

function arrays(backend: TypedBackend, inputs: Record<string, tf.TensorInfo>): ScanArrays {
  const out: Record<string, Float32Array> = {};
  for (const name of SCAN_INPUT_NAMES) out[name] = view(backend, inputs[name]);
  return out as unknown as ScanArrays;
}

function forwardKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const b = backend as unknown as TypedBackend;
  const a = attrs as unknown as ScanKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = scanDims(named, a);
  const shape = [dims.batch, dims.channels, dims.length + (a.returnLastState ? dims.stateSize : 0)];
  if (b.typedArrayFromHeap != null) {
    // Allocate first: growing the heap detaches every earlier view of it.
    const out = b.makeOutput!(shape, 'float32');
    scanForward(arrays(b, named), dims, view(b, out), a.returnLastState);
    return out;
  }
  const y = new Float32Array(shape[0] * shape[1] * shape[2]);
  scanForward(arrays(b, named), dims, y, a.returnLastState);
  return b.makeTensorInfo!(shape, 'float32', y);
}

function backwardKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const b = backend as unknown as TypedBackend;
  const a = attrs as unknown as ScanKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = scanDims(named, a);
  const L = dims.length;
  const N = dims.stateSize;
  const rows = dims.batch * dims.channels;
  const shapes = SCAN_INPUT_NAMES.map((name) => named[name].shape.slice());
  const outs = b.typedArrayFromHeap != null ? shapes.map((s) => b.makeOutput!(s, 'float32')) : null;
  const x = arrays(b, named);
  const dyAll = view(b, named.dy);
  let dy = dyAll;
  let dLast: Float32Array | undefined;
  if (a.returnLastState) {
    dy = new Float32Array(rows * L);
    dLast = new Float32Array(rows * N);
    for (let r = 0; r < rows; r++) {
      dy.set(dyAll.subarray(r * (L + N), r * (L + N) + L), r * L);
      dLast.set(dyAll.subarray(r * (L + N) + L, (r + 1) * (L + N)), r * N);
    }
  }
  const grads = scanBackward(x, dims, dy, dLast);
  if (outs != null) {
    SCAN_INPUT_NAMES.forEach((name, i) => view(b, outs[i]).set(grads[name]));
    return outs;
  }
  return SCAN_INPUT_NAMES.map((name, i) => b.makeTensorInfo!(shapes[i], 'float32', grads[name]));
}

/** Which way the last gradient of the fused scan was computed, and on which backend. */
export interface ScanGradientRun {
  backend: string;
  /** `kernel`: the backend's `SlmkitSelectiveScanGrad`; `naive`: `tf.grads` of the naive scan. */
  path: 'kernel' | 'naive';
}

let lastGradient: ScanGradientRun | undefined;

/** The last {@link ScanGradientRun}; undefined before the first gradient (tests read it). */
export function scanGradientLastRun(): ScanGradientRun | undefined {
  return lastGradient;
}

/**
 * The gradient of the scan, shared by every backend: the backward kernel where the current backend has one
 * (`cpu`, `wasm`, `webgpu`); on a backend with a forward kernel but no backward one, the gradient of the naive
 * scan recomputed from the saved inputs (a graph of L steps: slow on long sequences).
 */
const gradient = fusedGradient<(typeof SCAN_INPUT_NAMES)[number], ScanKernelAttrs>({
  inputNames: SCAN_INPUT_NAMES,
  gradKernelName: SCAN_GRAD_KERNEL,
  recompute: (inputs, attrs) => naiveSelectiveScan(inputs as ScanKernelInputs, attrs),
  onRun: ({ backend, path }) => (lastGradient = { backend, path: path === 'kernel' ? 'kernel' : 'naive' }),
});

/** Registers the forward and backward kernels on `cpu` and `wasm`, and the gradient. Idempotent. */
export function registerCpuKernels(): void {
  for (const backendName of ['cpu', 'wasm']) {
    registerFusedKernel({ kernelName: SCAN_KERNEL, backendName, kernelFunc: forwardKernel as tf.KernelFunc, gradient });
    registerFusedKernel({ kernelName: SCAN_GRAD_KERNEL, backendName, kernelFunc: backwardKernel as unknown as tf.KernelFunc });
  }
}
