// PEFT format: save then load round-trips names and tensors bit for bit, the saved config has the fields PEFT
// reads, URLs load through fetch, and every kind of bad adapter is a typed error naming the field or tensor.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError, ConfigError, initBackend, SafetensorsFile, serializeSafetensors } from '@slmkit/core';
import { caseDir } from '@slmkit/fixtures';
import { fromPretrained, type PretrainedLM } from '@slmkit/models';
import {
  adaptedLayers,
  adapterNames,
  addAdapter,
  loadAdapter,
  policyFromPeftConfig,
  saveAdapter,
  serializeAdapter,
  setAdapter,
} from '../src/index.js';
import { maxAbsDiff, take } from './helpers.js';

const LORA = caseDir('adapters/lora_llama');
const DORA = caseDir('adapters/dora_llama');
const tmp = mkdtempSync(join(tmpdir(), 'slmkit-adapters-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Every tensor of a safetensors file: name -> [shape, values]. */
async function tensorsOf(path: string): Promise<Map<string, [number[], number[]]>> {
  const file = await SafetensorsFile.fromFile(path);
  const out = new Map<string, [number[], number[]]>();
  try {
    for (const name of file.names()) {
      const t = await file.read(name);
      out.set(name, [t.shape.slice(), Array.from(await take(t))]);
    }
  } finally {
    await file.close();
  }
  return out;
}

/** A copy of an adapter folder with its config edited and its tensors edited, in a fresh folder. */
async function variant(from: string, editConfig: (c: Record<string, unknown>) => void, editTensors?: (t: Map<string, tf.Tensor>) => void): Promise<string> {
  const dir = mkdtempSync(join(tmp, 'variant-'));
  const config = JSON.parse(readFileSync(join(from, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  editConfig(config);
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(config));
  const file = await SafetensorsFile.fromFile(join(from, 'adapter_model.safetensors'));
  const tensors = new Map<string, tf.Tensor>();
  for (const name of file.names()) tensors.set(name, await file.read(name));
  await file.close();
  editTensors?.(tensors);
  writeFileSync(join(dir, 'adapter_model.safetensors'), await serializeSafetensors(tensors, { metadata: { format: 'pt' } }));
  tf.dispose([...tensors.values()]);
  return dir;
}

describe('PEFT adapters in and out', () => {
  let model: PretrainedLM;
  beforeAll(async () => {
    await initBackend('cpu');
    model = await fromPretrained(caseDir('llama'));
  });
  afterAll(() => model?.dispose());

  for (const [label, source] of [['LoRA', LORA], ['DoRA', DORA]] as const) {
    it(`saves a loaded ${label} adapter with the same tensor names, shapes and values, and a config PEFT reads`, async () => {
      const name = `${label.toLowerCase()}_copy`;
      await loadAdapter(model, source, { name });
      const out = join(tmp, name);
      await saveAdapter(model, out, { name });
      const original = await tensorsOf(join(source, 'adapter_model.safetensors'));
      const saved = await tensorsOf(join(out, 'adapter_model.safetensors'));
      expect([...saved.keys()].sort()).toEqual([...original.keys()].sort());
      for (const [key, [shape, values]] of original) {
        expect(saved.get(key)![0]).toEqual(shape);
        expect(saved.get(key)![1]).toEqual(values); // bit for bit
      }
      const want = JSON.parse(readFileSync(join(source, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      const got = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort()); // every field PEFT v0.14 writes and reads
      for (const field of ['peft_type', 'r', 'lora_alpha', 'use_rslora', 'use_dora', 'lora_dropout', 'bias', 'task_type', 'fan_in_fan_out', 'rank_pattern', 'alpha_pattern', 'modules_to_save']) {
        expect(got[field], field).toEqual(want[field]);
      }
      expect((got.target_modules as string[]).slice().sort()).toEqual((want.target_modules as string[]).slice().sort());
      const header = new TextDecoder().decode(readFileSync(join(out, 'adapter_model.safetensors')).subarray(8, 200));
      expect(header).toContain('"__metadata__":{"format":"pt"}');

      // ...and loading the saved folder gives the same model output as the original.
      await loadAdapter(model, out, { name: `${name}_again` });
      const ids = tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32');
      setAdapter(model, name);
      const a = await take(model.forward(ids));
      setAdapter(model, `${name}_again`);
      const b = await take(model.forward(ids));
      ids.dispose();
      expect(maxAbsDiff(a, b)).toBe(0);
    });
  }

  it('writes per-layer ranks and alphas as rank_pattern / alpha_pattern and reads them back', async () => {
    addAdapter(model, 'patterned', {
      target: ['q_proj', 'v_proj'],
      rank: 4,
      alpha: 8,
      rankPattern: { 'model.layers.1.self_attn.v_proj': 2 },
      alphaPattern: { 'layers.0.self_attn.q_proj': 3 },
      seed: 7,
    });
    const { config } = await serializeAdapter(model, { name: 'patterned' });
    expect(config.r).toBe(4);
    expect(config.lora_alpha).toBe(8);
    expect(config.rank_pattern).toEqual({ 'model.layers.1.self_attn.v_proj': 2 });
    expect(config.alpha_pattern).toEqual({ 'model.layers.0.self_attn.q_proj': 3 });
    expect(config.target_modules).toEqual(['q_proj', 'v_proj']);
    const out = join(tmp, 'patterned');
    await saveAdapter(model, out, { name: 'patterned' });
    await loadAdapter(model, out, { name: 'patterned_again' });
    const ranks = adaptedLayers(model)
      .filter(([, l]) => l.adapter('patterned_again') != null)
      .map(([n, l]) => [n, l.adapter('patterned_again')!.rank, l.adapter('patterned_again')!.alpha]);
    expect(ranks).toEqual([
      ['model.layers.0.self_attn.q_proj', 4, 3],
      ['model.layers.0.self_attn.v_proj', 4, 8],
      ['model.layers.1.self_attn.q_proj', 4, 8],
      ['model.layers.1.self_attn.v_proj', 2, 8],
    ]);
  });

  it('loads from a URL through fetch', async () => {
    const files: Record<string, Uint8Array> = {
      '/a/adapter_config.json': readFileSync(join(LORA, 'adapter_config.json')),
      '/a/adapter_model.safetensors': readFileSync(join(LORA, 'adapter_model.safetensors')),
    };
    const fetchFn = (async (input: URL | RequestInfo) => {
      const body = files[new URL(String(input)).pathname];
      return body == null ? new Response('no', { status: 404 }) : new Response(new Uint8Array(body));
    }) as typeof fetch;
    const layers = await loadAdapter(model, new URL('https://example.test/a'), { name: 'from_url', fetch: fetchFn });
    expect(layers).toHaveLength(14);
    await expect(loadAdapter(model, 'https://example.test/b', { name: 'nothing', fetch: fetchFn })).rejects.toThrow(ConfigError);
  });

  describe('bad adapters are typed errors naming what is wrong, and leave the model unchanged', () => {
    const expectUnchanged = async (work: () => Promise<unknown>, kind: typeof ConfigError | typeof CheckpointError, message: RegExp): Promise<unknown> => {
      const names = adapterNames(model);
      const count = model.parameterCount();
      const before = tf.memory().numTensors;
      let error: unknown;
      try {
        await work();
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(kind);
      expect((error as Error).message).toMatch(message);
      expect(adapterNames(model)).toEqual(names);
      expect(model.parameterCount()).toEqual(count);
      expect(tf.memory().numTensors).toBe(before);
      return error;
    };

    it('a rank that disagrees with r', async () => {
      const dir = await variant(LORA, (c) => (c.r = 8));
      const e = (await expectUnchanged(() => loadAdapter(model, dir, { name: 'bad' }), CheckpointError, /lora_A\.weight: expected shape \[8, 48\] \(r = 8 from adapter_config\.json/)) as CheckpointError;
      expect(e.problems.filter((p) => p.kind === 'shape')).toHaveLength(28); // every A and B of 14 layers
    });

    it('a target module the model does not have', async () => {
      const dir = await variant(LORA, (c) => (c.target_modules = ['q_proj', 'qkv_proj']));
      const e = (await expectUnchanged(() => loadAdapter(model, dir, { name: 'bad' }), ConfigError, /target "qkv_proj" matches no module/)) as ConfigError;
      expect(e.details.field).toBe('target');
      expect(e.details.found).toBe('qkv_proj');
    });

    it('a target that is not a linear layer', async () => {
      const dir = await variant(LORA, (c) => (c.target_modules = ['mlp']));
      await expectUnchanged(() => loadAdapter(model, dir, { name: 'bad' }), ConfigError, /matches model\.layers\.0\.mlp, a GatedMLP; adapters go on Linear layers only/);
    });

    it('a missing tensor', async () => {
      const gone = 'base_model.model.model.layers.1.mlp.up_proj.lora_B.weight';
      const dir = await variant(LORA, () => undefined, (t) => {
        t.get(gone)!.dispose();
        t.delete(gone);
      });
      const e = (await expectUnchanged(() => loadAdapter(model, dir, { name: 'bad' }), CheckpointError, /layers\.1\.mlp\.up_proj\.lora_B\.weight: not in the adapter file/)) as CheckpointError;
      expect(e.problems).toEqual([expect.objectContaining({ kind: 'missing', name: gone })]);
    });

    it('a tensor of the wrong shape', async () => {
      const key = 'base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight';
      const dir = await variant(LORA, () => undefined, (t) => {
        t.get(key)!.dispose();
        t.set(key, tf.zeros([16, 4])); // k_proj maps 48 -> 24
      });
      await expectUnchanged(() => loadAdapter(model, dir, { name: 'bad' }), CheckpointError, /k_proj\.lora_B\.weight: expected shape \[24, 4\] .*k_proj maps 48 -> 24\), found \[16, 4\]/);
    });

    it('a tensor for a module the config does not target, and a stray name', async () => {
      const dir = await variant(LORA, (c) => (c.target_modules = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj']), (t) => {
        t.set('base_model.model.lm_head.bias', tf.zeros([3]));
      });
      const e = (await expectUnchanged(() => loadAdapter(model, dir, { name: 'bad' }), CheckpointError, /down_proj is not a layer that adapter_config\.json target_modules selects/)) as CheckpointError;
      expect(e.problems.map((p) => p.name)).toContain('base_model.model.lm_head.bias');
      expect(e.problems.every((p) => p.kind === 'unexpected')).toBe(true);
    });

    it('a DoRA magnitude without use_dora, and use_dora without magnitudes', async () => {
      await expectUnchanged(async () => loadAdapter(model, await variant(DORA, (c) => (c.use_dora = false)), { name: 'bad' }), CheckpointError, /a DoRA magnitude, but adapter_config\.json has use_dora false/);
      await expectUnchanged(async () => loadAdapter(model, await variant(LORA, (c) => (c.use_dora = true)), { name: 'bad' }), CheckpointError, /lora_magnitude_vector: not in the adapter file/);
    });

    it('unsupported PEFT options', async () => {
      const cases: [string, unknown, RegExp][] = [
        ['fan_in_fan_out', true, /fan_in_fan_out = true is not supported/],
        ['bias', 'lora_only', /bias = "lora_only" is not supported/],
        ['modules_to_save', ['lm_head'], /modules_to_save = \["lm_head"\] is not supported/],
        ['layers_to_transform', [0], /layers_to_transform = \[0\] is not supported/],
        ['lora_bias', true, /lora_bias = true is not supported/],
        ['peft_type', 'IA3', /peft_type must be "LORA"/],
        ['target_modules', null, /target_modules must be a non-empty list .*found null \(PEFT then picks defaults/],
        ['r', 0, /r must be a positive integer, found 0/],
        ['use_dora', 'yes', /use_dora must be a boolean/],
        ['rank_pattern', { q_proj: 2.5 }, /rank_pattern\["q_proj"\] must be a positive integer/],
      ];
      for (const [field, value, message] of cases) {
        const dir = await variant(LORA, (c) => (c[field] = value));
        const e = (await expectUnchanged(() => loadAdapter(model, dir, { name: 'bad' }), ConfigError, message)) as ConfigError;
        expect(e.details.field, field).toMatch(new RegExp(`^${field}`));
        expect(e.details.found, field).toEqual(field === 'rank_pattern' ? 2.5 : value);
      }
    });

    it('a missing folder, and a name already in use', async () => {
      await expectUnchanged(() => loadAdapter(model, join(tmp, 'nowhere'), { name: 'bad' }), ConfigError, /adapter_config\.json: no such file/);
      await loadAdapter(model, LORA, { name: 'taken' });
      await expectUnchanged(() => loadAdapter(model, LORA, { name: 'taken' }), ConfigError, /already has an adapter named "taken"/);
      await expectUnchanged(() => loadAdapter(model, LORA, { name: 'no-dashes' }), ConfigError, /adapter name must match/);
    });

    it('a config file that is not a LoRA config object', () => {
      expect(() => policyFromPeftConfig({ peft_type: 'LORA', r: 4, target_modules: '(' })).toThrow(/not a valid regular expression/);
      expect(policyFromPeftConfig({ peft_type: 'LORA', r: 4, target_modules: '.*\\.(q|v)_proj' }).target).toBeInstanceOf(RegExp);
    });
  });

  it('loads into a folder copy of the fixture in a nested path (mkdir), and saves the active adapter by default', async () => {
    setAdapter(model, 'taken');
    const out = join(tmp, 'deep', 'er', 'folder');
    mkdirSync(join(tmp, 'deep'), { recursive: true });
    await saveAdapter(model, out);
    const saved = await tensorsOf(join(out, 'adapter_model.safetensors'));
    expect(saved.size).toBe(28);
  });
});
