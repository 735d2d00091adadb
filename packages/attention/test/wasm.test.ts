// The committed WebAssembly bytes are the assembly of src/ops/wasm/attention.wat and attention-tiled.wat (regenerate
// with `npm run build:wasm` at the root), and each module stays under the 4 KB that a browser's main thread compiles
// synchronously.
import { expect, it } from 'vitest';
// @ts-expect-error: a plain JavaScript build script without declarations
import { MODULES, check } from '../../../scripts/build-wasm.mjs';
import { ATTENTION_TILED_WASM_BASE64 } from '../src/ops/wasm/attention-tiled-wasm.js';
import { ATTENTION_WASM_BASE64 } from '../src/ops/wasm/attention-wasm.js';

for (const [file, base64] of [
  ['attention.wat', ATTENTION_WASM_BASE64],
  ['attention-tiled.wat', ATTENTION_TILED_WASM_BASE64],
] as const) {
  it(`${file.replace('.wat', '-wasm.ts')} holds the assembly of ${file}, under 4 KB`, async () => {
    const entry = (MODULES as { wat: string }[]).find((m) => m.wat.endsWith(`/${file}`));
    const { expected, found } = await check(entry);
    expect(found).toBe(expected);
    expect(atob(base64).length).toBeLessThan(4096);
  });
}
