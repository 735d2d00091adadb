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
import { fusedGradient, registerFusedKernel, runTypedKernel } from '@slmkit/core';
import { SCAN_INPUT_NAMES, naiveSelectiveScan, type ScanKernelAttrs, type ScanKernelInputs } from './naive.js';
import { scanBackward, scanForward, type ScanArrays, type ScanDims } from './scan-math.js';

/** The forward kernel's name. */
export const SCAN_KERNEL = 'SlmkitSelectiveScan';
/** The backward kernel's name (inputs: the forward's nine and `dy`; outputs: nine gradients in input order). */
export const SCAN_GRAD_KERNEL = 'SlmkitSelectiveScanGrad';

/** The scan's sizes, read off the kernel's input shapes. */
export function scanDims(inputs: Record<string, tf.TensorInfo>, attrs: ScanKernelAttrs): ScanDims {
  const [batch, channels, length] = inputs.u.shape;
  const stateSize = inputs.A.shape[1];
  const groups = inputs.B.shape.length === 4 ? inputs.B.shape[1] : 1;
  return { batch, channels, length, stateSize, groups, deltaSoftplus: attrs.deltaSoftplus };
}

/** The inputs by name, from the views `runTypedKernel` hands over in `SCAN_INPUT_NAMES` order. */
function arrays(views: Float32Array[]): ScanArrays {
  return Object.fromEntries(SCAN_INPUT_NAMES.map((name, i) => [name, views[i]])) as unknown as ScanArrays;
}

function forwardKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const a = attrs as unknown as ScanKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = scanDims(named, a);
  const shape = [dims.batch, dims.channels, dims.length + (a.returnLastState ? dims.stateSize : 0)];
  const ins = SCAN_INPUT_NAMES.map((name) => named[name]);
  const [y] = runTypedKernel(backend, ins, [shape], (views, [out]) => scanForward(arrays(views), dims, out, a.returnLastState));
  return y;
}

function backwardKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const a = attrs as unknown as ScanKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = scanDims(named, a);
  const L = dims.length;
  const N = dims.stateSize;
  const rows = dims.batch * dims.channels;
  const ins = [...SCAN_INPUT_NAMES.map((name) => named[name]), named.dy];
  const shapes = SCAN_INPUT_NAMES.map((name) => named[name].shape.slice());
  return runTypedKernel(backend, ins, shapes, (views, outs) => {
    const dyAll = views[SCAN_INPUT_NAMES.length];
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
    const grads = scanBackward(arrays(views), dims, dy, dLast);
    SCAN_INPUT_NAMES.forEach((name, i) => outs[i].set(grads[name]));
  });
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
