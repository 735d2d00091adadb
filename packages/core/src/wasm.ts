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
 * @example
 * ```ts
 * import { instantiateWasm } from '@slmkit/core';
 * // The smallest valid module: the magic number and version, no sections.
 * const exports = instantiateWasm<Record<string, never>>('AGFzbQEAAAA=');
 * console.log(exports != null); // true
 * ```
 */
export function instantiateWasm<T>(base64: string): T | null {
  try {
    const bin = atob(base64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as unknown as T;
  } catch {
    return null;
  }
}
