/**
 * `@slmkit/core`: backends, the `Module` base class, the layers every block needs, rotary embeddings,
 * safetensors I/O and the kernel plumbing.
 *
 * @packageDocumentation
 */
export * from './errors.js';
export * from './backend.js';
export * from './module.js';
export * from './kernels.js';
