/**
 * `@slmkit/attention`: one `Attention` block for multi-head, multi-query and grouped-query attention with sliding
 * windows, soft-capping and an always-visible prefix; explicit KV caches (growing and rolling); cross-layer KV
 * sharing; and the naive and chunked (online-softmax) attention kernels.
 *
 * @packageDocumentation
 */
export * from './attention.js';
export * from './cache.js';
export { naiveAttention } from './ops/naive.js';
export { chunkedAttention, type ChunkedAttentionOptions } from './ops/chunked.js';
export type { AttentionKernelOptions } from './ops/common.js';
export { isKeyVisible, type MaskRules } from './ops/mask.js';
