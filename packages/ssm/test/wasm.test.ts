// The committed WebAssembly bytes are the assembly of src/ops/wasm/scan.wat (regenerate with `npm run build:wasm`).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
// @ts-expect-error: a plain JavaScript build script without declarations
import { assemble, source } from '../scripts/build-wasm.mjs';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'ops', 'wasm');

it('scan-wasm.ts holds the assembly of scan.wat', async () => {
  const bytes: Buffer = await assemble();
  expect(readFileSync(join(dir, 'scan-wasm.ts'), 'utf8')).toBe(source(bytes));
});
