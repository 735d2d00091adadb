// The committed WebAssembly bytes are the assembly of src/quant/wasm/quant.wat (regenerate with `npm run build:wasm`
// at the root), and they stay under the 4 KB that a browser's main thread compiles synchronously.
import { expect, it } from 'vitest';
// @ts-expect-error: a plain JavaScript build script without declarations
import { MODULES, check } from '../../../../scripts/build-wasm.mjs';
import { QUANT_WASM_BASE64 } from '../../src/quant/wasm/quant-wasm.js';

it('quant-wasm.ts holds the assembly of quant.wat', async () => {
  const entry = (MODULES as { wat: string }[]).find((m) => m.wat.endsWith('quant.wat'));
  const { expected, found } = await check(entry);
  expect(found).toBe(expected);
});

it('the module is under 4 KB', () => {
  expect(atob(QUANT_WASM_BASE64).length).toBeLessThan(4096);
});
