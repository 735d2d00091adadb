/**
 * `SsmState`: the decoding state of one Mamba mixer, owned by the caller.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '@slmkit/core';

/**
 * The state one {@link MambaMixer} carries from one call to the next: the last `convKernel − 1` inputs of its
 * causal convolution and the recurrent state `h` of its selective scan. It starts empty (zeros at the first
 * call, which is exactly the convolution's causal padding and the scan's zero initial state), each forward that
 * is given it reads it and replaces its tensors, and the caller disposes it. Nothing else holds it: a mixer keeps
 * no state of its own.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { SsmState } from '@slmkit/ssm';
 * const state = new SsmState();
 * console.log(state.length, state.conv, state.ssm); // 0 undefined undefined
 * state.set(tf.zeros([1, 3, 8]), tf.zeros([1, 8, 4]), 5);
 * console.log(state.conv?.shape, state.ssm?.shape, state.length); // [1, 3, 8] [1, 8, 4] 5
 * state.dispose();
 * ```
 */
export class SsmState<S extends tf.Tensor = tf.Tensor3D> {
  private convState: tf.Tensor3D | undefined;
  private ssmState: S | undefined;
  private seen = 0;
  private disposed = false;

  /** The last `convKernel − 1` inputs of the convolution, `[B, K − 1, D]` (channels last); undefined when empty. */
  get conv(): tf.Tensor3D | undefined {
    return this.convState;
  }

  /**
   * The recurrent state of the scan, `[B, D, N]` for a {@link MambaMixer} (`[B, H, P, N]` for a
   * {@link Mamba2Mixer}, whose state type is `SsmState<tf.Tensor4D>`); undefined when empty.
   */
  get ssm(): S | undefined {
    return this.ssmState;
  }

  /** Positions seen so far. */
  get length(): number {
    return this.seen;
  }

  /** Bytes held now. */
  get byteSize(): number {
    return 4 * ((this.convState?.size ?? 0) + (this.ssmState?.size ?? 0));
  }

  /** Whether {@link SsmState.dispose} was called. */
  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Replaces the tensors (taking ownership of the new ones, disposing the old ones) and sets the length. What a
   * mixer's forward calls; also how a saved state is restored.
   *
   * @throws {@link @slmkit/core!ConfigError | ConfigError} when the state was disposed or the shapes disagree on the batch or
   *   (for a rank-3 `[B, D, N]` state) the width.
   */
  set(conv: tf.Tensor3D, ssm: S, length: number): void {
    if (this.disposed) throw new ConfigError('SsmState: the state was disposed', { field: 'state', expected: 'a live state', found: 'disposed' });
    if (conv.shape[0] !== ssm.shape[0] || (ssm.rank === 3 && conv.shape[2] !== ssm.shape[1])) {
      throw new ConfigError(`SsmState: conv [B, K-1, D] and ssm [B, D, N] disagree: [${conv.shape.join(', ')}] vs [${ssm.shape.join(', ')}]`, {
        field: 'state',
        expected: 'the same B and D',
        found: [conv.shape.slice(), ssm.shape.slice()],
      });
    }
    const old = ([this.convState, this.ssmState] as (tf.Tensor | undefined)[]).filter((t): t is tf.Tensor => t != null && t !== conv && t !== ssm);
    this.convState = tf.keep(conv);
    this.ssmState = tf.keep(ssm);
    this.seen = length;
    tf.dispose(old);
  }

  /** An independent copy; dispose it separately. */
  clone(): SsmState<S> {
    const copy = new SsmState<S>();
    if (this.convState != null && this.ssmState != null) copy.set(this.convState.clone(), this.ssmState.clone(), this.seen);
    return copy;
  }

  /** Frees the tensors. Safe to call twice. */
  dispose(): void {
    tf.dispose(([this.convState, this.ssmState] as (tf.Tensor | undefined)[]).filter((t): t is tf.Tensor => t != null));
    this.convState = undefined;
    this.ssmState = undefined;
    this.disposed = true;
  }
}
