/**
 * Threads for the `wasm` backend in Node.
 *
 * tfjs-backend-wasm ships a threaded build (XNNPACK on a pthread pool, one Web Worker per thread) but never starts
 * it in Node: its feature flag says "no threads" there, it creates each worker from a `blob:` URL (Node's
 * `worker_threads` cannot start one), it hands the worker its main script as a `Blob` (which the worker cannot read
 * synchronously in Node), and it sizes the pool as half the logical cores (it assumes two hyper-threads per core),
 * so a 2-core machine gets one thread. {@link prepareNodeWasmThreads} bridges those four gaps for the duration of
 * the backend's start, with the files the package already contains: the worker's own source, which has a Node
 * branch, and the build's main script on disk.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

/** The parts of `worker_threads.Worker` the bridge touches. */
interface NodeWorker {
  postMessage(message: unknown, transfer?: readonly unknown[]): void;
  ref(): void;
  unref(): void;
}
type NodeWorkerClass = new (source: string | URL, options?: Record<string, unknown>) => NodeWorker;

/** The process's Node options without `--input-type` (which would make the eval'd worker source an ES module). */
function scriptArgv(): string[] {
  const argv = process.execArgv;
  return argv.filter((a, i) => !a.startsWith('--input-type') && !(i > 0 && argv[i - 1] === '--input-type'));
}

const THREADED_MAIN = '@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js';
const THREADED_WORKER = '@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js';

/**
 * Before the `wasm` backend's first start in Node: makes tfjs start its threaded build with `threads` threads.
 * Returns the function that undoes the temporary patches (call it once the backend has started, whether or not
 * it succeeded). The workers it creates never keep the process alive on their own.
 */
export async function prepareNodeWasmThreads(
  threads: number,
  setThreadsCount: (n: number) => void,
): Promise<() => void> {
  // Specifiers in variables, so that browser bundlers leave these Node-only imports alone.
  const nodeModule = 'node:module';
  const { createRequire } = (await import(/* @vite-ignore */ nodeModule)) as typeof import('node:module');
  const require = createRequire(import.meta.url);
  const workerThreads = require('node:worker_threads') as { Worker: NodeWorkerClass };
  const os = require('node:os') as { cpus(): unknown[] };
  const mainScript = require.resolve(THREADED_MAIN);
  // The worker's source, as tfjs would put it in its blob (newlines inside string literals stay escaped).
  const workerSource = (require(THREADED_WORKER) as { wasmWorkerContents: string }).wasmWorkerContents.replace(/\n/g, '\\n');

  const RealWorker = workerThreads.Worker;
  class ThreadedWasmWorker extends RealWorker {
    constructor(source: string | URL, options?: Record<string, unknown>) {
      // The source is a CommonJS script: drop an `--input-type=module` the worker would inherit from the process.
      if (typeof source === 'string' && source.startsWith('blob:')) super(workerSource, { ...options, eval: true, execArgv: scriptArgv() });
      else super(source, options);
      super.unref();
    }

    override postMessage(message: unknown, transfer?: readonly unknown[]): void {
      const m = message as { cmd?: string; urlOrBlob?: unknown } | null;
      // The worker evaluates its main script from a path with `fs` in Node; it cannot read a Blob synchronously.
      if (m != null && m.cmd === 'load' && typeof m.urlOrBlob !== 'string') message = { ...m, urlOrBlob: mainScript };
      super.postMessage(message, transfer);
    }

    // Emscripten refs a worker while its thread runs; XNNPACK's threads run for the life of the pool, which would
    // keep the process from ever exiting.
    override ref(): void {}
  }

  const realCpus = os.cpus;
  workerThreads.Worker = ThreadedWasmWorker;
  // The threaded build gives XNNPACK min(requested, logical cores / 2) threads.
  os.cpus = () => {
    const cpus = realCpus.call(os);
    while (cpus.length < 2 * threads) cpus.push(cpus[0]);
    return cpus;
  };
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  setThreadsCount(threads);
  return () => {
    workerThreads.Worker = RealWorker;
    os.cpus = realCpus;
  };
}
