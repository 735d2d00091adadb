/**
 * The fused Mamba-2 scan kernels of the `cpu` and `wasm` backends (one pass over typed arrays, one head's state in
 * a small buffer, no per-step tensors), the backward kernel they share, and the gradient every backend uses.
 *
 * On `wasm` the kernels read and write the backend's tensors in place on the wasm heap (`typedArrayFromHeap`);
 * on `cpu` they read the backend's arrays (`readSync`) and hand it new ones (`makeTensorInfo`).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { fusedGradient, registerFusedKernel } from '@slmkit/core';
import { ssdBackward, ssdForward, type SsdArrays, type SsdMathDims } from './ssd-math.js';
import { SSD_INPUT_NAMES, chunkedSsdScan, ssdDims, type SsdKernelAttrs, type SsdKernelInputs } from './ssd-naive.js';

/** The forward kernel's name. */
export const SSD_KERNEL = 'SlmkitSsdScan';
/** The backward kernel's name (inputs: the forward's nine and `dy`; outputs: nine gradients in input order). */
export const SSD_GRAD_KERNEL = 'SlmkitSsdScanGrad';

// What the kernels need of a backend: `cpu` has readSync / makeTensorInfo; `wasm` also has the heap helpers
// (`cpu` has a `makeOutput` too, with another signature: tell them apart by `typedArrayFromHeap`).
interface TypedBackend {
  readSync(dataId: object): unknown;
  makeTensorInfo?(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
  makeOutput?(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap?(info: tf.TensorInfo): Float32Array;
}

/** The scan's sizes and dt processing, from the kernel's inputs and attributes. */
export function ssdMathDims(inputs: Record<string, { shape: number[] }>, attrs: SsdKernelAttrs): SsdMathDims {
  return { ...ssdDims(inputs.x, inputs.B), dtSoftplus: attrs.dtSoftplus, dtMin: attrs.dtMin, dtMax: attrs.dtMax };
}

/** The output shape: `[B, L·H·P]`, plus `H·P·N` per row with the final state. */
export function ssdOutputShape(d: SsdMathDims, packState: boolean): number[] {
  return [d.batch, d.length * d.heads * d.headDim + (packState ? d.heads * d.headDim * d.stateSize : 0)];
}

function view(backend: TypedBackend, info: tf.TensorInfo): Float32Array {
  if (backend.typedArrayFromHeap != null) return backend.typedArrayFromHeap(info);
  return backend.readSync(info.dataId) as Float32Array;
}

function arrays(backend: TypedBackend, inputs: Record<string, tf.TensorInfo>): SsdArrays {
  const out: Record<string, Float32Array> = {};
  for (const name of SSD_INPUT_NAMES) out[name] = view(backend, inputs[name]);
  return out as unknown as SsdArrays;
}

function forwardKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const b = backend as unknown as TypedBackend;
  const a = attrs as unknown as SsdKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = ssdMathDims(named, a);
  const shape = ssdOutputShape(dims, a.returnFinalState);
  if (b.typedArrayFromHeap != null) {
    // Allocate first: growing the heap detaches every earlier view of it.
    const out = b.makeOutput!(shape, 'float32');
    ssdForward(arrays(b, named), dims, view(b, out), a.returnFinalState);
    return out;
  }
  const y = new Float32Array(shape[0] * shape[1]);
  ssdForward(arrays(b, named), dims, y, a.returnFinalState);
  return b.makeTensorInfo!(shape, 'float32', y);
}

function backwardKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const b = backend as unknown as TypedBackend;
  const a = attrs as unknown as SsdKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = ssdMathDims(named, a);
  const shapes = SSD_INPUT_NAMES.map((name) => named[name].shape.slice());
  const outs = b.typedArrayFromHeap != null ? shapes.map((s) => b.makeOutput!(s, 'float32')) : null;
  const grads = ssdBackward(arrays(b, named), dims, view(b, named.dy), a.returnFinalState);
  if (outs != null) {
    SSD_INPUT_NAMES.forEach((name, i) => view(b, outs[i]).set(grads[name]));
    return outs;
  }
  return SSD_INPUT_NAMES.map((name, i) => b.makeTensorInfo!(shapes[i], 'float32', grads[name]));
}

/**
 * The gradient of the scan, shared by every backend: the backward kernel where the current backend has one; on
 * the others (`webgpu`), the gradient of the chunked tfjs-ops scan recomputed from the saved inputs.
 */
const gradient = fusedGradient<(typeof SSD_INPUT_NAMES)[number], SsdKernelAttrs>({
  inputNames: SSD_INPUT_NAMES,
  gradKernelName: SSD_GRAD_KERNEL,
  recompute: (inputs, attrs) => chunkedSsdScan(inputs as SsdKernelInputs, attrs),
});

/** Registers the forward and backward kernels on `cpu` and `wasm`, and the gradient. Idempotent. */
export function registerSsdCpuKernels(): void {
  for (const backendName of ['cpu', 'wasm']) {
    registerFusedKernel({ kernelName: SSD_KERNEL, backendName, kernelFunc: forwardKernel as tf.KernelFunc, gradient });
    registerFusedKernel({ kernelName: SSD_GRAD_KERNEL, backendName, kernelFunc: backwardKernel as unknown as tf.KernelFunc });
  }
}
