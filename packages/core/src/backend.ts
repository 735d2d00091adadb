/**
 * Backend selection: one call that starts a tfjs backend and says which one it got and why.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendError, ConfigError } from './errors.js';
import { startGemmWorkers } from './wasm-gemm.js';
import { installWasmMatMul } from './wasm-matmul.js';
import { prepareNodeWasmThreads } from './wasm-threads.js';
import { wasmHeapMemory } from './wasm.js';

/**
 * The backends slmkit knows how to start.
 *
 * @example
 * ```ts
 * import { initBackend, type BackendName } from '@slmkit/core';
 * const wanted: BackendName = 'wasm';
 * await initBackend(wanted);
 * ```
 */
export type BackendName = 'webgpu' | 'wasm' | 'cpu' | 'cuda';

/**
 * Every {@link BackendName}, in order of preference for a browser.
 *
 * @example
 * ```ts
 * import { BACKEND_NAMES } from '@slmkit/core';
 * console.log(BACKEND_NAMES.join(', ')); // "webgpu, wasm, cpu, cuda"
 * ```
 */
export const BACKEND_NAMES: readonly BackendName[] = ['webgpu', 'wasm', 'cpu', 'cuda'];

/**
 * What {@link initBackend} started.
 *
 * @example
 * ```ts
 * import { initBackend } from '@slmkit/core';
 * const info = await initBackend('cpu');
 * console.log(info.name, info.tfBackend, info.reason); // "cpu cpu requested"
 * ```
 */
export interface BackendInfo {
  /** The slmkit name of the backend. */
  name: BackendName;
  /** The name tfjs registered it under (`tensorflow` for `cuda`). */
  tfBackend: string;
  /** Why this backend: `requested`, or why the default was chosen. */
  reason: string;
  /** For `webgpu`: the adapter's vendor / architecture / description, where the platform reports them. */
  adapter?: string;
  /** For `wasm`: how many threads the matmuls (slmkit's GEMM, XNNPACK) run on (1: the calling thread only). */
  threads?: number;
}

/**
 * Options of {@link initBackend}.
 *
 * @example
 * ```ts
 * import { initBackend, type InitBackendOptions } from '@slmkit/core';
 * const options: InitBackendOptions = { threads: 2 };
 * const info = await initBackend('wasm', options);
 * console.log(info.threads); // 2 on a machine with two cores or more
 * ```
 */
export interface InitBackendOptions {
  /**
   * `wasm` only: the threads the matmuls (slmkit's GEMM in Node; XNNPACK) and XNNPACK's other kernels run on, the
   * calling thread included.
   * Default: `SLMKIT_WASM_THREADS` when set in Node, else 1 in Node and tfjs's own default in a browser (half the
   * logical cores, at most 4, on a cross-origin-isolated page; 1 elsewhere). Fixed at the backend's first start:
   * asking for another count afterwards is a {@link ConfigError}. In a browser, threads need a cross-origin-isolated
   * page (`SharedArrayBuffer`); without one the backend runs on 1 and `BackendInfo.threads` says so.
   */
  threads?: number;
}

const TF_NAME: Record<BackendName, string> = { webgpu: 'webgpu', wasm: 'wasm', cpu: 'cpu', cuda: 'tensorflow' };

const isNode = typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

function hasNavigatorGpu(): boolean {
  return navigatorGpu() != null;
}

/** In Node, exposes Dawn (the `webgpu` npm package) as `navigator.gpu` and its globals, once. */
async function installNodeWebGPU(): Promise<void> {
  if (hasNavigatorGpu()) return;
  let dawn: { create: (flags: string[]) => unknown; globals: Record<string, unknown> };
  try {
    dawn = (await import(/* @vite-ignore */ 'webgpu' as string)) as typeof dawn;
  } catch (e) {
    throw new BackendError(
      'webgpu backend in Node needs the `webgpu` npm package (Dawn): run `npm install webgpu`. ' +
        `Importing it failed: ${(e as Error).message}`,
      { field: 'backend', expected: 'the `webgpu` package installed', found: 'not installed' },
    );
  }
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create([]);
  const nav = (globalThis as { navigator?: object }).navigator;
  if (nav == null) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  } else {
    Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
  }
}

/** The slice of the WebGPU API this file touches (lib.dom of TypeScript 5.9 has no WebGPU types). */
interface MinimalGPU {
  requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string; description?: string } } | null>;
}

function navigatorGpu(): MinimalGPU | undefined {
  return (globalThis as { navigator?: { gpu?: MinimalGPU } }).navigator?.gpu;
}

async function describeAdapter(): Promise<string | undefined> {
  const gpu = navigatorGpu();
  if (gpu == null) return undefined;
  const adapter = await gpu.requestAdapter();
  if (adapter == null) return undefined;
  const info = adapter.info;
  if (info == null) return 'unknown adapter';
  return [info.vendor, info.architecture, info.description].filter((s) => s != null && s !== '').join(' / ') || 'unknown adapter';
}

const MAX_THREADS = 64;

/** The wasm thread count asked for: the option, else `SLMKIT_WASM_THREADS` in Node; checked. */
function wantedThreads(options: InitBackendOptions): number | undefined {
  const fromEnv = isNode ? process.env.SLMKIT_WASM_THREADS : undefined;
  const [value, field] =
    options.threads != null ? [options.threads as unknown, 'threads'] : fromEnv != null && fromEnv !== '' ? [Number(fromEnv), 'SLMKIT_WASM_THREADS'] : [undefined, ''];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_THREADS) {
    throw new ConfigError(`${field}: expected an integer from 1 to ${MAX_THREADS}, found ${field === 'threads' ? String(value) : fromEnv}`, {
      field,
      expected: `an integer in [1, ${MAX_THREADS}]`,
      found: field === 'threads' ? value : fromEnv,
    });
  }
  return value;
}

/** Starts tfjs's wasm backend with `threads` threads (its first start only), or checks the running one has them. */
async function startWasm(threads: number | undefined): Promise<number> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const started = tf.findBackend('wasm') != null;
  if (started) {
    const actual = wasm.getThreadsCount();
    if (threads != null && threads !== actual) {
      throw new ConfigError(
        `threads: the wasm backend already runs on ${actual} thread${actual === 1 ? '' : 's'}; the count is fixed at its first start`,
        { field: 'threads', expected: actual, found: threads },
      );
    }
    await setBackendOrThrow('wasm');
    return actual;
  }
  let restore = (): void => {};
  if (threads != null && threads > 1 && isNode) restore = await prepareNodeWasmThreads(threads, wasm.setThreadsCount);
  else if (threads != null) wasm.setThreadsCount(threads);
  try {
    await setBackendOrThrow('wasm');
  } finally {
    restore();
  }
  const actual = wasm.getThreadsCount();
  // slmkit's GEMM splits its products over workers of its own on the same shared heap (see wasm-gemm.ts). Where they
  // cannot start, XNNPACK keeps the products on several threads (gemmAvailable says no).
  const heap = wasmHeapMemory(tf.backend());
  if (actual > 1 && isNode && heap != null) await startGemmWorkers(heap, actual).catch(() => undefined);
  return actual;
}

async function setBackendOrThrow(tfName: string, name: BackendName = tfName as BackendName): Promise<void> {
  let ok = false;
  let cause = '';
  try {
    ok = await tf.setBackend(tfName);
    await tf.ready();
  } catch (e) {
    cause = (e as Error).message;
  }
  if (!ok || tf.getBackend() !== tfName) {
    throw new BackendError(`backend "${name}" failed to initialise${cause ? `: ${cause}` : ''}`, {
      field: 'backend',
      expected: name,
      found: tf.getBackend() ?? 'none',
    });
  }
}

async function registerBackend(name: BackendName): Promise<void> {
  switch (name) {
    case 'cpu':
      await import('@tensorflow/tfjs-backend-cpu');
      return;
    case 'wasm':
      installWasmMatMul((await import('@tensorflow/tfjs-backend-wasm')).getThreadsCount);
      return;
    case 'webgpu': {
      if (isNode) await installNodeWebGPU();
      if (!hasNavigatorGpu()) {
        throw new BackendError('webgpu backend: this browser has no navigator.gpu (WebGPU is not enabled here)', {
          field: 'backend',
          expected: 'navigator.gpu',
          found: 'undefined',
        });
      }
      const adapter = await navigatorGpu()!.requestAdapter();
      if (adapter == null) {
        throw new BackendError(
          'webgpu backend: navigator.gpu.requestAdapter() returned no adapter. ' +
            (isNode
              ? 'In Node without a GPU, install Debian\'s `chromium` (and `libvulkan1`) and set ' +
                'VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json to use SwiftShader.'
              : 'Start the browser with WebGPU enabled (Chromium: --enable-unsafe-webgpu) on a secure page.'),
          { field: 'backend', expected: 'a WebGPU adapter', found: null },
        );
      }
      await import('@tensorflow/tfjs-backend-webgpu');
      return;
    }
    case 'cuda':
      try {
        await import(/* @vite-ignore */ '@tensorflow/tfjs-node-gpu' as string);
      } catch (e) {
        throw new BackendError(
          'cuda backend needs the optional peer dependency @tensorflow/tfjs-node-gpu (CUDA 11.2 + cuDNN 8 on Linux): ' +
            `run \`npm install @tensorflow/tfjs-node-gpu\`. Importing it failed: ${(e as Error).message}`,
          { field: 'backend', expected: '@tensorflow/tfjs-node-gpu installed', found: 'not installed' },
        );
      }
      return;
  }
}

function defaultBackend(): { name: BackendName; reason: string } {
  const fromEnv = isNode ? process.env.SLMKIT_BACKEND : undefined;
  if (fromEnv != null && fromEnv !== '') {
    return { name: parseBackendName(fromEnv, 'SLMKIT_BACKEND'), reason: 'SLMKIT_BACKEND environment variable' };
  }
  if (isNode) return { name: 'wasm', reason: 'default for Node (WebAssembly SIMD CPU)' };
  if (hasNavigatorGpu()) return { name: 'webgpu', reason: 'default for a browser with navigator.gpu' };
  return { name: 'wasm', reason: 'default for a browser without navigator.gpu' };
}

function parseBackendName(value: string, field: string): BackendName {
  if ((BACKEND_NAMES as readonly string[]).includes(value)) return value as BackendName;
  throw new ConfigError(`${field}: unknown backend "${value}"; expected one of ${BACKEND_NAMES.join(', ')}`, {
    field,
    expected: BACKEND_NAMES,
    found: value,
  });
}

/**
 * Starts a tfjs backend and makes it current. With no name it picks the platform default (`wasm` in Node,
 * `webgpu` in a browser that has `navigator.gpu`, else `wasm`), or `SLMKIT_BACKEND` when set in Node. Asking for a
 * backend that cannot start throws a {@link BackendError}; it never silently switches to another one.
 *
 * In Node, `webgpu` runs through Dawn (the `webgpu` npm package); without a GPU, point `VK_ICD_FILENAMES` at
 * SwiftShader (`/usr/lib/chromium/vk_swiftshader_icd.json`, from Debian's `chromium`). `cuda` needs the optional peer
 * `@tensorflow/tfjs-node-gpu`.
 *
 * `wasm` runs on one thread in Node unless asked for more (`{ threads: 2 }`, or `SLMKIT_WASM_THREADS=2`): tfjs's
 * threaded build does not start in Node by itself, and this starts it (worker threads on XNNPACK's pool, which
 * never keep the process alive), with as many workers again for slmkit's GEMM. Matmuls and the other XNNPACK
 * kernels then split their work across the threads; slmkit's other WebAssembly kernels (fused attention, the scans)
 * stay on the calling thread.
 *
 * @param name - the backend to start; omit for the platform default.
 * @param options - `threads` for `wasm`; see {@link InitBackendOptions}.
 * @returns which backend is now current, and why.
 * @throws {@link BackendError} when the backend cannot start; {@link ConfigError} for an unknown name.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { initBackend } from '@slmkit/core';
 * const { name, reason } = await initBackend();
 * console.log(`running on ${name} (${reason}); tfjs says ${tf.getBackend()}`);
 * ```
 */
export async function initBackend(name?: BackendName, options: InitBackendOptions = {}): Promise<BackendInfo> {
  const chosen = name == null ? defaultBackend() : { name: parseBackendName(name, 'backend'), reason: 'requested' };
  if (options.threads != null && chosen.name !== 'wasm') {
    throw new ConfigError(`threads: only the wasm backend takes a thread count, not ${chosen.name}`, {
      field: 'threads',
      expected: 'backend wasm',
      found: chosen.name,
    });
  }
  await registerBackend(chosen.name);
  const tfName = TF_NAME[chosen.name];
  const info: BackendInfo = { name: chosen.name, tfBackend: tfName, reason: chosen.reason };
  if (chosen.name === 'wasm') info.threads = await startWasm(wantedThreads(options));
  else await setBackendOrThrow(tfName, chosen.name);
  if (chosen.name === 'webgpu') info.adapter = await describeAdapter();
  return info;
}

/**
 * Tries each backend in turn (without changing the current one afterwards) and returns those that start here.
 * Useful for tests and benchmarks that run on "every backend available".
 *
 * @param candidates - the backends to try; defaults to all of {@link BACKEND_NAMES} except `cuda`.
 *
 * @example
 * ```ts
 * import { availableBackends } from '@slmkit/core';
 * console.log(await availableBackends(['cpu', 'wasm'])); // ["cpu", "wasm"]
 * ```
 */
export async function availableBackends(
  candidates: readonly BackendName[] = ['webgpu', 'wasm', 'cpu'],
): Promise<BackendName[]> {
  const previous = tf.getBackend();
  const found: BackendName[] = [];
  for (const name of candidates) {
    try {
      await initBackend(name);
      found.push(name);
    } catch {
      // not available here
    }
  }
  if (previous != null) await tf.setBackend(previous);
  return found;
}
