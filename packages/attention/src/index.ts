/**
 * `@slmkit/attention`: one `Attention` block for multi-head, multi-query and grouped-query attention with sliding
 * windows, soft-capping and an always-visible prefix; explicit KV caches (growing and rolling); cross-layer KV
 * sharing; and the naive, chunked (online-softmax) and fused (`cpu` / `wasm` typed arrays, `webgpu` WGSL) attention
 * kernels.
 *
 * @packageDocumentation
 */
export * from './attention.js';
export * from './cache.js';
export { naiveAttention } from './ops/naive.js';
export { chunkedAttention, type ChunkedAttentionOptions } from './ops/chunked.js';
export { fusedAttention, fusedAttentionLastRun, hasFusedAttention, type FusedAttentionOptions } from './ops/fused.js';
export type { AttentionKernelOptions } from './ops/common.js';
export { isKeyVisible, type MaskRules } from './ops/mask.js';
