/**
 * `@slmkit/core`: backends, the `Module` base class, the layers every block needs, rotary embeddings,
 * safetensors I/O and the kernel plumbing.
 *
 * @packageDocumentation
 */
// tfjs-core ships the gradients of its ops separately; training anything needs them.
import '#register-gradients';

export * from './errors.js';
export * from './backend.js';
export * from './module.js';
export * from './kernels.js';
export * from './weights/safetensors.js';
export * from './weights/checkpoint.js';
export * from './layers/rotary.js';
export * from './layers/activations.js';
export * from './layers/linear.js';
export * from './layers/embedding.js';
export * from './layers/norm.js';
export * from './layers/mlp.js';
export * from './validate.js';
export * from './quant/formats.js';
export * from './quant/quantized-linear.js';
export * from './quant/quantize.js';
export { instantiateWasm, instantiateWasmIn, wasmHeapMemory } from './wasm.js';
export { runWasmTask, wasmTaskThreads, type WasmTask } from './wasm-gemm.js';
