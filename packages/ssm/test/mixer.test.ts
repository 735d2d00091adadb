// MambaMixer: prefill then single steps equals one forward, naive and fused agree, the state is caller-owned and
// leak-free, Hugging Face names, and errors for bad input.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, Linear, ShapeError, checkProjection, initBackend } from '@slmkit/core';
import { MambaMixer, SsmState, checkMixerCall } from '../src/index.js';
import { BACKENDS, diff, uniform } from './helpers.js';

const CONFIG = { hiddenSize: 8, intermediateSize: 16, stateSize: 4, convKernel: 4, timeStepRank: 2 };

describe.each(BACKENDS)('MambaMixer on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it.each([false, true])('prefill of L then k steps equals one forward of L + k (falcon norms: %s)', async (norms) => {
    const mixer = new MambaMixer({ ...CONFIG, dtBCNorm: norms ? { eps: 1e-6, weight: false } : undefined });
    const x = uniform([2, 9, 8], 1);
    const full = mixer.forward(x);
    const before = tf.memory().numTensors;
    const state = new SsmState();
    const pieces = [tf.slice(x, [0, 0, 0], [2, 6, 8]), ...[6, 7, 8].map((t) => tf.slice(x, [0, t, 0], [2, 1, 8]))];
    const outs = pieces.map((piece) => mixer.forward(piece, { state }));
    tf.dispose(pieces);
    expect(state.length).toBe(9);
    expect(state.conv!.shape).toEqual([2, 3, 16]);
    expect(state.ssm!.shape).toEqual([2, 16, 4]);
    const stitched = tf.concat(outs, 1);
    const d = diff(await stitched.data(), await full.data());
    expect(d.abs).toBeLessThanOrEqual(1e-5 * Math.max(1, d.scale));
    const naive = mixer.forward(x, { implementation: 'naive' });
    const dn = diff(await naive.data(), await full.data());
    expect(dn.abs).toBeLessThanOrEqual(1e-5 * Math.max(1, dn.scale));
    tf.dispose([stitched, naive, ...outs]);
    state.dispose();
    expect(tf.memory().numTensors).toBe(before - 0);
    tf.dispose([x, full]);
    mixer.dispose();
  });
});

describe('MambaMixer structure and errors', () => {
  it('uses Hugging Face parameter names and shapes', () => {
    const mixer = new MambaMixer({ ...CONFIG, dtBCNorm: { eps: 1e-6, weight: true } });
    const shapes = Object.fromEntries(mixer.namedParameters().map(([n, v]) => [n, v.shape.length]));
    expect(Object.keys(shapes).sort()).toEqual(
      ['A_log', 'D', 'b_layernorm.weight', 'c_layernorm.weight', 'conv1d.bias', 'conv1d.weight', 'dt_layernorm.weight', 'dt_proj.bias', 'dt_proj.weight', 'in_proj.weight', 'out_proj.weight', 'x_proj.weight'].sort(),
    );
    mixer.dispose();
    const falcon = new MambaMixer({ ...CONFIG, dtBCNorm: { eps: 1e-6, weight: false } });
    expect(falcon.namedParameters().some(([n]) => n.includes('layernorm'))).toBe(false);
    falcon.dispose();
  });

  it('rejects bad configs and inputs', () => {
    expect(() => new MambaMixer({ ...CONFIG, stateSize: 0 })).toThrow(ConfigError);
    const mixer = new MambaMixer(CONFIG);
    const x = tf.zeros([1, 3, 7]);
    expect(() => mixer.forward(x)).toThrow(ShapeError);
    const state = new SsmState();
    const y = mixer.forward(tf.zeros([1, 3, 8]), { state });
    expect(() => mixer.forward(tf.zeros([2, 1, 8]), { state })).toThrow(/state holds/);
    state.dispose();
    expect(() => mixer.forward(tf.zeros([1, 1, 8]), { state })).toThrow(/live SsmState/);
    tf.dispose([x, y]);
    mixer.dispose();
  });
});

describe('the shared checks of mixer calls and parts', () => {
  it('checkMixerCall names the owner, the field, what it expected and what it found', () => {
    const x = tf.zeros([2, 3, 8]);
    expect(checkMixerCall('M', x, 8, {}, [3, 16], [16, 4])).toEqual({ batch: 2, length: 3 });
    expect(() => checkMixerCall('M', x, 6, {}, [3, 16], [16, 4])).toThrow(/M: x must be float32 \[B, L, 6\], found float32 \[2, 3, 8\]/);
    const state = new SsmState<tf.Tensor>();
    state.set(tf.zeros([2, 3, 16]), tf.zeros([2, 16, 4]), 3);
    expect(checkMixerCall('M', x, 8, { state }, [3, 16], [16, 4]).length).toBe(3);
    // A Mamba-1 state handed to a mixer whose scan state is [B, H, P, N] (Mamba-2's):
    const err = (() => {
      try {
        checkMixerCall('M2', x, 8, { state }, [3, 16], [4, 4, 4]);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as ShapeError).details).toEqual({ field: 'state', expected: [[2, 3, 16], [2, 4, 4, 4]], found: [[2, 3, 16], [2, 16, 4]] });
    const mask = tf.ones([2, 4]);
    expect(() => checkMixerCall('M', x, 8, { attentionMask: mask }, [3, 16], [16, 4])).toThrow(/M: attentionMask must be \[2, 3\], found \[2, 4\]/);
    state.dispose();
    expect(() => checkMixerCall('M', x, 8, { state }, [3, 16], [16, 4])).toThrow(/M: state must be a live SsmState/);
    tf.dispose([x, mask]);
  });

  it('checkProjection rejects a part of other widths and a non-module, naming the field', () => {
    const proj = new Linear(8, 32);
    expect(() => checkProjection('M', 'inProj', proj, 8, 32)).not.toThrow();
    expect(() => checkProjection('M', 'inProj', proj, 8, 16)).toThrow(/M: inProj must map 8 → 16 features, found 8 → 32/);
    expect(() => checkProjection('M', 'inProj', { forward: () => null }, 8, 16)).toThrow(ConfigError);
    proj.dispose();
  });
});
