// The hymba family: config.json mapping (and what it refuses), the Hymba-1.5B preset's parameter count from the
// published shapes, and on the fixture: the parameter count of the checkpoint, and the default decode rule
// (cached decoding equals the full forward, unlike NVIDIA's decode path).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '@slmkit/core';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { countHybridParameters } from '@slmkit/hybrid';
import { HybridLM, fromPretrained, hymba1_5b, hymbaConfigFromHF } from '../src/index.js';
import { maxAbsDiff, take, useBackend } from './helpers.js';

const dir = caseDir('hymba');
const json = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { num_parameters_stored: number; kv_producer_of_layer: Record<string, number> };

beforeAll(async () => {
  await useBackend('cpu');
});

describe('hymbaConfigFromHF', () => {
  it('maps the fixture config: global and windowed layers, KV groups, meta tokens, value heads, ntk RoPE', () => {
    const c = hymbaConfigFromHF(json);
    expect(c.family).toBe('hymba');
    expect(c.metaTokens).toBe(4);
    expect(c.attention).toMatchObject({ numHeads: 4, numKVHeads: 2, headDim: 16, valueHeadDim: 32, slidingWindow: 6 });
    expect(c.attention!.rotary).toMatchObject({ headDim: 16, base: 10000, scaling: { type: 'ntk', factor: (2 * 128) / 64 - 1 } });
    expect(c.mamba).toMatchObject({ intermediateSize: 128, stateSize: 8, convKernel: 4, timeStepRank: 4, dtBCNorm: { eps: 1e-6, weight: true } });
    expect(c.layers.map((l) => l.window === true)).toEqual([false, true, true, true, true, false]);
    // kv_producer_of_layer from meta.json: a layer reads another's keys and values iff its producer is not itself.
    expect(c.layers.map((l, i) => l.kvFrom ?? i)).toEqual([0, 1, 2, 3, 4, 5].map((i) => meta.kv_producer_of_layer[String(i)]));
    expect(c.tieWordEmbeddings).toBe(true);
  });

  it('refuses what it does not run, naming the field', () => {
    const refused = (patch: Record<string, unknown>, field: string) => {
      try {
        hymbaConfigFromHF({ ...json, ...patch });
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        expect((e as ConfigError).details.field).toBe(field);
      }
    };
    refused({ num_experts: 2 }, 'num_experts');
    refused({ kq_norm: 'rms' }, 'kq_norm');
    refused({ layer_type: ['h', 'h', 'a', 'h', 'h', 'h'] }, 'layer_type[2]');
    refused({ kv_reuse_group: [[1, 2], [2, 3]] }, 'kv_reuse_group[1][0]');
    refused({ global_attn_idx: [0, 9] }, 'global_attn_idx[1]');
    refused({ attn_window_size: 8 }, 'attn_window_size');
    refused({ model_type: 'jamba' }, 'model_type');
  });
});

describe('hymba1_5b', () => {
  it('counts the parameters of the published shapes without allocating them', () => {
    const c = hymba1_5b();
    expect(c.layers.filter((l) => l.kvFrom == null)).toHaveLength(17); // the spec: KV stored for 17 of 32 layers
    // By hand from the spec: d 1600, H 25 × 64, Hkv 5, I 3200 (value heads 128), N 16, R 100, K 4, FFN 5504,
    // vocab 32001 tied, 128 meta tokens.
    const d = 1600;
    const I = 3200;
    const ssm = I * 4 + I + I * (100 + 32) + 100 * I + I + I * 16 + I + (100 + 16 + 16) + 2 * I + I * d;
    const producer = d * (1600 + 5 * 64 + 5 * 128 + 2 * I) + ssm;
    const consumer = d * (1600 + 2 * I) + ssm;
    const perLayer = 2 * d + 3 * d * 5504;
    const expected = 32001 * d + 128 * d + d + 17 * producer + 15 * consumer + 32 * perLayer;
    expect(countHybridParameters(c).total).toBe(expected);
  });
});

describe('the hymba fixture', () => {
  it("builds exactly the checkpoint's parameters, counted from the config alone", async () => {
    const model = (await fromPretrained(dir)) as HybridLM;
    expect(model.parameterCount().total).toBe(meta.num_parameters_stored);
    expect(countHybridParameters(model.config).total).toBe(meta.num_parameters_stored);
    model.dispose();
  });

  it('decodes with the default rule exactly as a full forward, which NVIDIA\'s decode path does not', async () => {
    const fixture = loadCase('hymba');
    const model = (await fromPretrained(dir)) as HybridLM;
    expect(model.config.hymbaDecodeWindow).toBeUndefined();
    const gen = fixture.expected.generation as { sequences: number[][]; max_new_tokens: number };
    const [B, L, V] = fixture.logitsShape as [number, number, number];
    const steps = gen.max_new_tokens;
    const out = await model.generate(fixture.inputIds, { maxNewTokens: steps, stopTokens: [], returnLogits: true });
    // The full forward over the generated sequences, at the positions that predicted each new token.
    const ids = tf.tensor2d(out.sequences, [B, L + steps], 'int32');
    const full = await take(model.forward(ids));
    ids.dispose();
    let vsFull = 0;
    let vsNvidia = 0;
    out.stepLogits!.forEach((s, step) => {
      for (let b = 0; b < B; b++) {
        const at = (b * (L + steps) + L - 1 + step) * V;
        vsFull = Math.max(vsFull, maxAbsDiff(s.subarray(b * V, (b + 1) * V), full.subarray(at, at + V)));
        const ref = fixture.genLogits!.subarray((b * steps + step) * V, (b * steps + step + 1) * V);
        vsNvidia = Math.max(vsNvidia, maxAbsDiff(s.subarray(b * V, (b + 1) * V), ref));
      }
    });
    expect(vsFull).toBeLessThan(1e-4);
    expect(vsNvidia).toBeGreaterThan(0.1); // NVIDIA's decode window is one position shorter
    model.dispose();
  });
});
