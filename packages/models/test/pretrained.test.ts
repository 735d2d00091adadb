// fromPretrained: strict loading with one CheckpointError listing every problem, tied and fused tensors, sharded
// checkpoints, and typed errors for a bad config.json.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { CheckpointError, ConfigError, openCheckpoint, serializeSafetensors } from '@slmkit/core';
import { CausalLM, configFromHF, fromPretrained } from '../src/index.js';
import { maxAbsDiff, take, useBackend } from './helpers.js';

/** Every tensor of a fixture checkpoint, read into memory (the caller disposes them). */
async function readTensors(family: string): Promise<Map<string, tf.Tensor>> {
  const ckpt = await openCheckpoint(caseDir(family));
  const out = new Map<string, tf.Tensor>();
  for (const name of ckpt.names()) out.set(name, await ckpt.read(name));
  await ckpt.close();
  return out;
}

/** A checkpoint folder with the fixture's config.json (optionally edited) and the given tensors. */
async function writeFolder(family: string, tensors: Map<string, tf.Tensor>, editConfig?: (c: Record<string, unknown>) => void): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `slmkit-${family}-`));
  const config = JSON.parse(await readFile(join(caseDir(family), 'config.json'), 'utf8')) as Record<string, unknown>;
  editConfig?.(config);
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  await writeFile(join(dir, 'model.safetensors'), await serializeSafetensors(tensors, { metadata: { format: 'pt' } }));
  return dir;
}

describe('fromPretrained', () => {
  const dirs: string[] = [];
  beforeAll(async () => {
    await useBackend('cpu');
  });
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('names every parameter as the checkpoint does, and loads every tensor of each family', async () => {
    for (const family of ['llama', 'mistral', 'qwen2', 'gemma', 'phi', 'phi3', 'stablelm']) {
      const ckpt = await openCheckpoint(caseDir(family));
      const stored = ckpt.names().sort();
      await ckpt.close();
      const model = await fromPretrained(caseDir(family));
      expect(model.namedParameters().map(([n]) => n).sort(), family).toEqual(stored);
      model.dispose();
    }
  });

  it('ties the head to the embeddings (no lm_head.weight) for qwen2 and gemma', async () => {
    for (const family of ['qwen2', 'gemma']) {
      const model = await fromPretrained(caseDir(family));
      expect(model.lmHead).toBeUndefined();
      expect(model.namedParameters().some(([n]) => n.startsWith('lm_head'))).toBe(false);
      model.dispose();
    }
  });

  it('loads Phi-3 fused tensors into fused parameters and Phi names as Hugging Face does', async () => {
    const phi3 = await fromPretrained(caseDir('phi3'));
    const names3 = phi3.namedParameters().map(([n]) => n);
    expect(names3).toContain('model.layers.0.self_attn.qkv_proj.weight');
    expect(names3).toContain('model.layers.0.mlp.gate_up_proj.weight');
    expect(names3.some((n) => n.includes('q_proj') || n.includes('gate_proj'))).toBe(false);
    phi3.dispose();
    const phi = await fromPretrained(caseDir('phi'));
    const names = phi.namedParameters().map(([n]) => n);
    for (const n of ['model.final_layernorm.bias', 'model.layers.1.self_attn.dense.bias', 'model.layers.0.mlp.fc1.weight', 'lm_head.bias']) {
      expect(names).toContain(n);
    }
    expect(names.some((n) => n.includes('post_attention_layernorm'))).toBe(false);
    phi.dispose();
  });

  it('reports every missing, unexpected and mis-shaped tensor in one CheckpointError, leaving nothing behind', async () => {
    const tensors = await readTensors('llama');
    tensors.get('model.layers.1.mlp.up_proj.weight')!.dispose();
    tensors.delete('model.layers.1.mlp.up_proj.weight');
    tensors.get('model.norm.weight')!.dispose();
    tensors.delete('model.norm.weight');
    tensors.set('model.layers.0.self_attn.rotary_emb.inv_freq', tf.zeros([6]));
    const q = tensors.get('model.layers.0.self_attn.q_proj.weight')!;
    tensors.set('model.layers.0.self_attn.q_proj.weight', tf.zeros([q.shape[0] - 1, q.shape[1] as number]));
    q.dispose();
    const dir = await writeFolder('llama', tensors);
    dirs.push(dir);
    tf.dispose([...tensors.values()]);

    const before = tf.memory().numTensors;
    const error = await fromPretrained(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    const problems = (error as CheckpointError).problems.map((p) => `${p.kind} ${p.name}`).sort();
    expect(problems).toEqual([
      'missing model.layers.1.mlp.up_proj.weight',
      'missing model.norm.weight',
      'shape model.layers.0.self_attn.q_proj.weight',
      'unexpected model.layers.0.self_attn.rotary_emb.inv_freq',
    ]);
    expect((error as Error).message).toMatch(/expected shape \[48, 48\], found \[47, 48\]/);
    expect(tf.memory().numTensors).toBe(before); // the half-built model was disposed
  });

  it('rejects an lm_head.weight in a checkpoint whose config ties the embeddings', async () => {
    const tensors = await readTensors('qwen2');
    tensors.set('lm_head.weight', tensors.get('model.embed_tokens.weight')!.clone());
    const dir = await writeFolder('qwen2', tensors);
    dirs.push(dir);
    tf.dispose([...tensors.values()]);
    const error = await fromPretrained(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect((error as CheckpointError).problems.map((p) => `${p.kind} ${p.name}`)).toEqual(['unexpected lm_head.weight']);
  });

  it('gives a ConfigError naming model_type for an unknown family, and the field for a bad one', async () => {
    const tensors = await readTensors('llama');
    const unknown = await writeFolder('llama', tensors, (c) => (c.model_type = 'gpt_neox'));
    const missing = await writeFolder('llama', tensors, (c) => delete c.hidden_size);
    const badHeads = await writeFolder('llama', tensors, (c) => (c.num_key_value_heads = 3));
    dirs.push(unknown, missing, badHeads);
    tf.dispose([...tensors.values()]);
    const e1 = await fromPretrained(unknown).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(ConfigError);
    expect((e1 as ConfigError).details.field).toBe('model_type');
    expect((e1 as Error).message).toMatch(/"gpt_neox"/);
    const e2 = await fromPretrained(missing).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(ConfigError);
    expect((e2 as ConfigError).details.field).toBe('hidden_size');
    const e3 = await fromPretrained(badHeads).catch((e: unknown) => e);
    expect((e3 as ConfigError).details.field).toBe('num_key_value_heads');
    expect((e3 as Error).message).toMatch(/divisor of num_attention_heads \(4\), found 3/);
  });

  it('gives a ConfigError when config.json is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'slmkit-empty-'));
    dirs.push(dir);
    await expect(fromPretrained(dir)).rejects.toBeInstanceOf(ConfigError);
  });

  it('loads a sharded checkpoint (model.safetensors.index.json) to the same logits', async () => {
    const tensors = await readTensors('phi3');
    const dir = await mkdtemp(join(tmpdir(), 'slmkit-sharded-'));
    dirs.push(dir);
    const names = [...tensors.keys()];
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeFile(join(dir, file), await serializeSafetensors(new Map(shard.map((n) => [n, tensors.get(n)!]))));
      for (const n of shard) weightMap[n] = file;
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    await writeFile(join(dir, 'config.json'), await readFile(join(caseDir('phi3'), 'config.json'), 'utf8'));
    tf.dispose([...tensors.values()]);

    const fixture = loadCase('phi3');
    const model = await fromPretrained(dir);
    const ids = tf.tensor2d(fixture.inputIds, undefined, 'int32');
    const logits = await take(model.forward(ids));
    ids.dispose();
    model.dispose();
    expect(maxAbsDiff(logits, fixture.logits)).toBeLessThanOrEqual(1e-4);
  });

  it('attaches the folder\'s tokenizer.json, so generate takes text', async () => {
    const tensors = await readTensors('llama');
    const dir = await writeFolder('llama', tensors);
    dirs.push(dir);
    tf.dispose([...tensors.values()]);
    const words = ['[UNK]', 'the', 'cat', 'sat', 'on', 'mat'];
    const tokenizerJson = {
      version: '1.0', truncation: null, padding: null, normalizer: null, post_processor: null, decoder: null,
      added_tokens: [{ id: 0, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      pre_tokenizer: { type: 'Whitespace' },
      model: { type: 'WordLevel', vocab: Object.fromEntries(words.map((w, i) => [w, i])), unk_token: '[UNK]' },
    };
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    const model = await fromPretrained(dir);
    expect(model.tokenizer?.encode('the cat sat')).toEqual([1, 2, 3]);
    const byText = await model.generate('the cat sat on the mat', { maxNewTokens: 4, stopTokens: [] });
    const byIds = await model.generate([[1, 2, 3, 4, 1, 5]], { maxNewTokens: 4, stopTokens: [] });
    expect(byText.tokens).toEqual(byIds.tokens);
    expect(byText.text).toHaveLength(1);
    model.dispose();
    const without = await fromPretrained(dir, { tokenizer: false });
    expect(without.tokenizer).toBeUndefined();
    without.dispose();
    const plain = await fromPretrained(caseDir('llama'));
    expect(plain.tokenizer).toBeUndefined(); // the fixture has no tokenizer.json
    plain.dispose();
  });

  it('applies a config edit before building the model', async () => {
    const model = await fromPretrained(caseDir('llama'), { config: (c) => ({ ...c, maxPositionEmbeddings: 64 }) });
    expect((model as CausalLM).config.maxPositionEmbeddings).toBe(64);
    model.dispose();
  });

  it('builds the same model from a config as fromPretrained does', async () => {
    const config = configFromHF(loadCase('gemma').config as Record<string, unknown>);
    const model = new CausalLM(config);
    expect(model.parameterCount().total).toBe(loadCase('gemma').meta.num_parameters_stored);
    model.dispose();
  });
});
