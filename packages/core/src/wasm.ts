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
    return new WebAssembly.Instance(new WebAssembly.Module(wasmBytes(base64)), imports).exports as unknown as T;
  } catch {
    return null;
  }
}

/** A module's bytes from their base64. Internal. */
export function wasmBytes(base64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(base64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

/** Whether `memory` is shared (a `SharedArrayBuffer`: the wasm backend's threaded build). Internal. */
export function isSharedMemory(memory: WebAssembly.Memory): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
}

/** Each memory's instances, by the module's unshared bytes. */
const instancesIn = new WeakMap<WebAssembly.Memory, Map<string, unknown>>();

/**
 * The exports of a module that imports its memory (`env.memory`), instantiated once per memory with
 * {@link instantiateWasm}: the `shared` variant's bytes when `memory` is shared (the wasm backend's threaded build),
 * else the `unshared` ones. `null` (also remembered) where the engine cannot instantiate it.
 *
 * @param memory - the memory the module works in: a `wasm` backend's heap ({@link wasmHeapMemory}), or one of its own.
 * @param variants - the module's bytes in base64, importing an unshared and a shared memory.
 *
 * @example
 * ```ts
 * import { instantiateWasmIn } from '@slmkit/core';
 * const memory = new WebAssembly.Memory({ initial: 1 });
 * // The smallest valid module (no imports at all); a real kernel imports env.memory.
 * const exports = instantiateWasmIn<Record<string, never>>(memory, { unshared: 'AGFzbQEAAAA=', shared: 'AGFzbQEAAAA=' });
 * console.log(exports === instantiateWasmIn(memory, { unshared: 'AGFzbQEAAAA=', shared: 'AGFzbQEAAAA=' })); // true
 * ```
 */
export function instantiateWasmIn<T>(memory: WebAssembly.Memory, variants: { unshared: string; shared: string }): T | null {
  let instances = instancesIn.get(memory);
  if (instances == null) instancesIn.set(memory, (instances = new Map()));
  if (!instances.has(variants.unshared)) {
    const base64 = isSharedMemory(memory) ? variants.shared : variants.unshared;
    instances.set(variants.unshared, instantiateWasm<T>(base64, { env: { memory } }));
  }
  return instances.get(variants.unshared) as T | null;
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
