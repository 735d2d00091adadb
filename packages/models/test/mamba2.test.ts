// The mamba2 family against the logits `transformers` computed for its tiny fixture (chunk size 8 < prompt 16, two
// groups, the time_step_min clamp active): one full forward with every scan implementation, then 8 greedy steps
// through the recurrent state, on every backend under test; config errors; no leaked tensors.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '@slmkit/core';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { ssdScanLastRun } from '@slmkit/ssm';
import { Mamba2LM, fromPretrained, mamba2ConfigFromHF } from '../src/index.js';
import { BACKENDS, expectPrefillThenSteps, expectReferenceGeneration, maxAbsDiff, take, tolerance, useBackend } from './helpers.js';

const measured: string[] = [];
const idsOf = (rows: number[][]): tf.Tensor2D => tf.tensor2d(rows, undefined, 'int32');
afterAll(() => console.log(`mamba2 fixture max abs diffs:\n${measured.join('\n')}`));

const fixture = loadCase('mamba2');
const [B, L, V] = fixture.logitsShape as [number, number, number];

describe.each(BACKENDS)('mamba2 on %s', (backend) => {
  let model: Mamba2LM;

  beforeAll(async () => {
    await useBackend(backend);
    const loaded = await fromPretrained(caseDir('mamba2'));
    expect(loaded).toBeInstanceOf(Mamba2LM);
    model = loaded as Mamba2LM;
  });
  afterAll(() => model?.dispose());

  // SwiftShader is slow: the naive scan (one op chain per step) is checked on the CPU backends only.
  const impls = backend === 'webgpu' ? (['fused', 'chunked'] as const) : (['fused', 'chunked', 'naive'] as const);
  it.each(impls)('matches the reference logits of one full forward (%s scan)', async (implementation) => {
    const ids = tf.tensor2d(fixture.inputIds, [B, L], 'int32');
    const before = tf.memory().numTensors;
    const logits = model.forward(ids, { implementation });
    expect(ssdScanLastRun()).toEqual({ op: 'SlmkitSsdScan', backend, implementation });
    expect(logits.shape).toEqual([B, L, V]);
    const d = maxAbsDiff(await take(logits), fixture.logits);
    ids.dispose();
    expect(tf.memory().numTensors).toBe(before - 1);
    measured.push(`${backend} ${implementation} logits: ${d.toExponential(2)}`);
    expect(d).toBeLessThanOrEqual(tolerance(backend));
  });

  it('generates the reference greedy tokens with the reference step logits through the recurrent state', async () => {
    const worst = await expectReferenceGeneration(model, fixture, backend);
    measured.push(`${backend} step logits: ${worst.toExponential(2)}`);
  });

  it('prefill of L − 3 tokens then 3 single steps equals one forward of L', async () => {
    const cache = await expectPrefillThenSteps(model, fixture, backend);
    expect(cache.layers[0].ssm?.shape).toEqual([B, 6, 16, 8]);
    cache.dispose();
  });

  it('a training step leaves no tensors behind and reaches every parameter', async () => {
    const ids = idsOf(fixture.inputIds.map((r) => r.slice(0, 5)));
    const before = tf.memory().numTensors;
    const vars = model.namedParameters().map(([, v]) => v);
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(model.forward(ids))) as tf.Scalar, vars);
    const names = Object.keys(grads);
    const largest = tf.tidy(() => tf.stack(names.map((n) => tf.max(tf.abs(grads[n]))))); // [params]
    const sizes = await largest.data(); // read asynchronously: webgpu in Node has no synchronous read
    expect(names.filter((_, i) => !(sizes[i] > 0))).toEqual([]);
    tf.dispose([value, largest, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(before);
    ids.dispose();
  });
});

describe('mamba2 config', () => {
  const base = { model_type: 'mamba2', hidden_size: 48, num_heads: 6, head_dim: 16, n_groups: 2, state_size: 8 };
  it('maps the fixture config', () => {
    const c = mamba2ConfigFromHF(fixture.config as Record<string, unknown>);
    expect(c).toMatchObject({ numHeads: 6, headDim: 16, nGroups: 2, stateSize: 8, chunkSize: 8, timeStepMin: 0.001, tieWordEmbeddings: false });
  });
  it('rejects bad configs naming the field, what was expected and what was found', () => {
    expect(() => mamba2ConfigFromHF({ ...base, head_dim: 10 })).toThrow(ConfigError);
    expect(() => mamba2ConfigFromHF({ ...base, head_dim: 10 })).toThrow(/head_dim must be expand · hidden_size \/ num_heads = 16.*found 10/);
    expect(() => mamba2ConfigFromHF({ ...base, n_groups: 4 })).toThrow(/n_groups must be a divisor of num_heads \(6\), found 4/);
    expect(() => mamba2ConfigFromHF({ ...base, state_size: 0 })).toThrow(/state_size must be a positive integer, found 0/);
    expect(() => mamba2ConfigFromHF({ ...base, time_step_min: -1 })).toThrow(/time_step_min/);
    expect(() => new Mamba2LM({ ...mamba2ConfigFromHF(base), nGroups: 4 })).toThrow(/nGroups must divide numHeads \(6\), found 4/);
    let caught: unknown;
    try {
      mamba2ConfigFromHF({ ...base, n_groups: 4 });
    } catch (e) {
      caught = e;
    }
    expect((caught as ConfigError).details).toEqual({ field: 'n_groups', expected: 'a divisor of num_heads (6)', found: 4 });
  });
});
