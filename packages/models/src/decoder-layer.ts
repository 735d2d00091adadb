/**
 * `DecoderLayer`: one pre-norm transformer layer of a {@link CausalLM}, sequential or parallel residual, wired
 * from a {@link CausalLMConfig} with Hugging Face parameter names.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { Attention, type AttentionCall, type QKNorm } from '@slmkit/attention';
import { GatedMLP, LayerNorm, Linear, MLP, Module, RMSNorm, type RotaryEmbedding } from '@slmkit/core';
import { SparseMoE, TopKRouter } from '@slmkit/moe';
import { isSparseLayer, layerWindow, type CausalLMConfig, type NormConfig } from './config.js';
import { FAMILIES } from './families/index.js';
import type { MoENames } from './families/names.js';
import { MLP_MOE_NAMES } from './families/qwen2-moe.js';
import { FusedGatedMLP } from './layers/fused-gated-mlp.js';
import { PerHeadLayerNorm } from './layers/per-head-layer-norm.js';

/**
 * A norm module as a decoder layer holds it: anything mapping `[..., d]` to `[..., d]`.
 *
 * @example
 * ```ts
 * import { RMSNorm } from '@slmkit/core';
 * import type { Norm } from '@slmkit/models';
 * const norm: Norm = new RMSNorm(64, { eps: 1e-5 });
 * ```
 */
export type Norm = Module & { forward(x: tf.Tensor): tf.Tensor };

/**
 * The feed-forward block of a decoder layer: gated (split or Phi-3's fused `gate_up_proj`), plain (Phi), or a
 * sparse mixture of experts (Mixtral, Qwen2-MoE, OLMoE).
 *
 * @example
 * ```ts
 * import { GatedMLP } from '@slmkit/core';
 * import type { FeedForward } from '@slmkit/models';
 * const mlp: FeedForward = GatedMLP.create(64, 172, { activation: 'silu' });
 * ```
 */
export type FeedForward = GatedMLP | FusedGatedMLP | MLP | SparseMoE;

/**
 * Builds the norm a {@link NormConfig} describes over `dim` features: `RMSNorm` (Gemma's `1 + w` with
 * `unitOffset`) or `LayerNorm` (with or without bias).
 *
 * @example
 * ```ts
 * import { buildNorm } from '@slmkit/models';
 * const norm = buildNorm({ type: 'layer', eps: 1e-5, bias: true }, 64);
 * console.log(norm.namedParameters().map(([n]) => n)); // ["weight", "bias"]
 * norm.dispose();
 * ```
 */
export function buildNorm(norm: NormConfig, dim: number): RMSNorm | LayerNorm {
  return norm.type === 'rms'
    ? new RMSNorm(dim, { eps: norm.eps, unitOffset: norm.unitOffset ?? false })
    : new LayerNorm(dim, { eps: norm.eps, bias: norm.bias ?? true });
}

/** The q (or k) norm of `config.qkNorm` for `heads` heads. */
function buildQKNorm(config: CausalLMConfig, heads: number): QKNorm | undefined {
  const q = config.qkNorm;
  if (q == null) return undefined;
  if (q.scope === 'projection') return buildNorm(q.norm, heads * config.headDim);
  if (q.sharedAcrossHeads === true) return buildNorm(q.norm, config.headDim);
  if (q.norm.type === 'layer') return new PerHeadLayerNorm(heads, config.headDim, { eps: q.norm.eps, bias: q.norm.bias ?? false });
  // Per-head RMSNorm weights have no checkpoint in the families loaded here; one shared RMSNorm is Qwen 3's form.
  return buildNorm(q.norm, config.headDim);
}

/** The sparse feed-forward of `config.moe`, its parts named as the family's checkpoints name them. */
function buildSparseMoE(config: CausalLMConfig, names: MoENames): SparseMoE {
  const moe = config.moe!;
  const D = config.hiddenSize;
  const { activation } = config;
  const expert = (width: number, projections: MoENames['expert']) =>
    new GatedMLP({
      gateProj: new Linear(D, width, { bias: false }),
      upProj: new Linear(D, width, { bias: false }),
      downProj: new Linear(width, D, { bias: false }),
      activation,
      names: projections,
    });
  const router = new TopKRouter(D, moe.numExperts, { topK: moe.topK, normalize: moe.normalizeTopK, jitterNoise: moe.routerJitterNoise });
  const experts = Array.from({ length: moe.numExperts }, () => expert(moe.expertIntermediateSize, names.expert));
  const shared =
    moe.sharedExpertIntermediateSize == null
      ? {}
      : {
          sharedExpert: GatedMLP.create(D, moe.sharedExpertIntermediateSize, { activation }),
          sharedExpertGate: new Linear(D, 1, { bias: false }),
        };
  return new SparseMoE(router, experts, {
    ...shared,
    names: { router: names.router, experts: names.experts, sharedExpert: names.sharedExpert, sharedExpertGate: names.sharedExpertGate },
  });
}

/**
 * One decoder layer, pre-norm:
 *
 * ```text
 * sequential (Llama, Mistral, Qwen2, Gemma, Phi-3, StableLM):  h = x + attn(norm1(x));  y = h + mlp(norm2(h))
 * parallel   (Phi-1/1.5/2, StableLM's use_parallel_residual): y = x + attn(norm1(x)) + mlp(norm1(x))
 * ```
 *
 * Parts are registered under their Hugging Face names: `input_layernorm`, `self_attn` (with `q_proj`, …, or
 * Phi-3's `qkv_proj`, Phi's `dense`), `post_attention_layernorm` (absent with a parallel residual), and `mlp`
 * (`gate_proj`/`up_proj`/`down_proj`, Phi-3's `gate_up_proj`, or Phi's `fc1`/`fc2`). On the sparse layers of a
 * mixture-of-experts config the feed-forward is a `SparseMoE` registered under the family's name
 * (`block_sparse_moe` for Mixtral, `mlp` for Qwen2-MoE and OLMoE).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { RotaryEmbedding } from '@slmkit/core';
 * import { DecoderLayer, configFromHF } from '@slmkit/models';
 * const config = configFromHF({
 *   model_type: 'llama', vocab_size: 128, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
 *   num_attention_heads: 4, num_key_value_heads: 2,
 * });
 * const layer = new DecoderLayer(config, 0, new RotaryEmbedding(config.rotary));
 * const x = tf.randomNormal([1, 5, 32]) as tf.Tensor3D;
 * const y = layer.forward(x); // [1, 5, 32]
 * console.log(y.shape, layer.namedParameters().length); // [1, 5, 32] 9
 * tf.dispose([x, y]);
 * layer.dispose();
 * ```
 */
export class DecoderLayer extends Module {
  /** The norm before attention (and, with a parallel residual, before the MLP too). */
  readonly inputLayernorm: Norm;
  /** The attention block. */
  readonly selfAttn: Attention;
  /** The norm before the MLP; undefined with a parallel residual. */
  readonly postAttentionLayernorm: Norm | undefined;
  /** The feed-forward block. */
  readonly mlp: FeedForward;
  /** Whether attention and MLP read the same normalised input and add in parallel. */
  readonly parallelResidual: boolean;
  /** This layer's sliding window, or null. */
  readonly slidingWindow: number | null;

  /**
   * @param config - the model config (validated by the caller, e.g. {@link CausalLM}).
   * @param layerIndex - which layer this is (selects the sliding window from `layerTypes`).
   * @param rotary - the model's rotary embedding, shared by every layer.
   */
  constructor(config: CausalLMConfig, layerIndex: number, rotary: RotaryEmbedding) {
    super();
    const { hiddenSize: D, numHeads: H, numKVHeads: KV, headDim: Dh, attentionBias: bias } = config;
    const names = FAMILIES[config.family].names;
    this.parallelResidual = config.parallelResidual;
    this.slidingWindow = layerWindow(config, layerIndex);

    this.inputLayernorm = this.registerModule('input_layernorm', buildNorm(config.norm, D));
    const projections = config.fusedQKV
      ? { qkvProj: new Linear(D, (H + 2 * KV) * Dh, { bias: bias.q }) }
      : {
          qProj: new Linear(D, H * Dh, { bias: bias.q }),
          kProj: new Linear(D, KV * Dh, { bias: bias.k }),
          vProj: new Linear(D, KV * Dh, { bias: bias.v }),
        };
    this.selfAttn = this.registerModule(
      'self_attn',
      new Attention(
        {
          hiddenSize: D,
          numHeads: H,
          numKVHeads: KV,
          headDim: Dh,
          slidingWindow: this.slidingWindow,
          qkNormScope: config.qkNorm?.scope ?? 'head',
          names: { o: names.oProj, qNorm: names.qNorm, kNorm: names.kNorm },
        },
        {
          ...projections,
          oProj: new Linear(H * Dh, D, { bias: bias.o }),
          qNorm: buildQKNorm(config, H),
          kNorm: buildQKNorm(config, KV),
          rotary,
        },
      ),
    );
    this.postAttentionLayernorm = config.parallelResidual
      ? undefined
      : this.registerModule('post_attention_layernorm', buildNorm(config.norm, D));
    const I = config.intermediateSize;
    let mlp: FeedForward;
    if (isSparseLayer(config, layerIndex)) {
      const moeNames = names.moe ?? MLP_MOE_NAMES.moe!;
      this.mlp = this.registerModule(moeNames.block, buildSparseMoE(config, moeNames));
      return;
    }
    if (config.mlp === 'plain') {
      mlp = MLP.create(D, I, { activation: config.activation, bias: config.mlpBias });
    } else if (config.fusedGateUp) {
      mlp = FusedGatedMLP.create(D, I, { activation: config.activation, bias: config.mlpBias });
    } else {
      mlp = GatedMLP.create(D, I, { activation: config.activation, bias: config.mlpBias });
    }
    this.mlp = this.registerModule('mlp', mlp);
  }

  /**
   * @param x - float32 `[B, T, D]`.
   * @param call - what the attention block needs for this call (cache, rotary tables, mask); see `AttentionCall`.
   * @param routerLogits - on a sparse layer, a list the router's logits `[B·T, E]` are appended to (the caller
   *   disposes them); ignored on dense layers.
   * @returns `[B, T, D]`; the caller owns it.
   */
  forward(x: tf.Tensor3D, call: AttentionCall = {}, routerLogits?: tf.Tensor2D[]): tf.Tensor3D {
    return tf.tidy(() => {
      const ff = (t: tf.Tensor) => (this.mlp instanceof SparseMoE ? this.mlp.forward(t, { routerLogits }) : this.mlp.forward(t)); // [B, T, D]
      const h = this.inputLayernorm.forward(x) as tf.Tensor3D; // [B, T, D]
      const attn = this.selfAttn.forward(h, call); // [B, T, D]
      if (this.parallelResidual) return tf.add(tf.add(x, attn), ff(h)) as tf.Tensor3D; // [B, T, D]
      const mid = tf.add(x, attn); // [B, T, D]
      return tf.add(mid, ff(this.postAttentionLayernorm!.forward(mid))) as tf.Tensor3D; // [B, T, D]
    });
  }
}
