/**
 * The forward of a recurrent (state-space) language model's backbone, shared by `MambaLM` and `Mamba2LM`: the
 * checks of ids, cache and mask, then embeddings → layers (each continuing its state) → final norm. Internal.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError, type Embedding, type RMSNorm } from '@slmkit/core';
import type { SsmState } from '@slmkit/ssm';
import { MambaCache } from './mamba-lm.js';

/** What a recurrent backbone is made of. */
export interface RecurrentBackbone<S extends tf.Tensor, I> {
  embeddings: Embedding;
  layers: { readonly items: readonly { forward(h: tf.Tensor3D, options: { state?: SsmState<S>; attentionMask?: tf.Tensor; implementation?: I }): tf.Tensor3D }[] };
  normF: RMSNorm;
}

/**
 * The final hidden states `[B, T, D]` after the backbone's final norm, reading and updating `options.cache`.
 *
 * @param owner - the model class, for error messages (`MambaLM`).
 * @throws `ShapeError` for bad ids or mask; `ConfigError` for a cache of another model or a disposed one.
 */
export function recurrentHidden<S extends tf.Tensor, I>(
  owner: string,
  backbone: RecurrentBackbone<S, I>,
  ids: tf.Tensor2D,
  options: { cache?: MambaCache<S>; attentionMask?: tf.Tensor2D; implementation?: I },
): tf.Tensor3D {
  if (!(ids instanceof tf.Tensor) || ids.rank !== 2 || ids.dtype !== 'int32' || ids.size === 0) {
    const found = ids instanceof tf.Tensor ? `${ids.dtype} [${ids.shape.join(', ')}]` : typeof ids;
    throw new ShapeError(`${owner}: ids must be an int32 tensor [B, T] with B, T >= 1, found ${found}`, { field: 'ids', expected: 'int32 [B, T]', found });
  }
  const [B, T] = ids.shape;
  const { cache, implementation } = options;
  const layers = backbone.layers.items.length;
  if (cache != null && (!(cache instanceof MambaCache) || cache.layers.length !== layers || cache.isDisposed)) {
    throw new ConfigError(`${owner}: cache must be a live MambaCache of ${layers} layers (from model.createCache())`, {
      field: 'cache',
      expected: `a MambaCache of ${layers} layers`,
      found: cache instanceof MambaCache ? `${cache.layers.length} layers${cache.isDisposed ? ', disposed' : ''}` : typeof cache,
    });
  }
  const mask = options.attentionMask;
  if (mask != null && (mask.rank !== 2 || mask.shape[0] !== B || mask.shape[1] < T)) {
    throw new ShapeError(`${owner}: attentionMask must be [${B}, S >= ${T}], found [${mask.shape.join(', ')}]`, { field: 'attentionMask', expected: [B, T], found: mask.shape.slice() });
  }
  return tf.tidy(() => {
    const attentionMask = mask == null ? undefined : tf.slice(mask, [0, mask.shape[1] - T], [B, T]); // [B, T], the new tokens' columns
    let h = backbone.embeddings.forward(ids) as tf.Tensor3D; // [B, T, D]
    backbone.layers.items.forEach((layer, i) => {
      h = layer.forward(h, { state: cache?.layers[i], attentionMask, implementation }); // [B, T, D]
    });
    return backbone.normF.forward(h) as tf.Tensor3D; // [B, T, D]
  });
}
