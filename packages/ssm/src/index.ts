/**
 * `@slmkit/ssm`: Mamba-2's state-space-duality scan (`ssdScan`: naive, chunked, fused kernels, gradients) and the
 * {@link Mamba2Mixer}; the Mamba-1 selective scan (a naive tfjs-ops oracle, fused `cpu`, `wasm` and `webgpu` kernels,
 * gradients for every input), its single-step decoding form, the causal depthwise convolution, the explicit
 * {@link SsmState} and the {@link MambaMixer} block with Hugging Face's parameter names.
 *
 * @packageDocumentation
 */
export * from './ops/selective-scan.js';
export * from './ops/ssd-scan.js';
export * from './state.js';
export * from './layers/causal-conv1d.js';
export * from './layers/mamba-mixer.js';
export * from './layers/mamba2-mixer.js';
