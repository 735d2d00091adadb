/**
 * `@slmkit/models`: `CausalLM` and the transformer families it covers (Llama, Mistral, Qwen2, Gemma, Phi, Phi-3,
 * StableLM) and the Mamba-1 families (`mamba`, `falcon_mamba`), Hugging Face checkpoint loading, explicit caches and
 * generation.
 *
 * @packageDocumentation
 */
export * from './config.js';
export * from './families/index.js';
export * from './layers/module-list.js';
export * from './layers/fused-gated-mlp.js';
export * from './layers/per-head-layer-norm.js';
export * from './decoder-layer.js';
export * from './model-cache.js';
export * from './causal-lm.js';
export * from './generate.js';
export * from './pretrained.js';
export * from './generation/sampling.js';
export { acceptDraft, type SpeculativeCache, type SpeculativeLM, type SpeculativeStats } from './generation/speculative.js';
export * from './presets.js';
export * from './count.js';
export * from './tokenizer.js';
export * from './families/mamba.js';
export * from './mamba-lm.js';
export * from './mamba-presets.js';
export * from './hybrid-lm.js';
export * from './families/hybrid.js';
export * from './families/mamba2.js';
export * from './mamba2-lm.js';
