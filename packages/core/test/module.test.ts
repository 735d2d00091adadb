import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError, ConfigError, Embedding, Linear, Module, SafetensorsFile, serializeSafetensors } from '../src/index.js';

class Affine extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;
  constructor(n: number, m: number) {
    super();
    this.weight = this.registerParameter('weight', tf.zeros([m, n]));
    this.bias = this.registerParameter('bias', tf.zeros([m]));
  }
}

class Block extends Module {
  readonly q_proj = this.registerModule('q_proj', new Affine(4, 6));
  readonly norm: tf.Variable = this.registerParameter('norm', tf.ones([4]), { trainable: false });
}

class Model extends Module {
  readonly layers: Block[] = [];
  constructor(n: number) {
    super();
    for (let i = 0; i < n; i++) this.layers.push(this.registerModule(`layer_${i}`, new Block()));
  }
}

/** Two hybrid layers that use one shared block, as Zamba does. */
class Shared extends Module {
  readonly shared = new Block();
  constructor() {
    super();
    this.registerModule('a', this.shared);
    this.registerModule('b', this.shared);
  }
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function weightsOf(m: Module, fill: (name: string) => number): Record<string, tf.Tensor> {
  return Object.fromEntries(m.namedParameters().map(([n, v]) => [n, tf.fill(v.shape, fill(n))]));
}

describe('Module', () => {
  it("disposes through each child's own dispose, so what a subclass holds beyond its parameters is freed", () => {
    let calls = 0;
    class Holder extends Affine {
      readonly extra = tf.ones([3]);
      override dispose(): void {
        calls++;
        this.extra.dispose();
        super.dispose();
      }
    }
    class Outer extends Module {
      readonly holder = this.registerModule('a', new Holder(2, 2));
      constructor() {
        super();
        this.registerModule('b', this.holder);
      }
    }
    const before = tf.memory().numTensors;
    const outer = new Outer();
    outer.dispose();
    outer.dispose();
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(outer.holder.extra.isDisposed).toBe(true);
    expect(outer.holder.weight.isDisposed).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('replaces a named child in the registry, returns the old one, and rejects an unknown name', () => {
    const block = new Block();
    const replacement = new Affine(4, 2);
    const old = block.replaceModule('q_proj', replacement);
    expect(old).toBe(block.q_proj);
    expect(block.child('q_proj')).toBe(replacement);
    expect(block.checkpointShapes()).toEqual({ norm: [4], 'q_proj.weight': [2, 4], 'q_proj.bias': [2] });
    expect(block.namedModules().map(([n, m]) => [n, m === replacement])).toEqual([['', false], ['q_proj', true]]);
    expect(() => block.replaceModule('k_proj', new Affine(4, 2))).toThrow(ConfigError);
    expect(() => block.replaceModule('k_proj', new Affine(4, 2))).toThrow(/no child "k_proj" \(children: q_proj\)/);
    expect(() => block.replaceModule('q_proj', {} as Module)).toThrow(ConfigError);
    old.dispose();
    block.dispose();
  });

  it('names parameters with dotted paths, own parameters first, then children in registration order', () => {
    const m = new Model(2);
    expect(m.namedParameters().map(([n]) => n)).toEqual([
      'layer_0.norm', // own parameters come before children's, as in PyTorch
      'layer_0.q_proj.weight',
      'layer_0.q_proj.bias',
      'layer_1.norm',
      'layer_1.q_proj.weight',
      'layer_1.q_proj.bias',
    ]);
    expect(m.namedModules().map(([n]) => n)).toEqual(['', 'layer_0', 'layer_0.q_proj', 'layer_1', 'layer_1.q_proj']);
    expect(Object.keys(m.stateDict())).toHaveLength(6);
    m.dispose();
  });

  it('counts parameters, total and trainable, and freezes / unfreezes', () => {
    const m = new Model(2);
    // per block: 6*4 + 6 trainable, 4 frozen
    expect(m.parameterCount()).toEqual({ total: 2 * 34, trainable: 2 * 30 });
    m.freeze();
    expect(m.parameterCount().trainable).toBe(0);
    expect(m.trainableParameters()).toHaveLength(0);
    m.unfreeze();
    expect(m.parameterCount().trainable).toBe(68);
    m.dispose();
  });

  it('rejects bad and duplicate names', () => {
    class Bad extends Module {
      constructor(name: string) {
        super();
        this.registerParameter(name, tf.zeros([1]));
        this.registerParameter('w', tf.zeros([1]));
      }
    }
    expect(() => new Bad('a.b')).toThrow(ConfigError);
    expect(() => new Bad('w')).toThrow(/already registered/);
  });

  it('loads weights by name and reports what it loaded', async () => {
    const m = new Model(1);
    const src = weightsOf(m, (n) => n.length);
    const report = await m.loadWeights(src);
    expect(report.loaded).toHaveLength(3);
    expect(report.missing).toEqual([]);
    expect(report.unexpected).toEqual([]);
    expect(await m.layers[0].q_proj.bias.data()).toEqual(new Float32Array(6).fill('layer_0.q_proj.bias'.length));
    Object.values(src).forEach((t) => t.dispose());
    m.dispose();
  });

  it('lists every missing, unexpected and mis-shaped tensor in one CheckpointError and changes nothing', async () => {
    const m = new Model(2);
    const src: Record<string, tf.Tensor> = {
      'layer_0.q_proj.weight': tf.ones([6, 4]),
      'layer_0.q_proj.bias': tf.ones([5]), // wrong shape
      'layer_0.norm': tf.ones([4]),
      'layer_1.q_proj.weight': tf.ones([6, 4]),
      'layer_1.q_proj.bias': tf.ones([6]),
      // layer_1.norm missing
      'lm_head.weight': tf.ones([2, 2]), // unexpected
    };
    const err = (await m.loadWeights(src).catch((e: unknown) => e)) as CheckpointError;
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.problems.map((p) => [p.kind, p.name])).toEqual([
      ['missing', 'layer_1.norm'],
      ['unexpected', 'lm_head.weight'],
      ['shape', 'layer_0.q_proj.bias'],
    ]);
    expect(err.message).toMatch(/1 missing, 1 unexpected, 1 shape/);
    expect(err.message).toMatch(/expected shape \[6\], found \[5\]/);
    // nothing was assigned
    expect(tf.sum(m.layers[0].q_proj.weight).dataSync()[0]).toBe(0);
    // non-strict: missing and unexpected are reported, not fatal; the wrong shape still is
    const partial = { ...src, 'layer_0.q_proj.bias': tf.ones([6]) };
    const report = await m.loadWeights(partial, { strict: false });
    expect(report.missing).toEqual(['layer_1.norm']);
    expect(report.unexpected).toEqual(['lm_head.weight']);
    expect(tf.sum(m.layers[0].q_proj.weight).dataSync()[0]).toBe(24);
    Object.values(src).forEach((t) => t.dispose());
    partial['layer_0.q_proj.bias'].dispose();
    m.dispose();
  });

  it('holds a shared child once, loadable under any of its names', async () => {
    const m = new Shared();
    expect(m.namedParameters().map(([n]) => n)).toEqual(['a.norm', 'a.q_proj.weight', 'a.q_proj.bias']);
    expect(m.parameterCount().total).toBe(34);
    // stored under the last user's name, as Zamba's checkpoints do
    const src = {
      'b.q_proj.weight': tf.fill([6, 4], 2),
      'b.q_proj.bias': tf.fill([6], 3),
      'b.norm': tf.fill([4], 4),
    };
    const report = await m.loadWeights(src);
    expect(report.loaded).toHaveLength(3);
    expect(tf.sum(m.shared.q_proj.bias).dataSync()[0]).toBe(18);
    Object.values(src).forEach((t) => t.dispose());
    m.dispose();
  });

  it('casts float tensors of another dtype and disposes everything it read', async () => {
    const m = new Model(1);
    const src = weightsOf(m, () => 1);
    const before = tf.memory().numTensors;
    await m.loadWeights(src);
    expect(tf.memory().numTensors).toBe(before);
    Object.values(src).forEach((t) => t.dispose());
    const numBefore = tf.memory().numTensors;
    m.dispose();
    expect(tf.memory().numTensors).toBe(numBefore - 3);
    m.dispose(); // twice is safe
  });

  describe('parameters stored transposed', () => {
    /** A layer whose weight variable is the transpose of its checkpoint tensor, plus a plain vector. */
    class Transposed extends Module {
      readonly weight: tf.Variable;
      readonly scale: tf.Variable;
      constructor(rows: number, cols: number, shared?: tf.Variable) {
        super();
        this.weight = this.registerParameter('weight', shared ?? tf.zeros([cols, rows]), { transposed: true });
        this.scale = this.registerParameter('scale', tf.ones([rows]));
      }
    }

    it('loads checkpoint-layout tensors, transposing them, and gives them back from stateDict', async () => {
      const m = new Transposed(2, 3);
      expect(m.checkpointShapes()).toEqual({ weight: [2, 3], scale: [2] });
      expect(m.weight.shape).toEqual([3, 2]);
      const src = { weight: tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]), scale: tf.tensor1d([7, 8]) };
      await m.loadWeights(src);
      expect(Array.from(m.weight.dataSync())).toEqual([1, 4, 2, 5, 3, 6]);
      const state = m.stateDict();
      expect(state.weight.shape).toEqual([2, 3]);
      expect(Array.from(state.weight.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
      expect(Array.from(state.scale.dataSync())).toEqual([7, 8]);
      tf.dispose([...Object.values(src), ...Object.values(state)]);
      m.dispose();
    });

    it('reports a mis-shaped tensor in checkpoint shapes (a transposed tensor is mis-shaped)', async () => {
      const m = new Transposed(2, 3);
      const src = { weight: tf.zeros([3, 2]), scale: tf.zeros([2]) };
      const err = (await m.loadWeights(src).catch((e: unknown) => e)) as CheckpointError;
      expect(err).toBeInstanceOf(CheckpointError);
      expect(err.problems.map((p) => p.message)).toEqual(['weight: expected shape [2, 3], found [3, 2]']);
      tf.dispose(Object.values(src));
      m.dispose();
    });

    it('accepts only 2-D transposed parameters', () => {
      class Bad extends Module {
        constructor() {
          super();
          this.registerParameter('w', tf.zeros([2, 3, 4]), { transposed: true });
        }
      }
      expect(() => new Bad()).toThrow(ConfigError);
      expect(() => new Bad()).toThrow('registerParameter("w"): only a 2-D parameter can be stored transposed, found shape [2, 3, 4]');
    });

    it('shares a transposed variable between modules, loadable under either name; one layout or an error', async () => {
      class Tied extends Module {
        readonly a = this.registerModule('a', new Transposed(2, 3));
        readonly b = this.registerModule('b', new Transposed(2, 3, this.a.weight));
      }
      const m = new Tied();
      expect(m.checkpointShapes()).toEqual({ 'a.weight': [2, 3], 'a.scale': [2], 'b.scale': [2] });
      const src = { 'b.weight': tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]), 'a.scale': tf.ones([2]), 'b.scale': tf.ones([2]) };
      await m.loadWeights(src);
      expect(Array.from(m.a.weight.dataSync())).toEqual([1, 4, 2, 5, 3, 6]);
      expect(m.b.weight).toBe(m.a.weight);
      tf.dispose(Object.values(src));

      class Plain extends Module {
        constructor(v: tf.Variable) {
          super();
          this.registerParameter('weight', v); // untransposed: not the layout it was registered with
        }
      }
      expect(() => new Plain(m.a.weight)).toThrow(ConfigError);
      expect(() => new Plain(m.a.weight)).toThrow(/already registered transposed elsewhere, found untransposed; a shared variable must have one layout/);
      m.dispose();
    });

    it('stateDict gives tensors the caller owns: a snapshot, disposable without touching the model', async () => {
      const lin = new Linear(3, 2, { seed: 1 });
      const state = lin.stateDict();
      const before = Array.from(state.bias.dataSync());
      const zeros = tf.zeros([2]);
      lin.bias!.assign(zeros);
      zeros.dispose();
      expect(Array.from(state.bias.dataSync())).toEqual(before); // the clone kept the old values
      const count = tf.memory().numTensors;
      tf.dispose(Object.values(state));
      expect(tf.memory().numTensors).toBe(count - 2);
      expect(lin.weight.isDisposed).toBe(false);
      expect(Array.from(lin.bias!.dataSync())).toEqual([0, 0]);
      lin.dispose();
    });

    it('round-trips stateDict through safetensors and loadWeights byte for byte, a tied embedding included', async () => {
      class Tiny extends Module {
        readonly embed = this.registerModule('embed_tokens', new Embedding(10, 4, { seed: 1 }));
        readonly proj = this.registerModule('proj', new Linear(4, 6, { seed: 2 }));
        readonly head = this.registerModule('lm_head', new Linear(6, 10, { bias: false, seed: 3 }));
        readonly norm = this.registerParameter('norm', tf.randomNormal([4], 1, 0.1, 'float32', 4));
      }
      const a = new Tiny();
      const state = a.stateDict();
      expect(Object.fromEntries(Object.entries(state).map(([n, t]) => [n, t.shape]))).toEqual(a.checkpointShapes());
      expect(a.checkpointShapes()).toEqual({
        norm: [4],
        'embed_tokens.weight': [10, 4],
        'proj.weight': [6, 4],
        'proj.bias': [6],
        'lm_head.weight': [10, 6],
      });
      const bytes = await serializeSafetensors(state, { metadata: { format: 'pt' } });
      tf.dispose(Object.values(state));
      const file = SafetensorsFile.fromBuffer(bytes);
      expect(file.shape('proj.weight')).toEqual([6, 4]);
      const b = new Tiny();
      const counts = tf.memory().numTensors;
      await b.loadWeights(file);
      expect(tf.memory().numTensors).toBe(counts);
      await file.close();
      for (const [[na, va], [nb, vb]] of a.namedParameters().map((p, i) => [p, b.namedParameters()[i]] as const)) {
        expect(nb).toBe(na);
        expect(vb.shape).toEqual(va.shape);
        expect(Array.from(vb.dataSync())).toEqual(Array.from(va.dataSync()));
      }
      const again = b.stateDict();
      expect(await serializeSafetensors(again, { metadata: { format: 'pt' } })).toEqual(bytes);
      tf.dispose(Object.values(again));
      a.dispose();
      b.dispose();
    });
  });
});
