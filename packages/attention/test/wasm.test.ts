// The committed WebAssembly bytes are the assembly of src/ops/wasm/attention.wat (regenerate with
// `npm run build:wasm -w @slmkit/attention`).
import { expect, it } from 'vitest';
// @ts-expect-error: a plain JavaScript build script without declarations
import { check } from '../scripts/build-wasm.mjs';

it('attention-wasm.ts holds the assembly of attention.wat', async () => {
  const { expected, found } = await check();
  expect(found).toBe(expected);
});
