/**
 * The gated product of a gated MLP, `act(x · W_gate) ⊙ (x · W_up)`, on tfjs's `wasm` backend in one call of
 * slmkit's GEMM (`wasm-gemm.ts`): x is packed once for both products, and each thread's run of columns computes its
 * columns of the gate, of the up projection and of the epilogue in turn, while they are in cache. The activation and
 * the product thus run on every thread, in the GEMM's pass, instead of as three more tfjs ops on one thread (a
 * sigmoid and two multiplies over `[T, intermediate]`: about 1 ms of a 12 ms SwiGLU MLP on two threads at T 128 and
 * SmolLM-135M's widths).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { gemm, gemmScratchFloats, packedWeight } from './wasm-gemm.js';
import { gemmMemory, type WasmBackendLike } from './wasm-matmul.js';

/** The kernel name of the gated product (wasm only). */
export const GATED_PRODUCT_KERNEL = 'SlmkitGatedProduct';

/** The activations the gated product computes: `act(x) = x σ(α x + β x³)` for both. */
export type GatedActivation = 'silu' | 'gelu_tanh';

/** α and β of each activation: SiLU is x σ(x); GELU's tanh form is x σ(2√(2/π)(x + 0.044715 x³)), as ½(1 + tanh z) = σ(2z). */
const ALPHA_BETA: Record<GatedActivation, [number, number]> = {
  silu: [1, 0],
  gelu_tanh: [2 * Math.sqrt(2 / Math.PI), 2 * Math.sqrt(2 / Math.PI) * 0.044715],
};

/** Gated products the kernel has run so far (tests check the fused path ran). Internal. */
export const gatedProducts = { count: 0 };

/** Whether the gated-product kernel runs on the current backend now (wasm, with slmkit's GEMM taking products). */
export function gatedProductRuns(): boolean {
  return tf.getBackend() === 'wasm' && gemmMemory(tf.backend()) != null;
}

/**
 * Whether a gradient tape is recording (inside `tf.grads`, `tf.variableGrads`, ...): there a gated MLP keeps its
 * unfused ops, whose gradients reuse the saved products instead of recomputing them. Reads the engine's
 * `state.gradientDepth`, a tfjs internal.
 */
export function gradientsRecording(): boolean {
  return (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;
}

/**
 * The kernel: inputs x `[m, k]`, gate and up `[k, n]` (float32; weights, whose packed copies are kept as for a
 * plain product), attr `activation`; output `[m, n]`. Only where {@link gatedProductRuns} says so.
 */
export function gatedProductKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x, gate, up } = inputs as { x: tf.TensorInfo; gate: tf.TensorInfo; up: tf.TensorInfo };
  const memory = gemmMemory(backend);
  if (memory == null) throw new Error(`${GATED_PRODUCT_KERNEL}: slmkit's GEMM does not run on this backend now`);
  const [alpha, beta] = ALPHA_BETA[(attrs as { activation: GatedActivation }).activation];
  const [m, k] = x.shape; // [m, k]
  const n = up.shape[1]; // gate, up: [k, n]
  const heap = backend as unknown as WasmBackendLike;
  if (m === 0) return heap.makeOutput([0, n], 'float32'); // no rows: nothing to compute
  const weight = (w: tf.TensorInfo): number => packedWeight(backend, memory, w as tf.TensorInfo & { dtype: 'float32' }, k, n);
  const [bpGate, bpUp] = [weight(gate), weight(up)];
  const aFloats = gemmScratchFloats(m, k);
  const out = heap.makeOutput([m, n], 'float32'); // [m, n]
  const scratch = heap.makeOutput([aFloats + m * n], 'float32'); // packed x, then x · W_gate [m, n]
  // Byte offsets on the heap, read after the allocations (which may grow it).
  const [px, pc, ps] = [x, out, scratch].map((t) => heap.typedArrayFromHeap(t).byteOffset);
  try {
    gemm(memory, px, bpUp, pc, m, k, n, ps, { bp: bpGate, g: ps + 4 * aFloats, alpha, beta });
  } catch (e) {
    heap.disposeData(out.dataId);
    throw e;
  } finally {
    heap.disposeData(scratch.dataId);
  }
  gatedProducts.count++;
  return out;
}
