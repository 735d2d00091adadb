// The committed WebAssembly bytes are the assembly of src/ops/wasm/attention.wat (regenerate with
// `npm run build:wasm` at the root).
import { expect, it } from 'vitest';
// @ts-expect-error: a plain JavaScript build script without declarations
import { MODULES, check } from '../../../scripts/build-wasm.mjs';

it('attention-wasm.ts holds the assembly of attention.wat', async () => {
  const entry = (MODULES as { wat: string }[]).find((m) => m.wat.endsWith('attention.wat'));
  const { expected, found } = await check(entry);
  expect(found).toBe(expected);
});
