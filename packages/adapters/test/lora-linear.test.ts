// LoRALinear / DoRALinear against float64 references: LoRA, rsLoRA and DoRA forwards (with and without bias),
// DoRA's gradients with the norm held constant (as PEFT detaches it), merge / exact unmerge, several named
// adapters, dropout only in training, validation.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, initBackend, Linear, ShapeError } from '@slmkit/core';
import { randn } from '@slmkit/fixtures';
import { expectClose } from '@slmkit/fixtures/assert';
import { DoRALinear, LoRALinear } from '../src/index.js';
import { take } from './helpers.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const I = 6;
const O = 5;
const R = 3;
const N = 4; // rows of x

/** Row-major matrices as plain numbers, float64. */
const W = randn(O * I, 1, 0.4);
const b = randn(O, 2, 0.3);
const A = randn(R * I, 3, 0.5);
const Bm = randn(O * R, 4, 0.5);
const m = randn(O, 5).map((v) => 1 + 0.2 * Math.abs(v));
const x = randn(N * I, 6);

/** x Mᵀ for x [N, in] and M [out, in]. */
function times(xs: number[], M: number[], rows: number, inF: number, outF: number): number[] {
  const y = new Array<number>(rows * outF).fill(0);
  for (let n = 0; n < rows; n++) for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) y[n * outF + o] += xs[n * inF + i]! * M[o * inF + i]!;
  return y;
}

/** W + s B A, [out, in]. */
function adapted(s: number): number[] {
  const V = W.slice();
  for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) for (let k = 0; k < R; k++) V[o * I + i] += s * Bm[o * R + k]! * A[k * I + i]!;
  return V;
}

/** ‖V‖ per output row. */
function rowNorms(V: number[]): number[] {
  return Array.from({ length: O }, (_, o) => Math.sqrt(V.slice(o * I, (o + 1) * I).reduce((a, v) => a + v * v, 0)));
}

function loraRef(s: number, bias: boolean): number[] {
  const y = times(x, adapted(s), N, I, O);
  return y.map((v, k) => v + (bias ? b[k % O]! : 0));
}

function doraRef(s: number, bias: boolean): number[] {
  const V = adapted(s);
  const n = rowNorms(V);
  return times(x, V, N, I, O).map((v, k) => (m[k % O]! / n[k % O]!) * v + (bias ? b[k % O]! : 0));
}

async function layerWith(bias: boolean, options: { rank: number; alpha: number; rsLoRA?: boolean; dora?: boolean }): Promise<LoRALinear> {
  const base = new Linear(I, O, { bias });
  const weights: Record<string, tf.Tensor> = { weight: tf.tensor2d(W, [O, I]) };
  if (bias) weights.bias = tf.tensor1d(b);
  await base.loadWeights(weights);
  tf.dispose(Object.values(weights));
  const layer = new LoRALinear(base, options);
  const adapter: Record<string, tf.Tensor> = { lora_A: tf.tensor2d(A, [R, I]), lora_B: tf.tensor2d(Bm, [O, R]) };
  if (options.dora === true) adapter.lora_magnitude_vector = tf.tensor1d(m);
  await layer.adapter('default')!.loadWeights(adapter);
  tf.dispose(Object.values(adapter));
  return layer;
}

describe('LoRALinear forward', () => {
  const kinds = [
    ['LoRA', { rank: R, alpha: 6 }, 2, loraRef],
    ['rsLoRA', { rank: R, alpha: 6, rsLoRA: true }, 6 / Math.sqrt(R), loraRef],
    ['DoRA', { rank: R, alpha: 6, dora: true }, 2, doraRef],
  ] as const;
  for (const [label, options, s, ref] of kinds) {
    for (const bias of [true, false]) {
      it(`${label} (${bias ? 'bias' : 'no bias'}) matches float64, merged too, and unmerges bit for bit`, async () => {
        const layer = await layerWith(bias, options);
        expect(layer.adapter('default')!.scaling).toBeCloseTo(s, 12);
        const xt = tf.tensor3d(x, [2, N / 2, I]);
        const before = tf.memory().numTensors;
        const y = layer.forward(xt);
        expect(y.shape).toEqual([2, N / 2, O]);
        expectClose(await take(y), ref(s, bias), 1e-5);
        const w0 = Array.from(await layer.base.weight.data());
        expect(layer.merge()).toBe(true);
        expect(layer.mergedAdapter).toBe('default');
        expectClose(await take(layer.forward(xt)), ref(s, bias), 1e-5);
        // While merged the Linear alone (one matmul) gives the adapted output.
        expectClose(await take(layer.base.affine(xt)), ref(s, bias), 1e-5);
        expect(layer.unmerge()).toBe(true);
        expect(Array.from(await layer.base.weight.data())).toEqual(w0);
        expect(tf.memory().numTensors).toBe(before);
        xt.dispose();
        layer.dispose();
      });
    }
  }

  it('differs from the references when the scaling or the DoRA norm is wrong (the references can fail)', () => {
    expect(Math.max(...loraRef(2, true).map((v, i) => Math.abs(v - loraRef(1, true)[i]!)))).toBeGreaterThan(1e-2);
    expect(Math.max(...doraRef(2, true).map((v, i) => Math.abs(v - loraRef(2, true)[i]!)))).toBeGreaterThan(1e-2);
  });

  it("DoRA's gradients treat the norm as a constant, as PEFT does", async () => {
    const layer = await layerWith(true, { rank: R, alpha: 6, dora: true });
    const adapter = layer.adapter('default')!;
    const s = 2;
    const g = randn(N * O, 9);
    const xt = tf.tensor2d(x, [N, I]);
    const gt = tf.tensor2d(g, [N, O]);
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(layer.forward(xt), gt)) as tf.Scalar, [adapter.loraB, adapter.magnitude!]);
    // d/dB[o, k] = Σ_n c_o g[n, o] s (x Aᵀ)[n, k] with c = m / n fixed; d/dm_o = Σ_n g[n, o] (x Vᵀ)[n, o] / n_o.
    const V = adapted(s);
    const n = rowNorms(V);
    const xA = times(x, A, N, I, R); // [N, R]
    const xV = times(x, V, N, I, O); // [N, O]
    const dB = new Array<number>(O * R).fill(0); // PEFT layout [out, r]
    const dm = new Array<number>(O).fill(0);
    for (let r = 0; r < N; r++) {
      for (let o = 0; o < O; o++) {
        for (let k = 0; k < R; k++) dB[o * R + k] += (m[o]! / n[o]!) * g[r * O + o]! * s * xA[r * R + k]!;
        dm[o] += (g[r * O + o]! * xV[r * O + o]!) / n[o]!;
      }
    }
    // loraB is stored [r, out]: transpose the reference.
    const dBt = Array.from({ length: R * O }, (_, j) => dB[(j % O) * R + Math.floor(j / O)]!);
    expectClose(await take(grads[adapter.loraB.name]!), dBt, 1e-5);
    expectClose(await take(grads[adapter.magnitude!.name]!), dm, 1e-5);
    tf.dispose([xt, gt]);
    layer.dispose();
  });
});

describe('LoRALinear adapters', () => {
  it('starts equal to its base (B = 0; DoRA m = ‖W‖), keeps the base names and freezes the base', async () => {
    const base = new Linear(I, O, { seed: 1 });
    const xt = tf.tensor2d(x, [N, I]);
    const plain = await take(base.forward(xt));
    const layer = new DoRALinear(base, { rank: 2, seed: 3 });
    layer.addAdapter('lora', { rank: 2, alpha: 4 });
    for (const name of ['default', 'lora']) {
      layer.setAdapter(name);
      expectClose(await take(layer.forward(xt)), plain, 1e-6);
    }
    expect(layer.namedParameters().map(([n, v]) => [n, v.trainable])).toEqual([
      ['weight', false],
      ['bias', false],
      ['adapters.default.lora_A', true],
      ['adapters.default.lora_B', true],
      ['adapters.default.lora_magnitude_vector', true],
      ['adapters.lora.lora_A', true],
      ['adapters.lora.lora_B', true],
    ]);
    expect(layer.checkpointShapes()['adapters.default.lora_A']).toEqual([2, I]);
    expect(layer.checkpointShapes().weight).toEqual([O, I]);
    xt.dispose();
    layer.dispose();
  });

  it('switches, disables, deletes, and refuses what a merged adapter makes wrong', async () => {
    const layer = await layerWith(true, { rank: R, alpha: 6 });
    const xt = tf.tensor2d(x, [N, I]);
    layer.addAdapter('zero', { rank: 2 }); // B = 0: the base output
    expect(layer.activeAdapter).toBe('zero');
    const base = await take(layer.base.affine(xt));
    expectClose(await take(layer.forward(xt)), base, 1e-6);
    layer.setAdapter('default');
    expectClose(await take(layer.forward(xt)), loraRef(2, true), 1e-5);
    layer.disable();
    expectClose(await take(layer.forward(xt)), base, 1e-6);
    layer.enable();
    layer.merge();
    expect(() => layer.setAdapter('zero')).toThrow(/adapter "default" is merged into the weight; unmerge first/);
    expect(() => layer.disable()).toThrow(ConfigError);
    expect(() => layer.merge()).toThrow(ConfigError);
    expect(() => layer.deleteAdapter('default')).toThrow(/merged; unmerge it first/);
    expect(() => layer.addAdapter('more', { rank: 1 })).toThrow(ConfigError);
    layer.unmerge();
    expect(layer.unmerge()).toBe(false);
    expect(() => layer.setAdapter('nope')).toThrow(/no adapter named "nope" \(adapters: default, zero\)/);
    expect(() => layer.addAdapter('zero', { rank: 1 })).toThrow(/already exists/);
    const before = tf.memory().numTensors;
    layer.deleteAdapter('zero');
    expect(tf.memory().numTensors).toBe(before - 2);
    expect(layer.adapterNames()).toEqual(['default']);
    layer.setAdapter(undefined);
    expect(layer.merge()).toBe(false);
    expectClose(await take(layer.forward(xt)), base, 1e-6);
    xt.dispose();
    layer.dispose();
  });

  it('applies dropout to the adapter input only in training', async () => {
    const layer = await layerWith(false, { rank: R, alpha: 6 });
    layer.addAdapter('dropped', { rank: R, alpha: 6, dropout: 0.5 });
    await layer.adapter('dropped')!.loadWeights(layer.adapter('default')!.stateDict());
    const xt = tf.tensor2d(x, [N, I]);
    expectClose(await take(layer.forward(xt)), loraRef(2, false), 1e-5);
    layer.training = true;
    const trained = await take(layer.forward(xt));
    layer.training = false;
    expect(Math.max(...Array.from(trained, (v, i) => Math.abs(v - loraRef(2, false)[i]!)))).toBeGreaterThan(1e-3);
    xt.dispose();
    layer.dispose();
  });

  it('frees the weight kept for an unmerge when disposed merged', async () => {
    const before = tf.memory().numTensors;
    const layer = await layerWith(true, { rank: R, alpha: 6 });
    layer.merge();
    layer.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('validates its options and input', () => {
    const base = new Linear(I, O);
    expect(() => new LoRALinear({} as Linear)).toThrow(/base must be a Linear/);
    const layer = new LoRALinear(base);
    expect(() => layer.addAdapter('a', { rank: 0 })).toThrow(/rank must be a positive integer, found 0/);
    expect(() => layer.addAdapter('a', { rank: 2, alpha: -1 })).toThrow(/alpha must be a finite number > 0, found -1/);
    expect(() => layer.addAdapter('a', { rank: 2, dropout: 1 })).toThrow(/dropout must be in \[0, 1\), found 1/);
    expect(() => layer.addAdapter('a b', { rank: 2 })).toThrow(/adapter name must match/);
    expect(layer.adapterNames()).toEqual([]);
    layer.addAdapter('a', { rank: 2 });
    const wrong = tf.zeros([2, I + 1]);
    expect(() => layer.forward(wrong)).toThrow(ShapeError);
    wrong.dispose();
    layer.dispose();
  });
});
