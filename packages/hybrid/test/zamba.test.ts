// Zamba: the multi-head Mamba mixer against a plain-JS transcription of transformers' slow path, the shared block
// (one copy of its parameters, the same objects in every hybrid layer, strict loading of the checkpoint as stored,
// a KV cache per hybrid layer), cached decoding equal to the full forward, no leaks, and typed errors.
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ShapeError, SafetensorsFile, initBackend, type BackendName } from '@slmkit/core';
import { KVCache } from '@slmkit/attention';
import { SsmState } from '@slmkit/ssm';
import { backendsUnderTest, caseDir, randn, readJson } from '@slmkit/fixtures';
import { expectClose } from '@slmkit/fixtures/assert';
import { HybridModel, ZambaHybridLayer, ZambaMambaMixer, ZambaSharedBlock, validateHybridSpec, type HybridSpec } from '../src/index.js';

const BACKENDS = (await backendsUnderTest(initBackend)) as BackendName[];

const MIXER = { hiddenSize: 6, intermediateSize: 8, numHeads: 2, stateSize: 3, convKernel: 3, timeStepRank: 2 };

/** Sets every parameter of a module to seeded normals (A_log positive-ish so that A = −exp(A_log) stays tame). */
function randomise(m: { namedParameters(): [string, tf.Variable][] }, seed: number): void {
  m.namedParameters().forEach(([name, v], i) => {
    const scale = name === 'A_log' ? 0.3 : 0.5;
    v.assign(tf.tensor(randn(v.size, seed + i, scale), v.shape, 'float32'));
  });
}

/**
 * transformers' `ZambaMambaMixer.slow_forward` written out in plain loops over JS arrays, from the parameters in
 * their checkpoint layout: the oracle the tfjs mixer is compared with.
 */
function referenceMixer(p: Record<string, Float32Array>, x: Float32Array, Bt: number, L: number): Float32Array {
  const { hiddenSize: Hd, intermediateSize: Dc, numHeads: H, stateSize: N, convKernel: K, timeStepRank: R } = MIXER;
  const P = Dc / H;
  const inW = p['in_proj.weight']; // [2D, Hd]
  const convW = p['conv1d.weight']; // [D, 1, K]
  const convB = p['conv1d.bias']; // [D]
  const xW = p['x_proj_weight']; // [H, R + 2N, P]
  const dtW = p['dt_proj_weight']; // [H, P, R]
  const dtB = p['dt_proj_bias']; // [H, P]
  const aLog = p['A_log']; // [H, P, N]
  const Dskip = p['D']; // [H, P]
  const outW = p['out_proj.weight']; // [Hd, D]
  const silu = (v: number): number => v / (1 + Math.exp(-v));
  const softplus = (v: number): number => (v > 20 ? v : Math.log1p(Math.exp(v)));
  const out = new Float32Array(Bt * L * Hd);
  for (let b = 0; b < Bt; b++) {
    // projected[c][t] = in_proj(x)[t][c]; hidden channel d is c = 2d, gate is 2d + 1.
    const proj = Array.from({ length: 2 * Dc }, (_, c) =>
      Array.from({ length: L }, (_, t) => {
        let s = 0;
        for (let k = 0; k < Hd; k++) s += inW[c * Hd + k] * x[(b * L + t) * Hd + k];
        return s;
      }),
    );
    const u = Array.from({ length: Dc }, (_, d) =>
      Array.from({ length: L }, (_, t) => {
        let s = convB[d];
        for (let k = 0; k < K; k++) {
          const src = t - (K - 1) + k;
          if (src >= 0) s += convW[d * K + k] * proj[2 * d][src];
        }
        return silu(s);
      }),
    );
    const y = Array.from({ length: Dc }, () => new Array<number>(L).fill(0));
    for (let h = 0; h < H; h++) {
      const state = Array.from({ length: P }, () => new Array<number>(N).fill(0));
      for (let t = 0; t < L; t++) {
        const ssm = Array.from({ length: R + 2 * N }, (_, j) => {
          let s = 0;
          for (let q = 0; q < P; q++) s += xW[(h * (R + 2 * N) + j) * P + q] * u[h * P + q][t];
          return s;
        });
        for (let q = 0; q < P; q++) {
          const d = h * P + q;
          let dt = dtB[h * P + q];
          for (let r = 0; r < R; r++) dt += dtW[(h * P + q) * R + r] * ssm[r];
          dt = softplus(dt);
          let acc = 0;
          for (let n = 0; n < N; n++) {
            const A = -Math.exp(aLog[(h * P + q) * N + n]);
            state[q][n] = Math.exp(A * dt) * state[q][n] + dt * ssm[R + n] * u[d][t];
            acc += state[q][n] * ssm[R + N + n];
          }
          y[d][t] = (acc + u[d][t] * Dskip[h * P + q]) * silu(proj[2 * d + 1][t]);
        }
      }
    }
    for (let t = 0; t < L; t++) {
      for (let o = 0; o < Hd; o++) {
        let s = 0;
        for (let d = 0; d < Dc; d++) s += outW[o * Dc + d] * y[d][t];
        out[(b * L + t) * Hd + o] = s;
      }
    }
  }
  return out;
}

describe.each(BACKENDS)('ZambaMambaMixer on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('computes what transformers\' slow path computes (interleaved in_proj, per-head x_proj / dt_proj / A / D, B and C per head)', async () => {
    const mixer = new ZambaMambaMixer(MIXER);
    randomise(mixer, 11);
    const [Bt, L] = [2, 5];
    const xs = Float32Array.from(randn(Bt * L * MIXER.hiddenSize, 3));
    const x = tf.tensor3d(xs, [Bt, L, MIXER.hiddenSize]);
    const stored = mixer.stateDict();
    const params = Object.fromEntries(await Promise.all(Object.entries(stored).map(async ([n, t]) => [n, (await t.data()) as Float32Array] as const)));
    tf.dispose(Object.values(stored));
    const want = referenceMixer(params, xs, Bt, L);
    const before = tf.memory().numTensors;
    const y = mixer.forward(x);
    expect(y.shape).toEqual([Bt, L, MIXER.hiddenSize]);
    expectClose(await y.data(), want, 1e-4, 'zamba mixer vs reference');
    const naive = mixer.forward(x, { implementation: 'naive' });
    expectClose(await naive.data(), want, 1e-4, 'zamba mixer (naive scan) vs reference');
    tf.dispose([y, naive]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    mixer.dispose();
  });

  it('prefill then single steps through an SsmState equals one forward', async () => {
    const mixer = new ZambaMambaMixer(MIXER);
    randomise(mixer, 5);
    const x = tf.tensor3d(randn(2 * 7 * 6, 9), [2, 7, 6]);
    const full = mixer.forward(x);
    const before = tf.memory().numTensors;
    const state = new SsmState();
    const pieces = [tf.slice(x, [0, 0, 0], [2, 4, 6]), ...[4, 5, 6].map((t) => tf.slice(x, [0, t, 0], [2, 1, 6]))];
    const outs = pieces.map((piece) => mixer.forward(piece, { state }));
    expect(state.length).toBe(7);
    expect(state.conv!.shape).toEqual([2, 2, 8]);
    expect(state.ssm!.shape).toEqual([2, 8, 3]);
    const stitched = tf.concat(outs, 1);
    expectClose(await stitched.data(), await full.data(), 1e-5, 'stepped vs full');
    tf.dispose([stitched, ...outs, ...pieces]);
    state.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, full]);
    mixer.dispose();
  });
});

describe('ZambaMambaMixer structure and errors', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('has Hugging Face\'s names and checkpoint layouts', () => {
    const mixer = new ZambaMambaMixer(MIXER);
    expect(mixer.checkpointShapes()).toEqual({
      'in_proj.weight': [16, 6],
      'conv1d.weight': [8, 1, 3],
      'conv1d.bias': [8],
      x_proj_weight: [2, 8, 4],
      dt_proj_weight: [2, 4, 2],
      dt_proj_bias: [2, 4],
      A_log: [2, 4, 3],
      D: [2, 4],
      'out_proj.weight': [6, 8],
    });
    mixer.dispose();
  });

  it('rejects bad configs, inputs and states with typed errors naming the field', () => {
    const err = (f: () => unknown): ConfigError | ShapeError => {
      try {
        f();
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('did not throw');
    };
    const e1 = err(() => new ZambaMambaMixer({ ...MIXER, numHeads: 3 }));
    expect(e1).toBeInstanceOf(ConfigError);
    expect(e1.message).toBe('ZambaMambaMixer: numHeads (3) must divide intermediateSize (8)');
    expect(err(() => new ZambaMambaMixer({ ...MIXER, stateSize: 0 }))).toBeInstanceOf(ConfigError);
    const mixer = new ZambaMambaMixer(MIXER);
    const x = tf.zeros([1, 3, 5]);
    const e2 = err(() => mixer.forward(x));
    expect(e2).toBeInstanceOf(ShapeError);
    expect(e2.message).toBe('ZambaMambaMixer: x must be float32 [B, L, 6], found float32 [1, 3, 5]');
    const good = tf.zeros([1, 3, 6]);
    const state = new SsmState();
    state.set(tf.zeros([1, 2, 8]), tf.zeros([1, 8, 4]), 3); // N = 4, the mixer's is 3
    expect(err(() => mixer.forward(good, { state }))).toBeInstanceOf(ShapeError);
    expect(err(() => mixer.forward(good, { attentionMask: tf.ones([1, 4]) }))).toBeInstanceOf(ShapeError);
    state.dispose();
    tf.dispose([x, good]);
    mixer.dispose();
  });
});

/** The spec of the zamba fixture (what `zambaConfigFromHF` in @slmkit/models makes of its config.json). */
function fixtureSpec(): HybridSpec {
  const c = readJson<Record<string, number | string[]>>('zamba', 'config.json');
  const kinds = c.layers_block_type as string[];
  return {
    vocabSize: c.vocab_size as number,
    hiddenSize: c.hidden_size as number,
    normEps: c.rms_norm_eps as number,
    tieWordEmbeddings: true,
    mamba: { intermediateSize: 64, stateSize: 8, convKernel: 4, timeStepRank: 2, numHeads: 2, convBias: true, projBias: false },
    mlp: { intermediateSize: c.intermediate_size as number, activation: 'gelu' },
    sharedBlocks: [{ numHeads: 4, numKVHeads: 4, headDim: 16 }],
    layers: kinds.map((k) => (k === 'hybrid' ? { mixer: 'mamba', feedForward: 'none', sharedBlock: 0 } : { mixer: 'mamba', feedForward: 'none' })),
  };
}

describe('Zamba\'s shared block in a HybridModel', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('exists once: the same variables in every hybrid layer, counted once, loaded strictly from the checkpoint as stored', async () => {
    const body = new HybridModel(fixtureSpec());
    const hybrid = body.layers.filter((l): l is ZambaHybridLayer => l instanceof ZambaHybridLayer);
    expect(hybrid.map((l) => l.layerIndex)).toEqual([2, 4]);
    expect(hybrid[0].sharedBlock).toBe(hybrid[1].sharedBlock);
    const vars = (l: ZambaHybridLayer) => l.sharedBlock.parameters();
    expect(vars(hybrid[0]).length).toBe(9);
    vars(hybrid[0]).forEach((v, i) => expect(v).toBe(vars(hybrid[1])[i]));
    expect(hybrid[0].linear.weight).not.toBe(hybrid[1].linear.weight);

    // The checkpoint stores the block once, under the last hybrid layer (model.layers.4.shared_transf.*).
    const file = await SafetensorsFile.fromFile(join(caseDir('zamba'), 'model.safetensors'));
    const names = file.names().filter((n) => n.startsWith('model.'));
    const stored = names.reduce((sum, n) => sum + file.shape(n).reduce((a, b) => a * b, 1), 0);
    expect(body.parameterCount().total).toBe(stored);
    const record: Record<string, tf.Tensor> = {};
    for (const n of names) record[n.slice('model.'.length)] = await file.read(n);
    await file.close();
    const report = await body.loadWeights(record, { strict: true });
    expect(report.missing).toEqual([]);
    expect(report.unexpected).toEqual([]);
    const q4 = record['layers.4.shared_transf.self_attn.q_proj.weight'];
    const q2 = hybrid[0].sharedBlock.selfAttn.parts.qProj!.parameters()[0]; // [in, out], the transpose of HF's
    expectClose(await tf.transpose(q2).data(), await q4.data(), 0, 'layer 2 reads layer 4\'s stored block');
    tf.dispose(Object.values(record));
    body.dispose();
  });

  it('gives each hybrid layer its own KV cache for the shared attention; cached decoding equals the full forward; no leaks', async () => {
    const spec = fixtureSpec();
    const body = new HybridModel(spec);
    const ids = tf.tensor2d([[3, 9, 27, 81 % 128, 5, 7]], [1, 6], 'int32');
    const full = body.forward(ids);
    const before = tf.memory().numTensors;
    const cache = body.createCache();
    expect(cache.layers.map((l) => l.shared != null)).toEqual([false, false, true, false, true]);
    expect(cache.layers[2].shared).toBeInstanceOf(KVCache);
    expect(cache.layers[2].shared).not.toBe(cache.layers[4].shared);
    const pieces = [tf.slice(ids, [0, 0], [1, 4]), tf.slice(ids, [0, 4], [1, 1]), tf.slice(ids, [0, 5], [1, 1])] as tf.Tensor2D[];
    const prefill = body.forward(pieces[0], { cache });
    expect(cache.layers[2].shared!.length).toBe(4);
    expect(cache.layers[4].shared!.length).toBe(4);
    const steps = pieces.slice(1).map((piece) => body.forward(piece, { cache }));
    expect(cache.layers[4].shared!.length).toBe(6);
    expect(cache.length).toBe(6);
    const stitched = tf.concat([prefill, ...steps], 1);
    expectClose(await stitched.data(), await full.data(), 1e-5, 'cached vs full');
    tf.dispose([prefill, ...steps, stitched, ...pieces]);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([ids, full]);
    body.dispose();
  });

  it('a forward leaves the tensor count unchanged', () => {
    const body = new HybridModel(fixtureSpec());
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    const before = tf.memory().numTensors;
    const y = body.forward(ids);
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
    ids.dispose();
    body.dispose();
  });

  it('gradients reach the shared block (one variable, trained through every hybrid layer that uses it)', () => {
    const body = new HybridModel(fixtureSpec());
    const ids = tf.tensor2d([[1, 2, 3, 4]], [1, 4], 'int32');
    const shared = (body.layers[2] as ZambaHybridLayer).sharedBlock;
    const wo = shared.selfAttn.parts.oProj.parameters()[0];
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => tf.sum(body.forward(ids)) as tf.Scalar, [wo]);
    const g = grads[wo.name];
    expect(g.shape).toEqual(wo.shape);
    expect(tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0])).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(before);
    ids.dispose();
    body.dispose();
  });

  it('errors are typed and name the field', () => {
    const spec = fixtureSpec();
    expect(() => validateHybridSpec({ ...spec, sharedBlocks: undefined })).toThrow(/layers\[2\]\.sharedBlock must be absent \(the spec has no sharedBlocks\), found 0/);
    expect(() => validateHybridSpec({ ...spec, sharedBlocks: [{ numHeads: 4, numKVHeads: 3, headDim: 16 }] })).toThrow(ConfigError);
    expect(() => validateHybridSpec({ ...spec, mamba: { ...spec.mamba!, numHeads: 3 } })).toThrow(/mamba\.numHeads must be a divisor of intermediateSize = 64, found 3/);
    const block = new ZambaSharedBlock(32, spec.sharedBlocks![0], spec.mlp!, 1e-5);
    expect(() => new ZambaHybridLayer(spec, 0, block)).toThrow(/layers\[0\] has no sharedBlock/);
    const layer = new ZambaHybridLayer(spec, 2, block);
    const x = tf.zeros([1, 2, 32]) as tf.Tensor3D;
    let e: unknown;
    try {
      layer.forward(x, { offset: 0, kv: [] });
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).message).toMatch(/ZambaHybridLayer 2: the call's embeddings are needed/);
    x.dispose();
    layer.dispose();
  });
});
