/**
 * slmkit's float32 GEMM for the `wasm` backend (`wasm/gemm.wat`): `C = A · B` on the backend's heap, in place, on the
 * calling thread, or under the threaded build in Node split by columns with worker threads of its own.
 *
 * B is packed in panels of 8 columns. A weight's packed copy is kept (on the heap, outside tfjs's tensors, as XNNPACK
 * keeps its own) until the weight's data is freed: every forward multiplies by the same weights, and the copy is
 * built once. Like XNNPACK's, it assumes tensor data never changes in place while the tensor lives.
 *
 * The split: the calling thread packs A once (shared, read-only), then every thread claims runs of B's panels from a
 * shared counter ({@link claimPanels}: guided, each run a share of what is left, so that the runs shrink towards the
 * end and the threads finish together) and computes them into C. A product of fewer than four rows (a decode step's)
 * is split the same way, over the panels its rows stream. Workers wait on a futex (`Atomics.wait`) in a small
 * shared control block; the calling thread writes a product's arguments there, wakes them, computes its own share
 * and waits until all have counted themselves done. Waking a sleeping thread costs 0.1 to 0.4 ms on a VM, so both
 * sides poll for {@link SPIN_MS} before they sleep, and products under {@link MIN_SPLIT_WORK} multiply-adds stay on
 * the calling thread.
 *
 * @module
 */
import { GEMM_SHARED_WASM_BASE64, GEMM_WASM_BASE64 } from './wasm/gemm-wasm.js';
import { instantiateWasmIn, isSharedMemory, wasmBytes } from './wasm.js';

/** gemm.wat's exports (pointers are byte offsets on the heap). */
interface GemmExports {
  pack_a(a: number, ap: number, m: number, k: number): void;
  pack_b_all(b: number, bp: number, n: number, k: number): void;
  panels(ap: number, bp: number, c: number, m: number, n: number, k: number, j0: number, j1: number): void;
  rows(a: number, bp: number, c: number, m: number, n: number, k: number, j0: number, j1: number): void;
  glu(g: number, c: number, m: number, n: number, j0: number, j1: number, alpha: number, beta: number): void;
}

/**
 * The gate of a gated product `C = act(A · B_gate) ⊙ (A · B)` (a gated MLP's first half, see {@link gemm}):
 * `B_gate` packed by {@link packB} at byte offset `bp`, `m · n` floats of scratch at byte offset `g` for `A · B_gate`,
 * and the activation `act(x) = x σ(α x + β x³)` (SiLU: α 1, β 0; GELU's tanh form: α 2√(2/π), β 0.044715 α).
 */
export interface GemmGate {
  bp: number;
  g: number;
  alpha: number;
  beta: number;
}

/** Rows from which A is packed and the 4 × 8 tile runs (below, `rows`: a 1 × 8 tile per row, straight from A). */
const TILE_ROWS = 4;

/** Multiply-adds from which a product is split over the workers (about 0.15 ms of work on one thread). */
const MIN_SPLIT_WORK = 1 << 22;

/**
 * Milliseconds a thread polls for its next signal before it sleeps on the futex: a worker between the products of a
 * forward (a block's q, k and v projections come back to back), the calling thread for the workers' shares.
 */
const SPIN_MS = 1;

/**
 * Control block, Int32 slots: a job counter, the count of workers done with it, an error flag, the next panel to
 * take, then the job's arguments ({@link JOB_SLOTS}).
 */
const SEQ = 0;
const DONE = 1;
const ERROR = 2;
const NEXT = 3;
const ARGS = 4;

/**
 * A job's arguments, as unsigned slots. A product's: ap (A itself for `rows`), bp, c, m, n, k, threads, kind
 * ({@link PANELS} or {@link ROWS}), then a gated product's gate (else zeros): its bp and g, and α and β (their float32
 * bits). A {@link WasmTask}'s: its id, its arguments' byte offset, its unit count, three unused, threads, kind
 * {@link TASK}.
 */
const JOB_SLOTS = 12;

/** Job kinds (slot 7): a product by `panels`, a product by `rows`, a {@link WasmTask}. */
const PANELS = 0;
const ROWS = 1;
const TASK = 2;

/**
 * Claims the next run of panels of a split product from the control block's counter, for any of the `threads`:
 * returns its first panel, or `total` when none are left; the run ends at {@link claimEnd}. Self-contained (it reads
 * no outer names), as the workers run its source too.
 */
function claimPanels(control: Int32Array, total: number, threads: number): number {
  for (;;) {
    const p = Atomics.load(control, 3); // NEXT
    if (p >= total) return total;
    if (Atomics.compareExchange(control, 3, p, claimEnd(p, total, threads)) === p) return p;
  }
}

/**
 * The end of the run claimed from panel `p`: a share of what is left (guided scheduling), at least two panels (at
 * 128 × 576, about 0.05 ms of work). Self-contained, as {@link claimPanels}.
 */
function claimEnd(p: number, total: number, threads: number): number {
  return Math.min(total, p + Math.max(2, Math.ceil((total - p) / (2 * threads))));
}

/**
 * Columns j0 .. j1 of a job (its arguments in `job`, and the same slots read as floats in `jobFloats`, see
 * {@link JOB_SLOTS}): C = A · B there, and for a gated product first G = A · B_gate, then C = act(G) ⊙ C, while
 * both are in cache. Self-contained, as {@link claimPanels}.
 */
function computeColumns(kernels: GemmExports, job: Uint32Array, jobFloats: Float32Array, j0: number, j1: number): void {
  const run = job[7] === 1 ? kernels.rows : kernels.panels; // ROWS
  const gated = job[8] !== 0;
  if (gated) run(job[0], job[8], job[9], job[3], job[4], job[5], j0, j1);
  run(job[0], job[1], job[2], job[3], job[4], job[5], j0, j1);
  if (gated) kernels.glu(job[9], job[2], job[3], job[4], j0, j1, jobFloats[10], jobFloats[11]);
}

/** Workers splitting products on one shared heap. */
interface Pool {
  control: Int32Array;
  /** Each worker's end of its channel for {@link WasmTask}s (read synchronously by the worker when a job needs one). */
  ports: import('node:worker_threads').MessagePort[];
  /** The ids of the tasks sent to the workers. */
  taskIds: Map<WasmTask<never>, number>;
  /** The job's slots of the control block, as unsigned and as float views. */
  job: Uint32Array;
  jobFloats: Float32Array;
  /** Threads in all, the calling one included. */
  threads: number;
}

/** The job of a product on the calling thread alone (JavaScript runs one product at a time). */
const localJob = new Uint32Array(JOB_SLOTS);
const localJobFloats = new Float32Array(localJob.buffer);

/** Products split over workers so far (tests check the split really ran). Internal. */
export const gemmSplits = { count: 0 };

/** The packed copies `backend` holds now (tests check they are made once and freed with their data). Internal. */
export function livePackedCopies(backend: unknown): number {
  let count = 0;
  for (const copies of packedCopies.get(backend as object)?.values() ?? []) count += copies.length;
  return count;
}

/** The worker pool of each shared heap that has one. */
const pools = new WeakMap<WebAssembly.Memory, Pool>();

/** gemm.wat working in `memory`, or `null` where the engine cannot instantiate it (no SIMD). */
const gemmIn = (memory: WebAssembly.Memory): GemmExports | null =>
  instantiateWasmIn<GemmExports>(memory, { unshared: GEMM_WASM_BASE64, shared: GEMM_SHARED_WASM_BASE64 });

/** Whether {@link gemm} can run in `memory` with `threads` threads (the backend's count). */
export function gemmAvailable(memory: WebAssembly.Memory, threads: number): boolean {
  return gemmIn(memory) !== null && (threads === 1 || pools.get(memory)?.threads === threads);
}

/** Floats B `[k, n]` takes packed (whole panels of 8 columns). */
export function packedFloats(k: number, n: number): number {
  return Math.ceil(n / 8) * 8 * k;
}

/** Floats of scratch {@link gemm} needs for A `[m, k]` (packed A; none for fewer than four rows). */
export function gemmScratchFloats(m: number, k: number): number {
  return m < TILE_ROWS ? 0 : ((m + 3) & ~3) * k;
}

/** Packs B `[k, n]` at byte offset `b` of `memory` into {@link packedFloats} floats at byte offset `bp`. */
export function packB(memory: WebAssembly.Memory, b: number, bp: number, k: number, n: number): void {
  gemmIn(memory)!.pack_b_all(b, bp, n, k);
}

/**
 * `C = A · B` for A `[m, k]` and C `[m, n]` at byte offsets `a` and `c` of `memory`, and B `[k, n]` packed by
 * {@link packB} at `bp`, with {@link gemmScratchFloats} floats of scratch at byte offset `scratch`; m, k, n ≥ 1.
 * With a `gate`, the gated product `C = act(A · B_gate) ⊙ (A · B)` instead: A packed once for both, and each run of
 * columns computes its gate, its product and their epilogue in turn. Split over the heap's workers when it has them
 * and the product is large enough. Throws if a worker failed.
 */
export function gemm(memory: WebAssembly.Memory, a: number, bp: number, c: number, m: number, k: number, n: number, scratch: number, gate?: GemmGate): void {
  const module = gemmIn(memory)!;
  const few = m < TILE_ROWS;
  const ap = few ? a : scratch; // fewer than four rows: read A as it is
  if (!few) module.pack_a(a, ap, m, k);
  const pool = pools.get(memory);
  const total = Math.ceil(n / 8);
  const work = (gate == null ? 1 : 2) * m * n * k;
  // Small products, and those whose first claim would take every panel, stay on this thread.
  const alone = pool == null || work < MIN_SPLIT_WORK || claimEnd(0, total, pool.threads) >= total;
  const [job, jobFloats] = alone ? [localJob, localJobFloats] : [pool.job, pool.jobFloats];
  job.set([ap, bp, c, m, n, k, alone ? 1 : pool.threads, few ? ROWS : PANELS, gate?.bp ?? 0, gate?.g ?? 0]);
  jobFloats.set([gate?.alpha ?? 0, gate?.beta ?? 0], 10);
  if (alone) {
    computeColumns(module, job, jobFloats, 0, n);
    return;
  }
  // This thread and each worker, once awake, claim runs of panels until none are left: a worker that wakes late, or
  // shares its core with another thread for a while, claims fewer.
  split(pool, total, (p0, p1) => computeColumns(module, job, jobFloats, 8 * p0, Math.min(n, 8 * p1)));
  gemmSplits.count++;
}

/**
 * Runs the job written in the pool's job slots: wakes the workers, claims runs of the `total` units for this thread
 * (`run(u0, u1)`) until none are left, and waits until every worker is done. Throws if a worker failed.
 */
function split(pool: Pool, total: number, run: (u0: number, u1: number) => void): void {
  const { control, threads } = pool;
  Atomics.store(control, NEXT, 0);
  Atomics.store(control, DONE, 0);
  Atomics.add(control, SEQ, 1);
  Atomics.notify(control, SEQ);
  let failed = false;
  try {
    for (let p = claimPanels(control, total, threads); p < total; p = claimPanels(control, total, threads)) run(p, claimEnd(p, total, threads));
  } finally {
    // The workers finish their last runs about when this thread does: poll before sleeping (a sleeping thread's
    // wake-up costs 0.1 to 0.4 ms on a VM). Wait for them even when this thread's share threw: they still work
    // on the heap.
    const pollUntil = performance.now() + SPIN_MS;
    for (let done = Atomics.load(control, DONE); done < threads - 1; done = Atomics.load(control, DONE)) {
      if (performance.now() > pollUntil) Atomics.wait(control, DONE, done);
    }
    failed = Atomics.exchange(control, ERROR, 0) !== 0;
  }
  if (failed) throw new Error('wasm threads: a worker thread failed');
}

/**
 * A computation split over the wasm backend's threads (Node, the threaded build, see `initBackend`'s `threads`): a
 * WebAssembly module working in the backend's heap, and a function that computes units `u0 .. u1` of the work with
 * that module's exports. Each worker instantiates the module on the shared heap and runs its own copy of `run`,
 * made from its source, so `run` must be self-contained: a `function` that reads no outer name but the
 * {@link WasmTask.helpers} (not a bundler's helper either), and keeps its state on the heap. It learns what to
 * compute from its arguments on the heap, at byte offset `args`; `thread` (0 for the calling thread, 1 … for the
 * workers) picks its share of any scratch. See {@link runWasmTask}.
 *
 * @example
 * ```ts
 * import type { WasmTask } from '@slmkit/core';
 * // Doubles units u0 .. u1 of a float32 array whose byte offset is the int32 at `args`.
 * const double: WasmTask<Record<string, never>> = {
 *   shared: 'AGFzbQEAAAA=', // a module's bytes (base64), its memory import shared: here the empty module
 *   run: function double(_exports, memory, args, _thread, u0, u1) {
 *     const [at] = new Int32Array(memory.buffer, args, 1);
 *     const x = new Float32Array(memory.buffer, at);
 *     for (let i = u0; i < u1; i++) x[i] *= 2;
 *   },
 * };
 * ```
 */
export interface WasmTask<E> {
  /** The module's bytes in base64, the variant importing a shared memory (`env.memory`, as the threaded heap is). */
  shared: string;
  /**
   * Computes units `u0 .. u1` on the heap `memory` with the module's `exports`, from the arguments at byte offset
   * `args`, as thread number `thread`.
   */
  run: (exports: E, memory: WebAssembly.Memory, args: number, thread: number, u0: number, u1: number) => void;
  /** Functions `run` calls by name, each a self-contained `function` declaration, defined beside it in the workers. */
  helpers?: readonly ((...args: never[]) => unknown)[];
}

/**
 * The number of threads {@link runWasmTask} splits work over on the wasm backend's heap `memory`: the backend's
 * thread count where slmkit's workers run on it (Node), else 1.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { initBackend, wasmHeapMemory, wasmTaskThreads } from '@slmkit/core';
 * await initBackend('wasm');
 * const memory = wasmHeapMemory(tf.backend());
 * console.log(memory == null ? 1 : wasmTaskThreads(memory)); // 1 unless started with threads
 * ```
 */
export function wasmTaskThreads(memory: WebAssembly.Memory): number {
  return pools.get(memory)?.threads ?? 1;
}

/**
 * Runs `task` over `total` units on the wasm backend's heap `memory`: split over its threads (guided runs of units
 * claimed from a shared counter) where it has workers ({@link wasmTaskThreads} > 1), else as one call on this
 * thread; either way this thread takes part, with `exports`, its own instance of the task's module on `memory`.
 * Returns when every unit is done. Tasks run one at a time, like the products that share these workers.
 *
 * @param args - byte offset of the task's arguments on the heap (written before the call).
 * @throws Error when a worker failed (its units are then not done).
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { initBackend, runWasmTask, wasmHeapMemory, type WasmTask } from '@slmkit/core';
 * const double: WasmTask<Record<string, never>> = {
 *   shared: 'AGFzbQEAAAA=',
 *   run: function double(_exports, memory, args, _thread, u0, u1) {
 *     const [at] = new Int32Array(memory.buffer, args, 1);
 *     const x = new Float32Array(memory.buffer, at);
 *     for (let i = u0; i < u1; i++) x[i] *= 2;
 *   },
 * };
 * await initBackend('wasm');
 * const backend = tf.backend() as unknown as { wasm: { _malloc(n: number): number; _free(at: number): void } };
 * const memory = wasmHeapMemory(tf.backend())!;
 * const at = backend.wasm._malloc(4 * 1000 + 4);
 * new Float32Array(memory.buffer, at, 1000).fill(1.5);
 * new Int32Array(memory.buffer, at + 4000, 1)[0] = at; // the task's argument: where the array is
 * runWasmTask(memory, double, {}, at + 4000, 1000);
 * console.log(new Float32Array(memory.buffer, at, 1000)[999]); // 3
 * backend.wasm._free(at);
 * ```
 */
export function runWasmTask<E>(memory: WebAssembly.Memory, task: WasmTask<E>, exports: E, args: number, total: number): void {
  const pool = pools.get(memory);
  if (pool == null || total < 2 || claimEnd(0, total, pool.threads) >= total) {
    if (total > 0) task.run(exports, memory, args, 0, 0, total);
    return;
  }
  let id = pool.taskIds.get(task as WasmTask<never>);
  if (id == null) {
    // Sent once: each worker instantiates the module and makes `run` from its source when a job first needs it.
    id = pool.taskIds.size + 1;
    const module = new WebAssembly.Module(wasmBytes(task.shared));
    const source = `${(task.helpers ?? []).map((f) => f.toString()).join('\n')}\nreturn (${task.run.toString()});`;
    for (const port of pool.ports) port.postMessage({ id, module, source });
    pool.taskIds.set(task as WasmTask<never>, id);
  }
  pool.job.set([id, args, total, 0, 0, 0, pool.threads, TASK]);
  split(pool, total, (u0, u1) => task.run(exports, memory, args, 0, u0, u1));
}

/** What {@link packedWeight} needs of the wasm backend. */
interface WasmBackendHeap {
  wasm: { _malloc(bytes: number): number; _free(at: number): void };
  dataIdMap: { has(dataId: object): boolean };
  disposeData(dataId: object, force?: boolean): boolean;
  typedArrayFromHeap(info: { dataId: object; shape: number[]; dtype: 'float32' }): Float32Array;
}

/** A packed copy of a tensor's data read as `[k, n]` (a reshape shares the data under another shape). */
interface Packed {
  k: number;
  n: number;
  at: number;
}

/** Each backend's packed copies, by data id. */
const packedCopies = new WeakMap<object, Map<object, Packed[]>>();

/**
 * The byte offset of B `[k, n]` (a float32 tensor of `backend`, whose heap is `memory`) packed for {@link gemm}: the
 * copy made the first time this data was multiplied as `[k, n]`, or a new one. Copies are freed with their data
 * (the backend's `disposeData` is wrapped, once, to do it).
 */
export function packedWeight(backend: unknown, memory: WebAssembly.Memory, b: { dataId: object; shape: number[]; dtype: 'float32' }, k: number, n: number): number {
  const heap = backend as WasmBackendHeap;
  let copies = packedCopies.get(heap);
  if (copies == null) {
    const known = new Map<object, Packed[]>();
    const dispose = heap.disposeData.bind(heap);
    heap.disposeData = (dataId: object, force?: boolean): boolean => {
      const freed = dispose(dataId, force);
      const packed = known.get(dataId);
      if (packed != null && !heap.dataIdMap.has(dataId)) {
        for (const p of packed) heap.wasm._free(p.at);
        known.delete(dataId);
      }
      return freed;
    };
    packedCopies.set(heap, known);
    copies = known;
  }
  const forData = copies.get(b.dataId) ?? [];
  const hit = forData.find((p) => p.k === k && p.n === n);
  if (hit != null) return hit.at;
  const at = heap.wasm._malloc(4 * packedFloats(k, n));
  if (at === 0) throw new RangeError(`gemm: could not allocate ${4 * packedFloats(k, n)} bytes for a packed [${k}, ${n}] weight`);
  packB(memory, heap.typedArrayFromHeap(b).byteOffset, at, k, n); // the offset after the allocation (which may grow the heap)
  forData.push({ k, n, at });
  copies.set(b.dataId, forData);
  return at;
}

/**
 * A worker's script (CommonJS, evaluated): instantiate gemm.wat on the shared heap, say ready, then for each job
 * counted in the control block claim runs of panels until none are left, and count itself done.
 */
const WORKER_SOURCE = `
const { parentPort, receiveMessageOnPort, workerData } = require('node:worker_threads');
const { module, memory, control: buffer, port, index } = workerData;
const kernels = new WebAssembly.Instance(module, { env: { memory } }).exports;
const control = new Int32Array(buffer);
const job = new Uint32Array(buffer, ${ARGS * 4}, ${JOB_SLOTS});
const jobFloats = new Float32Array(buffer, ${ARGS * 4}, ${JOB_SLOTS});
${claimPanels.toString()}
${claimEnd.toString()}
${computeColumns.toString()}
// The tasks sent so far (WasmTask), by id: the module's instance here and the task's function.
const tasks = new Map();
function taskOf(id) {
  for (let t = tasks.get(id); ; t = tasks.get(id)) {
    if (t !== undefined) return t;
    const sent = receiveMessageOnPort(port);
    if (sent === undefined) throw new Error('task ' + id + ' was never sent');
    const { id: got, module: m, source } = sent.message;
    tasks.set(got, { exports: new WebAssembly.Instance(m, { env: { memory } }).exports, run: new Function(source)() });
  }
}
parentPort.postMessage('ready');
for (let seen = 0; ; ) {
  // Poll for the next job for a while (the next product of a forward is often right behind), then sleep.
  const pollUntil = performance.now() + ${SPIN_MS};
  while (Atomics.load(control, ${SEQ}) === seen && performance.now() < pollUntil);
  Atomics.wait(control, ${SEQ}, seen);
  seen = Atomics.load(control, ${SEQ});
  const threads = job[6];
  try {
    if (job[7] === ${TASK}) {
      const task = taskOf(job[0]);
      const [args, total] = [job[1], job[2]];
      for (let p = claimPanels(control, total, threads); p < total; p = claimPanels(control, total, threads)) {
        task.run(task.exports, memory, args, index, p, claimEnd(p, total, threads));
      }
    } else {
      const n = job[4];
      const total = Math.ceil(n / 8);
      for (let p = claimPanels(control, total, threads); p < total; p = claimPanels(control, total, threads)) {
        computeColumns(kernels, job, jobFloats, 8 * p, Math.min(n, 8 * claimEnd(p, total, threads)));
      }
    }
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
  if (threads < 2 || pools.has(memory) || !isSharedMemory(memory)) return;
  if (gemmIn(memory) == null) return;
  // A specifier in a variable, so that browser bundlers leave this Node-only import alone.
  const workerThreads = 'node:worker_threads';
  const { MessageChannel, Worker } = (await import(/* @vite-ignore */ workerThreads)) as typeof import('node:worker_threads');
  const module = new WebAssembly.Module(wasmBytes(GEMM_SHARED_WASM_BASE64));
  const control = new Int32Array(new SharedArrayBuffer((ARGS + JOB_SLOTS) * 4));
  // eval'd scripts are CommonJS unless the process says `--input-type=module`; no option is inherited here.
  // A channel per worker for the tasks (WasmTask); this end never keeps the process alive.
  const channels = Array.from({ length: threads - 1 }, () => new MessageChannel());
  for (const { port1 } of channels) port1.unref();
  const workers = channels.map(
    ({ port2: port }, i) =>
      new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { module, memory, control: control.buffer, port, index: i + 1 }, transferList: [port] }),
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
  const job = new Uint32Array(control.buffer, ARGS * 4, JOB_SLOTS);
  pools.set(memory, {
    control,
    ports: channels.map(({ port1 }) => port1),
    taskIds: new Map(),
    job,
    jobFloats: new Float32Array(control.buffer, ARGS * 4, JOB_SLOTS),
    threads,
  });
}
