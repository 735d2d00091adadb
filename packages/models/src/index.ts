/**
 * `@slmkit/models`: the language models and their Hugging Face families: `CausalLM` for the transformers (Llama,
 * Mistral, Qwen2, Gemma, Phi, Phi-3, StableLM, and the mixtures of experts Mixtral, Qwen2-MoE and OLMoE),
 * `MambaLM` (`mamba`, `falcon_mamba`), `Mamba2LM` (`mamba2`) and `HybridLM` (Jamba, Zamba, Hymba and stacks written
 * as a layer-pattern spec); Hugging Face checkpoint loading, explicit caches, generation (sampling, streaming,
 * speculative decoding with a draft model) and presets with exact parameter counts.
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
export * from './language-model.js';
