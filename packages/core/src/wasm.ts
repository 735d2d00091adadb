/**
 * Loading the small hand-written WebAssembly modules the fused kernels run on (`scripts/build-wasm.mjs` assembles
 * them into base64 strings in the packages).
 *
 * @module
 */

/**
 * Compiles and instantiates a WebAssembly module from its bytes in base64, synchronously (the modules are a few
 * KB, under the 4 KB a browser's main thread compiles synchronously), and returns its exports; `null` where the
 * engine cannot, for instance without the SIMD instructions the module uses. A kernel then falls back to its
 * typed-array loop.
 *
 * @param base64 - the module's bytes.
 * @param imports - what the module imports, if anything: a memory to work in, for instance (the wasm backend's heap,
 *   so that a kernel reads its inputs in place).
 *
 * @example
 * ```ts
 * import { instantiateWasm } from '@slmkit/core';
 * // The smallest valid module: the magic number and version, no sections.
 * const exports = instantiateWasm<Record<string, never>>('AGFzbQEAAAA=');
 * console.log(exports != null); // true
 * ```
 */
export function instantiateWasm<T>(base64: string, imports?: WebAssembly.Imports): T | null {
  try {
    const bin = atob(base64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new WebAssembly.Instance(new WebAssembly.Module(bytes), imports).exports as unknown as T;
  } catch {
    return null;
  }
}

/**
 * The WebAssembly memory of a `wasm` backend (its heap, where every tensor's data lives), or `null` for another
 * backend. A module instantiated with this memory as its import (see {@link instantiateWasm}) reads and writes
 * tensors in place, at the byte offsets of the backend's heap views. It is a shared memory (a `SharedArrayBuffer`)
 * under the backend's threaded build, and can grow whenever the backend allocates, detaching earlier views.
 *
 * @param backend - a tfjs backend, as a kernel receives it.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { initBackend, wasmHeapMemory } from '@slmkit/core';
 * await initBackend('wasm');
 * const heap = wasmHeapMemory(tf.backend());
 * console.log(heap instanceof WebAssembly.Memory); // true
 * ```
 */
export function wasmHeapMemory(backend: unknown): WebAssembly.Memory | null {
  const module = (backend as { wasm?: { asm?: { memory?: unknown }; wasmMemory?: unknown } } | null)?.wasm;
  // Emscripten exposes the heap as `asm.memory`, or in the threaded build (which creates it) as `wasmMemory`.
  const memory = module?.asm?.memory ?? module?.wasmMemory;
  return memory instanceof WebAssembly.Memory ? memory : null;
}
