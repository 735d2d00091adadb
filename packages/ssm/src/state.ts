/**
 * `SsmState`: the decoding state of one Mamba mixer, owned by the caller.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '@slmkit/core';

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

/**
 * What a mixer call looks like to {@link checkMixerCall}: the state it continues from and the padding mask.
 *
 * @example
 * ```ts
 * import { SsmState, type MixerCall } from '@slmkit/ssm';
 * const call: MixerCall = { state: new SsmState() };
 * call.state?.dispose();
 * ```
 */
export interface MixerCall {
  /** The state to continue from and update. */
  state?: SsmState<tf.Tensor>;
  /** `[B, L]`, 1 for a real token and 0 for padding. */
  attentionMask?: tf.Tensor;
}

/**
 * The eager checks of a state-space mixer's `forward` (Mamba, Mamba-2, Zamba's, or one of your own): `x` is float32
 * `[B, L, hiddenSize]`, the state (if any) is live and, once it holds something, holds a convolution window
 * `[B, ...convShape]` and a scan state `[B, ...ssmShape]`, and the mask is `[B, L]`. Throws a
 * {@link @slmkit/core!ShapeError | ShapeError} naming the owner, the field, the expected and the found shape.
 *
 * @returns `B` and `L`.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { SsmState, checkMixerCall } from '@slmkit/ssm';
 * const state = new SsmState();
 * const x = tf.zeros([2, 5, 8]);
 * // A mixer of inner width 16, convolution width 4 and state size 4:
 * console.log(checkMixerCall('MyMixer', x, 8, { state }, [3, 16], [16, 4])); // { batch: 2, length: 5 }
 * x.dispose();
 * state.dispose();
 * ```
 */
export function checkMixerCall(
  owner: string,
  x: tf.Tensor,
  hiddenSize: number,
  call: MixerCall,
  convShape: readonly number[],
  ssmShape: readonly number[],
): { batch: number; length: number } {
  if (!(x instanceof tf.Tensor) || x.rank !== 3 || x.shape[2] !== hiddenSize || x.dtype !== 'float32') {
    const found = x instanceof tf.Tensor ? `${x.dtype} [${x.shape.join(', ')}]` : typeof x;
    throw new ShapeError(`${owner}: x must be float32 [B, L, ${hiddenSize}], found ${found}`, { field: 'x', expected: `[B, L, ${hiddenSize}]`, found });
  }
  const [batch, length] = x.shape;
  const { state, attentionMask } = call;
  if (state != null) {
    if (!(state instanceof SsmState) || state.isDisposed) {
      throw new ShapeError(`${owner}: state must be a live SsmState`, { field: 'state', expected: 'SsmState', found: typeof state });
    }
    const want = [[batch, ...convShape], [batch, ...ssmShape]];
    const same = (t: tf.Tensor | undefined, shape: number[]): boolean => t != null && t.rank === shape.length && shape.every((d, i) => t.shape[i] === d);
    if (state.conv != null && !(same(state.conv, want[0]) && same(state.ssm, want[1]))) {
      const held = [state.conv.shape.slice(), state.ssm?.shape.slice()];
      throw new ShapeError(`${owner}: state holds [${held[0]!.join(', ')}] / [${held[1]?.join(', ')}], expected [${want[0].join(', ')}] / [${want[1].join(', ')}]`, {
        field: 'state',
        expected: want,
        found: held,
      });
    }
  }
  if (attentionMask != null && (attentionMask.rank !== 2 || attentionMask.shape[0] !== batch || attentionMask.shape[1] !== length)) {
    throw new ShapeError(`${owner}: attentionMask must be [${batch}, ${length}], found [${attentionMask.shape.join(', ')}]`, {
      field: 'attentionMask',
      expected: [batch, length],
      found: attentionMask.shape.slice(),
    });
  }
  return { batch, length };
}
