// Builds an Attention block with seeded weights together with the matching float64 reference parameters.
import * as tf from '@tensorflow/tfjs-core';
import { RotaryEmbedding } from '@slmkit/core';
import { Attention, type AttentionOptions } from '../src/index.js';
import { linear, randn, refLinearOf, rmsNorm, values, type RefParams } from './helpers.js';

export interface Case {
  B: number;
  T: number;
  D: number;
  H: number;
  KV: number;
  Dh: number;
  Dv?: number;
  bias?: boolean;
  scale?: number;
  softcap?: number | null;
  window?: number | null;
  prefix?: number;
  causal?: boolean;
  qkNorm?: 'head' | 'projection' | null;
  rotary?: { base: number; rotaryDim?: number } | null;
  seed?: number;
  queryBlockSize?: number;
  keyBlockSize?: number;
}

export interface Built {
  attn: Attention;
  ref: Omit<RefParams, 'x' | 'B' | 'T'>;
  options: AttentionOptions;
  x: (B: number, T: number, seed: number) => { tensor: tf.Tensor3D; values: number[] };
}

/** An Attention block for `c` (weights scaled so scores are O(1) and softmax is not one-hot) and its reference. */
export function build(c: Case): Built {
  const seed = c.seed ?? 1;
  const Dv = c.Dv ?? c.Dh;
  const bias = c.bias ?? false;
  const qProj = linear(c.D, c.H * c.Dh, seed, bias, 2);
  const kProj = linear(c.D, c.KV * c.Dh, seed + 10, bias, 2);
  const vProj = linear(c.D, c.KV * Dv, seed + 20, bias);
  const oProj = linear(c.H * Dv, c.D, seed + 30, bias);
  const scope = c.qkNorm ?? null;
  const qNorm = scope == null ? undefined : rmsNorm(scope === 'head' ? c.Dh : c.H * c.Dh, seed + 40);
  const kNorm = scope == null ? undefined : rmsNorm(scope === 'head' ? c.Dh : c.KV * c.Dh, seed + 50);
  const rotaryDim = c.rotary?.rotaryDim ?? c.Dh;
  const rotary =
    c.rotary == null ? undefined : new RotaryEmbedding({ headDim: c.Dh, rotaryDim, base: c.rotary.base, maxPositionEmbeddings: 4096 });
  const options: AttentionOptions = {
    hiddenSize: c.D,
    numHeads: c.H,
    numKVHeads: c.KV,
    headDim: c.Dh,
    valueHeadDim: Dv,
    scale: c.scale,
    softcap: c.softcap,
    slidingWindow: c.window,
    prefixLength: c.prefix,
    causal: c.causal,
    qkNormScope: scope ?? undefined,
    queryBlockSize: c.queryBlockSize,
    keyBlockSize: c.keyBlockSize,
  };
  const attn = new Attention(options, { qProj, kProj, vProj, oProj, qNorm, kNorm, rotary });
  const lin = refLinearOf;
  const ref: Built['ref'] = {
    D: c.D,
    H: c.H,
    KV: c.KV,
    Dh: c.Dh,
    Dv,
    q: lin(qProj),
    k: lin(kProj),
    v: lin(vProj),
    o: lin(oProj),
    scale: c.scale ?? 1 / Math.sqrt(c.Dh),
    softcap: c.softcap ?? null,
    causal: c.causal ?? true,
    window: c.window ?? null,
    prefix: c.prefix ?? 0,
    qNorm: qNorm ? values(qNorm.weight) : null,
    kNorm: kNorm ? values(kNorm.weight) : null,
    normScope: scope ?? 'head',
    rotary: c.rotary == null ? null : { base: c.rotary.base, rotaryDim },
  };
  return {
    attn,
    ref,
    options,
    x: (B, T, s) => {
      const v = randn(B * T * c.D, s);
      return { tensor: tf.tensor3d(v, [B, T, c.D]), values: v };
    },
  };
}
