import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { backendsUnderTest } from '@slmkit/fixtures';
import { BackendError, ConfigError, initBackend, wasmHeapMemory } from '../src/index.js';

describe('initBackend', () => {
  it('starts each requested backend and reports it', async () => {
    const names = await backendsUnderTest(initBackend);
    expect(names).toContain('cpu');
    expect(names).toContain('wasm');
    for (const name of names) {
      const info = await initBackend(name as 'cpu');
      expect(info.name).toBe(name);
      expect(info.reason).toBe('requested');
      expect(tf.getBackend()).toBe(info.tfBackend);
      if (name === 'webgpu') expect(typeof info.adapter).toBe('string');
    }
  });

  it('defaults to wasm in Node', async () => {
    const saved = process.env.SLMKIT_BACKEND;
    delete process.env.SLMKIT_BACKEND;
    try {
      const info = await initBackend();
      expect(info.name).toBe('wasm');
      expect(info.reason).toMatch(/default for Node/);
      process.env.SLMKIT_BACKEND = 'cpu';
      const fromEnv = await initBackend();
      expect(fromEnv.name).toBe('cpu');
      expect(fromEnv.reason).toMatch(/SLMKIT_BACKEND/);
    } finally {
      if (saved == null) delete process.env.SLMKIT_BACKEND;
      else process.env.SLMKIT_BACKEND = saved;
    }
  });

  it('rejects an unknown backend name with a ConfigError naming it', async () => {
    await expect(initBackend('tpu' as 'cpu')).rejects.toThrow(ConfigError);
    await expect(initBackend('tpu' as 'cpu')).rejects.toThrow(/unknown backend "tpu"/);
  });

  it('explains how to install tfjs-node-gpu when cuda is asked for and absent', async () => {
    const before = tf.getBackend();
    const err = await initBackend('cuda').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toMatch(/npm install @tensorflow\/tfjs-node-gpu/);
    expect(tf.getBackend()).toBe(before); // no silent switch
  });
});

describe('wasmHeapMemory', () => {
  it('is the wasm backend\'s heap (its tensors\' data lives in it), and null for cpu', async () => {
    await initBackend('wasm');
    const heap = wasmHeapMemory(tf.backend());
    expect(heap).toBeInstanceOf(WebAssembly.Memory);
    const x = tf.tensor1d([1.5, -2, 3.25]);
    const view = (tf.backend() as unknown as { typedArrayFromHeap(t: tf.TensorInfo): Float32Array }).typedArrayFromHeap(x);
    expect(view.buffer).toBe(heap!.buffer);
    expect(Array.from(new Float32Array(heap!.buffer, view.byteOffset, 3))).toEqual([1.5, -2, 3.25]);
    x.dispose();
    await initBackend('cpu');
    expect(wasmHeapMemory(tf.backend())).toBeNull();
    expect(wasmHeapMemory(undefined)).toBeNull();
  });
});
