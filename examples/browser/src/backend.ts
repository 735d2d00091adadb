/**
 * Backend choice for the page: WebGPU when the browser has it, otherwise wasm, and never silently.
 */
// Vite serves these files (and copies them into the build); tfjs loads the one this browser can run.
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreadedSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { initBackend, type BackendInfo, type BackendName } from '@slmkit/core';

export interface BackendChoice {
  info: BackendInfo;
  /** Why WebGPU was not used, when the page fell back to wasm. */
  fallback?: string;
}

/**
 * Starts `requested` if given (and fails if it cannot start), else WebGPU, else wasm with the reason WebGPU could
 * not start.
 */
export async function chooseBackend(requested: BackendName | null): Promise<BackendChoice> {
  // The same module instance initBackend('wasm') registers; loaded only here, so it stays a lazy chunk.
  const { setWasmPaths } = await import('@tensorflow/tfjs-backend-wasm');
  setWasmPaths({
    'tfjs-backend-wasm.wasm': wasmPlain,
    'tfjs-backend-wasm-simd.wasm': wasmSimd,
    'tfjs-backend-wasm-threaded-simd.wasm': wasmThreadedSimd,
  });
  if (requested != null) return { info: await initBackend(requested) };
  try {
    const info = await initBackend('webgpu');
    return { info: { ...info, reason: 'default: this browser has WebGPU' } };
  } catch (e) {
    const fallback = e instanceof Error ? e.message : String(e);
    return { info: await initBackend('wasm'), fallback };
  }
}
