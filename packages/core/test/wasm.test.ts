// The committed GEMM bytes are the assembly of src/wasm/gemm.wat (regenerate with `npm run build:wasm` at the root),
// both variants, and the module stays under the 4 KB that a browser's main thread compiles synchronously.
import { expect, it } from 'vitest';
// @ts-expect-error: a plain JavaScript build script without declarations
import { MODULES, check } from '../../../scripts/build-wasm.mjs';
import { instantiateWasm, instantiateWasmIn } from '../src/index.js';
import { GEMM_SHARED_WASM_BASE64, GEMM_WASM_BASE64 } from '../src/wasm/gemm-wasm.js';

it('gemm-wasm.ts holds the assembly of gemm.wat', async () => {
  const entry = (MODULES as { wat: string }[]).find((m) => m.wat.endsWith('gemm.wat'));
  const { expected, found } = await check(entry);
  expect(found).toBe(expected);
});

it('the module is under 4 KB', () => {
  expect(atob(GEMM_WASM_BASE64).length).toBeLessThan(4096);
});

it('both variants compute C = A · B in their memory, shared or not: padded rows and columns, two chunks of k, a split, few rows', () => {
  const [m, k, n] = [6, 2100, 11]; // a padded row group, a padded column panel, k over the 2048-chunk
  const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.7));
  const b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i * 0.3));
  const want = new Float64Array(m * n);
  // Σ |a b| per entry: float32 rounding of the sum stays far below 1e-7 of it (1e-9 measured); a lost term or chunk
  // of k is of its order.
  const scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      for (let p = 0; p < k; p++) {
        want[i * n + j] += a[i * k + p] * b[p * n + j];
        scale[i * n + j] += Math.abs(a[i * k + p] * b[p * n + j]);
      }
    }
  }
  // Float offsets: A, B, C with 8 guard cells after it, packed A, packed B (two panels of 8 columns).
  const [pa, pb, pc] = [0, m * k, m * k + k * n];
  const [ap, bp] = [pc + m * n + 8, pc + m * n + 8 + 8 * k];
  type Gemm = Record<'pack_a' | 'pack_b_all' | 'panels' | 'rows', (...args: number[]) => void>;
  for (const [base64, shared] of [[GEMM_WASM_BASE64, false], [GEMM_SHARED_WASM_BASE64, true]] as const) {
    const memory = new WebAssembly.Memory({ initial: 8, maximum: 16, shared });
    const gemm = instantiateWasm<Gemm>(base64, { env: { memory } });
    expect(gemm, `instantiates (shared ${shared})`).not.toBeNull();
    const heap = new Float32Array(memory.buffer);
    heap.set(a, pa);
    heap.set(b, pb);
    gemm!.pack_b_all(pb * 4, bp * 4, n, k);
    gemm!.pack_a(pa * 4, ap * 4, m, k);
    const check = (rows: number, what: string): void => {
      for (let i = 0; i < rows * n; i++) expect(Math.abs(heap[pc + i] - want[i]), `${what}: C[${i}]`).toBeLessThan(1e-7 * scale[i]);
      for (let i = pc + rows * n; i < pc + m * n + 8; i++) expect(heap[i], `${what}: cell ${i} after C`).toBe(-7);
    };
    // The 4 × 8 tiles, in two shares of the panels as two threads would run them.
    heap.fill(-7, pc, ap);
    gemm!.panels(ap * 4, bp * 4, pc * 4, m, n, k, 0, 8);
    gemm!.panels(ap * 4, bp * 4, pc * 4, m, n, k, 8, n);
    check(m, 'panels');
    // The 1 × 8 tiles straight from A, for three rows.
    heap.fill(-7, pc, ap);
    gemm!.rows(pa * 4, bp * 4, pc * 4, 3, n, k, 0, n);
    check(3, 'rows');
  }
});

it('instantiateWasmIn: one instance per memory and module, the shared variant for a shared memory', () => {
  const variants = { unshared: GEMM_WASM_BASE64, shared: GEMM_SHARED_WASM_BASE64 };
  const plain = new WebAssembly.Memory({ initial: 1 });
  const shared = new WebAssembly.Memory({ initial: 1, maximum: 4, shared: true });
  const a = instantiateWasmIn<object>(plain, variants);
  const b = instantiateWasmIn<object>(shared, variants);
  expect(a).not.toBeNull();
  expect(b).not.toBeNull(); // the unshared bytes would fail to instantiate on a shared memory
  expect(instantiateWasmIn<object>(plain, variants)).toBe(a);
  expect(b).not.toBe(a);
  // The wrong variant for a memory cannot instantiate: the choice is what makes b work.
  expect(instantiateWasm(GEMM_WASM_BASE64, { env: { memory: shared } })).toBeNull();
});
