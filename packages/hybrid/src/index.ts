/**
 * `@slmkit/hybrid`: hybrid stacks of attention, Mamba and mixture-of-experts layers. A JSON-serialisable
 * layer-pattern spec ({@link HybridSpec}) says which mixer and feed-forward each layer has and which layers share a
 * block or their keys and values; {@link HybridModel} builds the body from it, with the Hugging Face names of Jamba,
 * Zamba and Hymba, and {@link HybridCache} holds KV caches and SSM states side by side. The language models
 * (`HybridLM`, the `jamba`, `zamba` and `hymba` families, `fromPretrained`) are in `@slmkit/models`.
 *
 * @packageDocumentation
 */
export * from './spec.js';
export * from './cache.js';
export * from './layer.js';
export * from './model.js';
export * from './zamba-mixer.js';
export * from './zamba.js';
export * from './hymba.js';
export * from './count.js';
