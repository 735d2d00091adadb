// Assembles the repository's hand-written WebAssembly modules (.wat) into TypeScript files that hold their bytes
// (base64), so the packages ship no binary and need no build step beyond tsc. Run after editing a .wat:
// `npm run build:wasm` at the root. Each package's wasm test fails when its committed bytes are stale.
//
// A .wat may define text macros: the lines between `;; @define NAME` and `;; @end` are cut out and pasted, indented,
// in place of every `;; @NAME` line (V8 does not inline calls between wasm functions, so hot loops paste instead).
// `;; @include PATH` pastes a file (PATH from the repository's root) first: the macros several modules share, as
// scripts/wasm/pow2.wat.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import createWabt from 'wabt';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Every module: its .wat, the generated .ts, the exported constant and what it is. */
export const MODULES = [
  {
    wat: 'packages/ssm/src/ops/wasm/scan.wat',
    ts: 'packages/ssm/src/ops/wasm/scan-wasm.ts',
    constant: 'SCAN_WASM_BASE64',
    what: 'The selective-scan WebAssembly module (scan.wat), base64.',
  },
  {
    wat: 'packages/core/src/quant/wasm/quant.wat',
    ts: 'packages/core/src/quant/wasm/quant-wasm.ts',
    constant: 'QUANT_WASM_BASE64',
    what: 'The quantised-matmul WebAssembly module (quant.wat), base64.',
  },
  {
    wat: 'packages/core/src/wasm/gemm.wat',
    ts: 'packages/core/src/wasm/gemm-wasm.ts',
    constant: 'GEMM_WASM_BASE64',
    what: 'The float32 GEMM WebAssembly module (gemm.wat), importing an unshared memory, base64.',
    shared: {
      constant: 'GEMM_SHARED_WASM_BASE64',
      what: 'The same module importing a shared memory (the wasm backend\'s threaded build), base64.',
    },
  },
  {
    wat: 'packages/attention/src/ops/wasm/attention.wat',
    ts: 'packages/attention/src/ops/wasm/attention-wasm.ts',
    constant: 'ATTENTION_WASM_BASE64',
    what: 'The fused-attention WebAssembly module (attention.wat), importing an unshared memory, base64.',
    shared: {
      constant: 'ATTENTION_SHARED_WASM_BASE64',
      what: 'The same module importing a shared memory (the wasm backend\'s threaded build), base64.',
    },
  },
  {
    wat: 'packages/attention/src/ops/wasm/attention-tiled.wat',
    ts: 'packages/attention/src/ops/wasm/attention-tiled-wasm.ts',
    constant: 'ATTENTION_TILED_WASM_BASE64',
    what: 'The fused-attention kernel\'s tiled path (attention-tiled.wat), importing an unshared memory, base64.',
    shared: {
      constant: 'ATTENTION_TILED_SHARED_WASM_BASE64',
      what: 'The same module importing a shared memory (the wasm backend\'s threaded build), base64.',
    },
  },
];

/** The memory import a module declares, and what its `shared` variant declares instead. */
const UNSHARED_IMPORT = '(import "env" "memory" (memory 1))';
const SHARED_IMPORT = '(import "env" "memory" (memory 1 65536 shared))';

/** `text` with its includes pasted (`;; @include PATH`, PATH from the repository's root) and its macros expanded. */
export function expand(text) {
  const define = /^;; @define (\w+)\n([\s\S]*?)^;; @end\n/m;
  let out = text.replace(/^;; @include (\S+)\n/gm, (_, path) => readFileSync(join(root, path), 'utf8'));
  for (let match = define.exec(out); match !== null; match = define.exec(out)) {
    const [, name, block] = match;
    const body = block.replace(/\n$/, '').split('\n');
    out = out.replace(define, '').replace(new RegExp(`^( *);; @${name}$`, 'gm'), (_, indent) => body.map((l) => indent + l).join('\n'));
  }
  return out;
}

/**
 * The module bytes of one entry of {@link MODULES}; with `shared`, of its variant importing a shared memory (the
 * entry's .wat must then import `(memory 1)`).
 */
export async function assemble(entry, shared = false) {
  const wabt = await createWabt();
  let text = expand(readFileSync(join(root, entry.wat), 'utf8'));
  if (shared) {
    if (!text.includes(UNSHARED_IMPORT)) throw new Error(`${entry.wat}: a shared variant needs the line ${UNSHARED_IMPORT}`);
    text = text.replace(UNSHARED_IMPORT, SHARED_IMPORT);
  }
  const module = wabt.parseWat(entry.wat, text, { simd: true, threads: shared });
  // wabt's validator ignores the threads feature and rejects any shared memory; the unshared variant, the same code,
  // is validated, and the engine validates both when the tests instantiate them.
  if (!shared) module.validate();
  const { buffer } = module.toBinary({});
  module.destroy();
  return Buffer.from(buffer);
}

/** One exported base64 constant of a generated file. */
function constant(name, what, bytes) {
  const lines = bytes.toString('base64').match(/.{1,112}/g).map((l) => `  '${l}'`).join(' +\n');
  return `/** ${what} */\nexport const ${name} =\n${lines};\n`;
}

/** The generated TypeScript source of one entry for `bytes` (and `sharedBytes`, its shared variant's). */
export function source(entry, bytes, sharedBytes) {
  const name = entry.wat.split('/').pop();
  const shared = entry.shared == null ? '' : `\n${constant(entry.shared.constant, entry.shared.what, sharedBytes)}`;
  return `// Generated by scripts/build-wasm.mjs from ${name}: do not edit.\n\n${constant(entry.constant, entry.what, bytes)}${shared}`;
}

/** The generated source of one entry, assembling its variants. */
async function generate(entry) {
  return source(entry, await assemble(entry), entry.shared == null ? undefined : await assemble(entry, true));
}

/** Whether the committed .ts of `entry` holds the assembly of its .wat: `{ fresh, expected, found }`. */
export async function check(entry) {
  const expected = await generate(entry);
  const found = readFileSync(join(root, entry.ts), 'utf8');
  return { fresh: expected === found, expected, found };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const entry of MODULES) {
    const text = await generate(entry);
    writeFileSync(join(root, entry.ts), text);
    console.log(`${entry.wat} -> ${entry.ts} (${(await assemble(entry)).length} bytes)`);
  }
}
