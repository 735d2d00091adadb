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
import { fusedGradient, registerFusedKernel, runTypedKernel } from '@slmkit/core';
import { ssdBackward, ssdForward, type SsdArrays, type SsdMathDims } from './ssd-math.js';
import { SSD_INPUT_NAMES, chunkedSsdScan, ssdDims, type SsdKernelAttrs, type SsdKernelInputs } from './ssd-naive.js';

/** The forward kernel's name. */
export const SSD_KERNEL = 'SlmkitSsdScan';
/** The backward kernel's name (inputs: the forward's nine and `dy`; outputs: nine gradients in input order). */
export const SSD_GRAD_KERNEL = 'SlmkitSsdScanGrad';

/** The scan's sizes and dt processing, from the kernel's inputs and attributes. */
export function ssdMathDims(inputs: Record<string, { shape: number[] }>, attrs: SsdKernelAttrs): SsdMathDims {
  return { ...ssdDims(inputs.x, inputs.B), dtSoftplus: attrs.dtSoftplus, dtMin: attrs.dtMin, dtMax: attrs.dtMax };
}

/** The output shape: `[B, L·H·P]`, plus `H·P·N` per row with the final state. */
export function ssdOutputShape(d: SsdMathDims, packState: boolean): number[] {
  return [d.batch, d.length * d.heads * d.headDim + (packState ? d.heads * d.headDim * d.stateSize : 0)];
}

/** The inputs by name, from the views `runTypedKernel` hands over in `SSD_INPUT_NAMES` order. */
function arrays(views: Float32Array[]): SsdArrays {
  return Object.fromEntries(SSD_INPUT_NAMES.map((name, i) => [name, views[i]])) as unknown as SsdArrays;
}

function forwardKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const a = attrs as unknown as SsdKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = ssdMathDims(named, a);
  const ins = SSD_INPUT_NAMES.map((name) => named[name]);
  const [y] = runTypedKernel(backend, ins, [ssdOutputShape(dims, a.returnFinalState)], (views, [out]) =>
    ssdForward(arrays(views), dims, out, a.returnFinalState),
  );
  return y;
}

function backwardKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const a = attrs as unknown as SsdKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = ssdMathDims(named, a);
  const ins = [...SSD_INPUT_NAMES.map((name) => named[name]), named.dy];
  const shapes = SSD_INPUT_NAMES.map((name) => named[name].shape.slice());
  return runTypedKernel(backend, ins, shapes, (views, outs) => {
    const grads = ssdBackward(arrays(views), dims, views[SSD_INPUT_NAMES.length], a.returnFinalState);
    SSD_INPUT_NAMES.forEach((name, i) => outs[i].set(grads[name]));
  });
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
