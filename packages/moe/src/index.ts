/**
 * `@slmkit/moe`: routers, sparse mixture-of-experts layers and their training losses. `TopKRouter` scores
 * experts and picks k per token (softmax or sigmoid, with or without renormalisation, optional jitter);
 * `SparseMoE` runs each expert on its own tokens only (compute proportional to k), with an optional gated shared
 * expert and Switch-style capacity; `loadBalancingLoss`, `routerZLoss` and `tokensPerExpert` are what training
 * and monitoring read.
 *
 * @packageDocumentation
 */
export * from './router.js';
export * from './experts.js';
export * from './losses.js';
export * from './sparse-moe.js';
