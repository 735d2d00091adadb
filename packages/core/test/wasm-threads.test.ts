// The wasm backend on two threads in Node: tfjs's threaded build really starts (a worker thread runs XNNPACK's
// pool), slmkit's GEMM splits large products with its own worker, both compute what the single-threaded cpu backend
// computes, the count stays fixed, bad counts are rejected, and no worker keeps a process alive.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { ConfigError, GatedMLP, initBackend, runWasmTask, wasmHeapMemory, wasmTaskThreads, type WasmTask } from '../src/index.js';
import { gemmSplits } from '../src/wasm-gemm.js';
import { gatedProducts } from '../src/wasm-gated.js';

/** The threaded module's pthread bookkeeping (Emscripten's), to see a worker thread really running. */
interface ThreadedModule {
  PThread?: { runningWorkers: unknown[] };
}

async function onBackend<T>(name: 'cpu' | 'wasm', f: () => T | Promise<T>): Promise<T> {
  await initBackend(name);
  return f();
}

/** A WasmTask's helper: 1 + `thread`, after some work (so that the worker wakes while units are left). */
function mark(thread: number, u: number): number {
  let x = u;
  for (let i = 0; i < 20000; i++) x = (x * 1103515245 + 12345) | 0;
  return x === 0.5 ? 0 : thread + 1; // x is never 0.5: the loop only keeps the work from being optimised away
}

describe('wasm backend threads (Node)', () => {
  it('starts XNNPACK on two threads and computes what cpu computes', async () => {
    const info = await initBackend('wasm', { threads: 2 });
    expect(info.threads).toBe(2);
    expect(wasmHeapMemory(tf.backend())?.buffer).toBeInstanceOf(SharedArrayBuffer); // the heap the threads share
    const module = (tf.backend() as unknown as { wasm: ThreadedModule }).wasm;
    expect(module.PThread?.runningWorkers.length ?? 0).toBeGreaterThanOrEqual(1);

    const values = (seed: number, n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.1 + i * 0.37));
    const a = values(1, 96 * 80);
    const b = values(2, 80 * 200);
    // Large enough (m·k·n over 2^22) that slmkit's GEMM splits it between the two threads, with a part panel.
    const [m, k, n] = [100, 300, 204];
    const big = [values(4, m * k), values(5, k * n)];
    // A decode step's product (three rows: the few-rows tile), also large enough to split, with a part panel.
    const [mr, nr] = [3, 2444];
    const wide = [values(6, mr * 600), values(7, 600 * nr)];
    const mlp = GatedMLP.create(80, 144, { activation: 'silu', seed: 3 });
    // A gated MLP whose gated product (2·m·k·n over 2^22) splits too, with a part panel and a part group of four.
    const wideMlp = GatedMLP.create(128, 203, { activation: 'gelu_tanh', seed: 5 });
    const xMlp = values(8, 96 * 128);
    const run = async () => {
      const outs = tf.tidy(() => {
        const x = tf.tensor2d(a, [96, 80]); // [T, d]
        return [
          tf.matMul(x, tf.tensor2d(b, [80, 200])), // [T, 200]
          mlp.forward(x.reshape([1, 96, 80])), // [1, T, d]
          tf.matMul(tf.tensor2d(big[0], [m, k]), tf.tensor2d(big[1], [k, n])), // [m, n]
          tf.matMul(tf.tensor2d(wide[0], [mr, 600]), tf.tensor2d(wide[1], [600, nr])), // [mr, nr]
          wideMlp.forward(tf.tensor2d(xMlp, [96, 128])), // [T, 128]
        ];
      });
      const out = (await Promise.all(outs.map((t) => t.data()))) as Float32Array[];
      tf.dispose(outs);
      return out;
    };
    const before = tf.memory().numTensors;
    const splits = gemmSplits.count;
    const gated = gatedProducts.count;
    const [yWasm, zWasm, bigWasm, wideWasm, mlpWasm] = await run();
    expect(gemmSplits.count - splits, 'the three large products split over the threads').toBeGreaterThanOrEqual(3);
    expect(gatedProducts.count - gated, 'both MLPs ran their gated product as one kernel').toBe(2);
    expect(tf.memory().numTensors).toBe(before);
    const [yCpu, zCpu, bigCpu, wideCpu, mlpCpu] = await onBackend('cpu', run);
    for (const [p, q] of [[yWasm, yCpu], [zWasm, zCpu], [bigWasm, bigCpu], [wideWasm, wideCpu], [mlpWasm, mlpCpu]] as const) {
      let worst = 0;
      for (let i = 0; i < p.length; i++) worst = Math.max(worst, Math.abs(p[i] - q[i]) / (1 + Math.abs(q[i])));
      expect(worst).toBeLessThan(1e-5);
    }
    mlp.dispose();
    wideMlp.dispose();

    // The count is fixed at the first start: the same count is fine, another one is an error naming both.
    expect((await initBackend('wasm', { threads: 2 })).threads).toBe(2);
    expect((await initBackend('wasm')).threads).toBe(2);
    const err = await initBackend('wasm', { threads: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ details: { field: 'threads', expected: 2, found: 1 } });
  });

  it('runs a WasmTask over both threads: every unit once, some on the worker; a failing worker is an error, then the pool works on', async () => {
    await initBackend('wasm', { threads: 2 });
    const memory = wasmHeapMemory(tf.backend())!;
    expect(wasmTaskThreads(memory)).toBe(2);
    // Each unit writes 1 + the thread that ran it (through a helper) after some work, so that the worker wakes in time.
    const tag: WasmTask<Record<string, never>> = {
      shared: 'AGFzbQEAAAA=', // the empty module
      run: function tagUnits(_exports, heap, args, thread, u0, u1) {
        const [at, failOn] = new Int32Array(heap.buffer, args, 2);
        if (thread === failOn) throw new Error('this thread fails');
        const out = new Int32Array(heap.buffer, at);
        for (let u = u0; u < u1; u++) out[u] = mark(thread, u);
      },
      helpers: [mark],
    };
    const backend = tf.backend() as unknown as { wasm: { _malloc(n: number): number; _free(at: number): void } };
    const units = 4000;
    const at = backend.wasm._malloc(4 * units + 8);
    const run = (failOn: number): Int32Array => {
      new Int32Array(memory.buffer, at, units).fill(0);
      new Int32Array(memory.buffer, at + 4 * units, 2).set([at, failOn]);
      runWasmTask(memory, tag, {}, at + 4 * units, units);
      return new Int32Array(memory.buffer, at, units).slice();
    };
    try {
      const byThread = run(-1);
      expect(byThread.every((t) => t === 1 || t === 2), 'every unit done by thread 0 or 1').toBe(true);
      expect(byThread.some((t) => t === 2), 'the worker took part').toBe(true);
      expect(() => run(1)).toThrow(/a worker thread failed/);
      expect(run(-1).every((t) => t === 1 || t === 2), 'the pool works after a failure').toBe(true);
    } finally {
      backend.wasm._free(at);
    }
  });

  it('rejects thread counts that are not whole numbers from 1 to 64, and threads on another backend', async () => {
    for (const threads of [0, -1, 1.5, 65, Number.NaN]) {
      await expect(initBackend('wasm', { threads })).rejects.toThrow(ConfigError);
    }
    await expect(initBackend('wasm', { threads: '2' as unknown as number })).rejects.toThrow(/threads: expected an integer/);
    const err = await initBackend('cpu', { threads: 2 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ details: { field: 'threads', expected: 'backend wasm', found: 'cpu' } });
    const saved = process.env.SLMKIT_WASM_THREADS;
    process.env.SLMKIT_WASM_THREADS = 'two';
    try {
      await expect(initBackend('wasm')).rejects.toThrow(/SLMKIT_WASM_THREADS: expected an integer from 1 to 64, found two/);
    } finally {
      if (saved == null) delete process.env.SLMKIT_WASM_THREADS;
      else process.env.SLMKIT_WASM_THREADS = saved;
    }
  });

  it('a fresh process (the built package, SLMKIT_WASM_THREADS=2) runs on two threads and exits by itself', async () => {
    const dist = new URL('../dist/index.js', import.meta.url).href;
    const script = `
      import * as tf from '@tensorflow/tfjs-core';
      import { initBackend } from ${JSON.stringify(dist)};
      import { gemmSplits } from ${JSON.stringify(new URL('../dist/wasm-gemm.js', import.meta.url).href)};
      const info = await initBackend('wasm');
      const y = tf.matMul(tf.ones([128, 256]), tf.ones([256, 256])); // split over the GEMM's worker
      console.log(JSON.stringify({ threads: info.threads, y: (await y.data())[0], splits: gemmSplits.count }));
    `;
    const cwd = fileURLToPath(new URL('..', import.meta.url));
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--input-type=module', '-e', script],
        { cwd, timeout: 60_000, env: { ...process.env, SLMKIT_WASM_THREADS: '2' } },
        (error, out, errOut) => (error ? reject(new Error(`${error.message}\n${errOut}`)) : resolve({ stdout: out })),
      );
    });
    expect(JSON.parse(stdout.trim())).toEqual({ threads: 2, y: 256, splits: 1 });
  });
});
