/**
 * slmkit's float32 GEMM for the `wasm` backend (`wasm/gemm.wat`): `C = A · B` on the backend's heap, in place, on the
 * calling thread, or under the threaded build in Node split by columns with worker threads of its own.
 *
 * The split: the calling thread packs A once (shared, read-only), then every thread computes a contiguous share of
 * B's 8-column panels into C, each with its own panel scratch. Workers wait on a futex (`Atomics.wait`) in a small
 * shared control block; the calling thread writes a product's arguments there, wakes them, computes its own share
 * and waits until all have counted themselves done. A wake-up round trip costs about 0.1 ms, so products under
 * {@link MIN_SPLIT_WORK} multiply-adds stay on the calling thread.
 *
 * @module
 */
import { GEMM_SHARED_WASM_BASE64, GEMM_WASM_BASE64 } from './wasm/gemm-wasm.js';
import { instantiateWasm } from './wasm.js';

/** gemm.wat's exports (pointers are byte offsets on the heap). */
interface GemmExports {
  pack_a(a: number, ap: number, m: number, k: number): void;
  panels(ap: number, b: number, c: number, m: number, n: number, k: number, bp: number, j0: number, j1: number): void;
}

/** The chunk of k that gemm.wat's panels work through at a time (its scratch for B: 8·min(k, KC) floats per thread). */
const KC = 2048;

/** Multiply-adds from which a product is split over the workers (about 0.15 ms of work on one thread). */
const MIN_SPLIT_WORK = 1 << 22;

/** Control block, Int32 slots: a job counter, done count, error flag, then the job's arguments. */
const SEQ = 0;
const DONE = 1;
const ERROR = 2;
const ARGS = 3; // ap, b, c, m, n, k, bp: 7 slots (pointers as unsigned 32-bit)

/** Workers splitting products on one shared heap. */
interface Pool {
  control: Int32Array;
  /** Threads in all, the calling one included. */
  threads: number;
}

/** Products split over workers so far (tests check the split really ran). Internal. */
export const gemmSplits = { count: 0 };

/** gemm.wat instantiated on each heap it has worked in (`null` where the engine cannot). */
const instances = new WeakMap<WebAssembly.Memory, GemmExports | null>();
/** The worker pool of each shared heap that has one. */
const pools = new WeakMap<WebAssembly.Memory, Pool>();

/** Whether `memory` is shared (the threaded build's heap). */
const isShared = (memory: WebAssembly.Memory): boolean =>
  typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;

/** The module's bytes for `memory`'s kind. */
const moduleBase64 = (memory: WebAssembly.Memory): string => (isShared(memory) ? GEMM_SHARED_WASM_BASE64 : GEMM_WASM_BASE64);

/** gemm.wat working in `memory`, or `null` where the engine cannot instantiate it (no SIMD). */
function gemmIn(memory: WebAssembly.Memory): GemmExports | null {
  let m = instances.get(memory);
  if (m === undefined) {
    m = instantiateWasm<GemmExports>(moduleBase64(memory), { env: { memory } });
    instances.set(memory, m);
  }
  return m;
}

/** Whether {@link gemm} can run in `memory` with `threads` threads (the backend's count). */
export function gemmAvailable(memory: WebAssembly.Memory, threads: number): boolean {
  return gemmIn(memory) !== null && (threads === 1 || pools.get(memory)?.threads === threads);
}

/** Floats of scratch {@link gemm} needs for an `[m, k] · [k, ·]` product in `memory`. */
export function gemmScratchFloats(memory: WebAssembly.Memory, m: number, k: number): number {
  return ((m + 3) & ~3) * k + 8 * Math.min(k, KC) * (pools.get(memory)?.threads ?? 1);
}

/**
 * `C = A · B` for A `[m, k]`, B `[k, n]`, C `[m, n]` at byte offsets `a`, `b`, `c` of `memory`, with `scratch` bytes
 * at `scratch` ({@link gemmScratchFloats}); m, k, n ≥ 1. Split over the heap's workers when it has them and the
 * product is large enough. Throws if a worker failed.
 */
export function gemm(memory: WebAssembly.Memory, a: number, b: number, c: number, m: number, k: number, n: number, scratch: number): void {
  const module = gemmIn(memory)!;
  const ap = scratch;
  const bp = scratch + 4 * ((m + 3) & ~3) * k; // then 8·min(k, KC) floats per thread
  module.pack_a(a, ap, m, k);
  const pool = pools.get(memory);
  if (pool == null || m * n * k < MIN_SPLIT_WORK || n <= 8) {
    module.panels(ap, b, c, m, n, k, bp, 0, n);
    return;
  }
  const { control, threads } = pool;
  const share = shareOf(n, threads);
  new Uint32Array(control.buffer).set([ap, b, c, m, n, k, bp], ARGS);
  Atomics.store(control, DONE, 0);
  Atomics.add(control, SEQ, 1);
  Atomics.notify(control, SEQ);
  module.panels(ap, b, c, m, n, k, bp, 0, Math.min(n, share)); // thread 0's share
  for (let done = Atomics.load(control, DONE); done < threads - 1; done = Atomics.load(control, DONE)) {
    Atomics.wait(control, DONE, done);
  }
  gemmSplits.count++;
  if (Atomics.exchange(control, ERROR, 0) !== 0) throw new Error('gemm: a worker thread failed');
}

/** Columns per thread: whole panels of 8, as even as they go. */
function shareOf(n: number, threads: number): number {
  return Math.ceil(Math.ceil(n / 8) / threads) * 8;
}

/**
 * A worker's script (CommonJS, evaluated): instantiate gemm.wat on the shared heap, say ready, then for each job
 * counted in the control block compute this thread's share of the panels and count itself done.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, control: buffer, index, threads } = workerData;
const { panels } = new WebAssembly.Instance(module, { env: { memory } }).exports;
const control = new Int32Array(buffer);
const args = new Uint32Array(buffer, ${ARGS * 4}, 7);
parentPort.postMessage('ready');
for (let seen = 0; ; ) {
  Atomics.wait(control, ${SEQ}, seen);
  seen = Atomics.load(control, ${SEQ});
  const [ap, b, c, m, n, k, bp] = args;
  const share = Math.ceil(Math.ceil(n / 8) / threads) * 8;
  try {
    panels(ap, b, c, m, n, k, bp + 32 * Math.min(k, ${KC}) * index, Math.min(n, index * share), Math.min(n, (index + 1) * share));
  } catch {
    Atomics.store(control, ${ERROR}, 1);
  }
  Atomics.add(control, ${DONE}, 1);
  Atomics.notify(control, ${DONE});
}
`;

/**
 * Starts `threads − 1` worker threads that split {@link gemm}'s products on `memory`, the threaded build's shared
 * heap, in Node. Resolves once they are ready; the workers never keep the process alive. Rejects (and no pool is
 * kept) where that cannot be done; {@link gemmAvailable} then says no for that thread count.
 */
export async function startGemmWorkers(memory: WebAssembly.Memory, threads: number): Promise<void> {
  if (threads < 2 || pools.has(memory) || !isShared(memory)) return;
  if (gemmIn(memory) == null) return;
  // A specifier in a variable, so that browser bundlers leave this Node-only import alone.
  const workerThreads = 'node:worker_threads';
  const { Worker } = (await import(/* @vite-ignore */ workerThreads)) as typeof import('node:worker_threads');
  const bytes = Uint8Array.from(atob(moduleBase64(memory)), (ch) => ch.charCodeAt(0));
  const module = new WebAssembly.Module(bytes);
  const control = new Int32Array(new SharedArrayBuffer(16 * 4));
  // eval'd scripts are CommonJS unless the process says `--input-type=module`; no option is inherited here.
  const workers = Array.from(
    { length: threads - 1 },
    (_, i) => new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { module, memory, control: control.buffer, index: i + 1, threads } }),
  );
  try {
    await Promise.all(
      workers.map(
        (worker) =>
          new Promise<void>((resolve, reject) => {
            worker.once('error', reject);
            // A 'message' listener refs the worker; once it has fired, unref it so that it never keeps the process
            // alive. Jobs never throw out of the worker's loop (a failure sets the error flag), so no later 'error'.
            worker.once('message', () => {
              worker.removeListener('error', reject);
              worker.unref();
              resolve();
            });
          }),
      ),
    );
  } catch (e) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw e;
  }
  pools.set(memory, { control, threads });
}
