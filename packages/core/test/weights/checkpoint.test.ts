import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { caseDir, listCases } from '@slmkit/fixtures';
import { CheckpointError, ConfigError } from '../../src/errors.js';
import { Checkpoint, openCheckpoint, readConfigJson } from '../../src/weights/checkpoint.js';
import { SafetensorsFile, serializeSafetensors } from '../../src/weights/safetensors.js';
import { caught, rawHeader, tempDir } from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const INDEX = 'model.safetensors.index.json';
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';

/** The values every sharded test expects. */
const VALUES: Record<string, [number[], number[]]> = {
  'embed.weight': [[1, 2, 3, 4, 5, 6], [3, 2]],
  'layers.0.weight': [[-1, 0.5], [2]],
  'layers.1.weight': [[7, 8, 9], [1, 3]],
  'norm.weight': [[0.25], []],
};

async function shardBytes(names: string[]): Promise<Uint8Array> {
  const tensors = Object.fromEntries(names.map((n) => [n, tf.tensor(VALUES[n]![0], VALUES[n]![1])]));
  const bytes = await serializeSafetensors(tensors, { metadata: { format: 'pt' } });
  tf.dispose(Object.values(tensors));
  return bytes;
}

/**
 * A sharded checkpoint in a fresh folder: shard 1 holds embed + layers.0, shard 2 layers.1 + norm; `change` can
 * rewrite the weight map or the shards before they are written.
 */
async function writeSharded(
  change: (files: { weightMap: Record<string, string>; shard1: string[]; shard2: string[] }) => void = () => {},
): Promise<string> {
  const dir = tempDir();
  const files = {
    weightMap: {
      'embed.weight': SHARD1,
      'layers.0.weight': SHARD1,
      'layers.1.weight': SHARD2,
      'norm.weight': SHARD2,
    } as Record<string, string>,
    shard1: ['embed.weight', 'layers.0.weight'],
    shard2: ['layers.1.weight', 'norm.weight'],
  };
  change(files);
  writeFileSync(join(dir, SHARD1), await shardBytes(files.shard1));
  writeFileSync(join(dir, SHARD2), await shardBytes(files.shard2));
  writeFileSync(join(dir, INDEX), JSON.stringify({ metadata: { total_size: 48 }, weight_map: files.weightMap }, null, 2));
  return dir;
}

async function expectAllValues(ckpt: Checkpoint): Promise<void> {
  expect(ckpt.names().sort()).toEqual(Object.keys(VALUES).sort());
  const before = tf.memory().numTensors;
  for (const [name, [values, shape]] of Object.entries(VALUES)) {
    expect(ckpt.shape(name)).toEqual(shape);
    expect(ckpt.dtype(name)).toBe('F32');
    const t = await ckpt.read(name);
    expect(t.shape).toEqual(shape);
    expect(Array.from(await t.data())).toEqual(values);
    t.dispose();
  }
  expect(tf.memory().numTensors).toBe(before);
}

describe('openCheckpoint on the fixtures', () => {
  for (const name of listCases()) {
    it(`${name}: a folder opens its model.safetensors`, async () => {
      const dir = caseDir(name);
      const ckpt = await openCheckpoint(dir);
      const raw = rawHeader(readFileSync(join(dir, 'model.safetensors')));
      expect(ckpt.names().sort()).toEqual(Object.keys(raw.entries).sort());
      for (const [n, entry] of Object.entries(raw.entries)) expect(ckpt.shape(n)).toEqual(entry.shape);
      expect(ckpt.files.map((f) => f.label)).toEqual([join(dir, 'model.safetensors')]);
      await ckpt.close();
    });
  }

  it('opens a .safetensors path and a file: URL', async () => {
    const path = join(caseDir('llama'), 'model.safetensors');
    for (const location of [path, pathToFileURL(path), pathToFileURL(path).href]) {
      const ckpt = await openCheckpoint(location);
      expect(ckpt.has('model.embed_tokens.weight')).toBe(true);
      const t = await ckpt.read('model.embed_tokens.weight');
      expect(t.shape).toEqual(ckpt.shape('model.embed_tokens.weight'));
      t.dispose();
      await ckpt.close();
    }
  });
});

describe('sharded checkpoints', () => {
  it('opens by folder and by index path, reading every tensor from its shard', async () => {
    const dir = await writeSharded();
    for (const location of [dir, join(dir, INDEX)]) {
      const ckpt = await openCheckpoint(location);
      expect(ckpt.files.map((f) => f.label)).toEqual([join(dir, SHARD1), join(dir, SHARD2)]);
      await expectAllValues(ckpt);
      await ckpt.close();
      await ckpt.close();
      await expect(ckpt.read('norm.weight')).rejects.toThrow(/is closed/);
    }
  });

  it('prefers the index when a folder has both', async () => {
    const dir = await writeSharded();
    writeFileSync(join(dir, 'model.safetensors'), await shardBytes(['norm.weight']));
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.files.length).toBe(2);
    await ckpt.close();
  });

  it('fails on a missing shard file, naming it', async () => {
    const dir = await writeSharded((f) => (f.weightMap['norm.weight'] = 'model-00003-of-00003.safetensors'));
    const e = (await caught(() => openCheckpoint(dir))) as CheckpointError;
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toMatch(/shard file "model-00003-of-00003.safetensors" listed in .*model.safetensors.index.json cannot be opened/);
    expect(e.problems[0]).toMatchObject({ kind: 'missing', name: 'model-00003-of-00003.safetensors' });
  });

  it('fails on a tensor listed in the index but absent from its shard', async () => {
    const dir = await writeSharded((f) => (f.shard2 = ['layers.1.weight']));
    const e = (await caught(() => openCheckpoint(dir))) as CheckpointError;
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toMatch(
      /invalid sharded checkpoint .*: tensor "norm.weight" is listed in the index under "model-00002-of-00002.safetensors" but that file does not hold it/,
    );
    expect(e.problems).toEqual([expect.objectContaining({ kind: 'missing', name: 'norm.weight' })]);
  });

  it('fails on a tensor stored in two shards', async () => {
    const dir = await writeSharded((f) => f.shard2.push('embed.weight'));
    const e = (await caught(() => openCheckpoint(dir))) as CheckpointError;
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toMatch(/tensor "embed.weight" is stored in two files: .*00001-of-00002.safetensors and .*00002-of-00002.safetensors/);
    expect(e.problems).toEqual([expect.objectContaining({ kind: 'format', name: 'embed.weight' })]);
  });

  it('keeps tensors a shard holds beyond the index', async () => {
    const dir = await writeSharded((f) => delete f.weightMap['norm.weight']);
    const ckpt = await openCheckpoint(dir);
    await expectAllValues(ckpt);
    await ckpt.close();
  });

  it('fails on a malformed index', async () => {
    const cases: [string, RegExp, string][] = [
      ['{"weight_map": ', /invalid checkpoint index .*: not valid JSON/, 'index'],
      ['{"metadata": {}}', /"weight_map" must be an object mapping tensor names to shard files, found nothing/, 'weight_map'],
      ['{"weight_map": [1]}', /"weight_map" must be an object .*found \[1\]/, 'weight_map'],
      ['{"weight_map": {"a": "../../etc/x.safetensors"}}', /weight_map\["a"\] must be a file name in the checkpoint folder, found "..\/..\/etc\/x.safetensors"/, 'a'],
      ['{"weight_map": {"a": 3}}', /weight_map\["a"\] must be a file name/, 'a'],
    ];
    for (const [text, message, name] of cases) {
      const dir = tempDir();
      writeFileSync(join(dir, INDEX), text);
      const e = (await caught(() => openCheckpoint(dir))) as CheckpointError;
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e.message).toMatch(message);
      expect(e.problems[0]).toMatchObject({ kind: 'format', name });
    }
  });

  it('passes on a malformed shard as that file’s format error', async () => {
    const dir = await writeSharded();
    writeFileSync(join(dir, SHARD2), new Uint8Array([1, 2, 3]));
    const e = (await caught(() => openCheckpoint(dir))) as CheckpointError;
    expect(e.message).toMatch(/invalid safetensors file .*model-00002-of-00002.safetensors: file is 3 bytes/);
    expect(e.problems[0]!.kind).toBe('format');
  });

  it('fails on a folder with no checkpoint, and a missing location', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'adapter_model.safetensors'), await shardBytes(['norm.weight']));
    const e = (await caught(() => openCheckpoint(dir))) as CheckpointError;
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toMatch(/has neither model.safetensors.index.json nor model.safetensors; it has adapter_model.safetensors/);
    const missing = (await caught(() => openCheckpoint(join(dir, 'nope')))) as CheckpointError;
    expect(missing).toBeInstanceOf(CheckpointError);
    expect(missing.message).toMatch(/no checkpoint at .*nope: no such file or folder/);
    expect(missing.problems[0]!.kind).toBe('missing');
  });

  it('Checkpoint combines open files and rejects a name in two of them', async () => {
    const a = SafetensorsFile.fromBuffer(await shardBytes(['embed.weight', 'layers.0.weight']), { name: 'a' });
    const b = SafetensorsFile.fromBuffer(await shardBytes(['layers.1.weight', 'norm.weight']), { name: 'b' });
    const ckpt = new Checkpoint([a, b]);
    await expectAllValues(ckpt);
    const unknown = (await caught(() => ckpt.read('nope'))) as CheckpointError;
    expect(unknown.message).toMatch(/tensor "nope" is not in the checkpoint \(a, b\)/);
    expect(unknown.problems[0]!.kind).toBe('missing');
    const c = SafetensorsFile.fromBuffer(await shardBytes(['norm.weight']), { name: 'c' });
    expect(() => new Checkpoint([a, b, c])).toThrow(/tensor "norm.weight" is stored in two files: b and c/);
  });
});

describe('checkpoints over HTTP', () => {
  /** A fake `fetch` serving these files; anything else is a 404. Records every URL asked for. */
  function server(files: Record<string, Uint8Array | string>): { fetch: typeof fetch; asked: string[] } {
    const asked: string[] = [];
    const fakeFetch = async (input: RequestInfo | URL): Promise<Response> => {
      const url = input instanceof Request ? input.url : String(input);
      asked.push(url);
      const body = files[url];
      if (body == null) return new Response('not found', { status: 404, statusText: 'Not Found' });
      return new Response(typeof body === 'string' ? body : new Uint8Array(body));
    };
    return { fetch: fakeFetch as typeof fetch, asked };
  }

  it('a folder URL with an index opens every shard', async () => {
    const base = 'https://hub.example/org/model/resolve/main/';
    const { fetch, asked } = server({
      [base + INDEX]: JSON.stringify({ weight_map: { 'embed.weight': SHARD1, 'layers.0.weight': SHARD1, 'layers.1.weight': SHARD2, 'norm.weight': SHARD2 } }),
      [base + SHARD1]: await shardBytes(['embed.weight', 'layers.0.weight']),
      [base + SHARD2]: await shardBytes(['layers.1.weight', 'norm.weight']),
    });
    const ckpt = await openCheckpoint(base.slice(0, -1), { fetch }); // no trailing slash
    await expectAllValues(ckpt);
    expect(asked).toEqual([base + INDEX, base + SHARD1, base + SHARD2]);
    expect(ckpt.files.map((f) => f.label)).toEqual([base + SHARD1, base + SHARD2]);
    const byIndex = await openCheckpoint(base + INDEX, { fetch });
    await expectAllValues(byIndex);
  });

  it('a folder URL without an index falls back to model.safetensors on 404', async () => {
    const base = 'https://hub.example/tiny/';
    const { fetch, asked } = server({ [base + 'model.safetensors']: await shardBytes(Object.keys(VALUES)) });
    const ckpt = await openCheckpoint(new URL(base), { fetch });
    await expectAllValues(ckpt);
    expect(asked).toEqual([base + INDEX, base + 'model.safetensors']);
    const direct = await openCheckpoint(base + 'model.safetensors', { fetch });
    expect(direct.names().length).toBe(4);
  });

  it('fails with a CheckpointError on a missing shard, a server error, or no checkpoint at all', async () => {
    const base = 'https://hub.example/broken/';
    const { fetch } = server({ [base + INDEX]: JSON.stringify({ weight_map: { x: SHARD1 } }) });
    const shard = (await caught(() => openCheckpoint(base, { fetch }))) as CheckpointError;
    expect(shard.message).toMatch(/shard file "model-00001-of-00002.safetensors" listed in https:\/\/hub.example\/broken\/model.safetensors.index.json cannot be opened \(.*HTTP 404/);
    expect(shard.problems[0]).toMatchObject({ kind: 'missing', name: SHARD1 });

    const failing = (async () => new Response('oops', { status: 500 })) as typeof fetch;
    const e500 = (await caught(() => openCheckpoint(base, { fetch: failing }))) as CheckpointError;
    expect(e500.message).toMatch(/cannot fetch https:\/\/hub.example\/broken\/model.safetensors.index.json: HTTP 500/);

    const offline = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    const eNet = (await caught(() => openCheckpoint(base, { fetch: offline }))) as CheckpointError;
    expect(eNet).toBeInstanceOf(CheckpointError);
    expect(eNet.message).toMatch(/cannot fetch .*: fetch failed/);

    const none = (await caught(() => openCheckpoint('https://hub.example/empty/', { fetch }))) as CheckpointError;
    expect(none.message).toMatch(/cannot fetch https:\/\/hub.example\/empty\/model.safetensors: HTTP 404/);
  });
});

describe('readConfigJson', () => {
  it('reads config.json from a folder, a file in it, or the JSON path', async () => {
    const dir = caseDir('llama');
    for (const location of [dir, join(dir, 'model.safetensors'), join(dir, 'config.json'), pathToFileURL(dir)]) {
      const config = await readConfigJson(location);
      expect(config.model_type).toBe('llama');
    }
  });

  it('reads config.json over HTTP', async () => {
    const fakeFetch = (async (input: RequestInfo | URL) =>
      String(input) === 'https://hub.example/m/config.json'
        ? new Response('{"model_type": "qwen2"}')
        : new Response('', { status: 404 })) as typeof fetch;
    for (const location of ['https://hub.example/m', 'https://hub.example/m/', 'https://hub.example/m/model.safetensors', 'https://hub.example/m/config.json']) {
      expect((await readConfigJson(location, { fetch: fakeFetch })).model_type).toBe('qwen2');
    }
    await expect(readConfigJson('https://hub.example/other/', { fetch: fakeFetch })).rejects.toThrow(ConfigError);
  });

  it('fails with a ConfigError on a missing file, invalid JSON, or a non-object', async () => {
    const dir = tempDir();
    const missing = (await caught(() => readConfigJson(dir))) as ConfigError;
    expect(missing).toBeInstanceOf(ConfigError);
    expect(missing.message).toMatch(/cannot read .*config.json: no such file/);
    writeFileSync(join(dir, 'config.json'), '{"hidden_size": 64,');
    const invalid = (await caught(() => readConfigJson(dir))) as ConfigError;
    expect(invalid).toBeInstanceOf(ConfigError);
    expect(invalid.message).toMatch(/config.json is not valid JSON/);
    expect(invalid.details.field).toBe('config.json');
    writeFileSync(join(dir, 'config.json'), '[1, 2]');
    await expect(readConfigJson(dir)).rejects.toThrow(/must hold a JSON object, found an array/);
  });
});
