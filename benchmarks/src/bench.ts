/**
 * One benchmark run end to end: start the backend, pick the cases, run them with the table (or progress lines)
 * printed as they finish, and write the JSON, Markdown and SVG results. `main.ts` calls it with the command
 * line's options; the tests call it in-process with tiny cases.
 */
import { initBackend, type BackendName } from '@slmkit/core';
import { collectHeader, finishHeader, headerLines, type RunHeader } from './header.js';
import { selectCases, type BenchCase } from './registry.js';
import { fmtCheck, fmtMs } from './report/format.js';
import { TablePrinter } from './report/table.js';
import { toJson, writeResults } from './report/write.js';
import { runCases, type CaseResult } from './runner.js';

export interface BenchOptions {
  /** Every case the selection is made from. */
  cases: readonly BenchCase[];
  /** The backend; omitted, `initBackend()` picks the platform default (`wasm` in Node, or `SLMKIT_BACKEND`). */
  backend?: BackendName;
  quick?: boolean;
  filters?: string[];
  warmup?: number;
  repeats?: number;
  budgetMs?: number;
  /** Where result files go; `undefined` writes none. */
  outDir?: string;
  /** Print the results as JSON on `out` instead of the table (progress then goes to `err`). */
  json?: boolean;
  /** Standard output and error; default `process.stdout` / `process.stderr`. */
  out?: (s: string) => void;
  err?: (s: string) => void;
}

export interface BenchRun {
  header: RunHeader;
  results: CaseResult[];
  files?: { json: string; md: string; svg: string };
}

/** Defaults of a full run and of `--quick`. */
export const DEFAULTS = {
  full: { warmup: 2, repeats: 10, budgetMs: 10_000 },
  quick: { warmup: 1, repeats: 5, budgetMs: 1_500 },
} as const;

export async function runBench(options: BenchOptions): Promise<BenchRun> {
  const out = options.out ?? ((s: string) => void process.stdout.write(s));
  const err = options.err ?? ((s: string) => void process.stderr.write(s));
  const info = (s: string): void => (options.json ? err : out)(s);
  const quick = options.quick ?? false;
  const defaults = quick ? DEFAULTS.quick : DEFAULTS.full;
  const warmup = options.warmup ?? defaults.warmup;
  const repeats = options.repeats ?? defaults.repeats;
  const budgetMs = options.budgetMs ?? defaults.budgetMs;
  const filters = options.filters ?? [];

  const backend = await initBackend(options.backend);
  const cases = selectCases(options.cases, { quick, filters });
  const startMs = performance.now();
  const header = collectHeader({
    backend: backend.name,
    backendReason: backend.reason,
    ...(backend.adapter != null ? { adapter: backend.adapter } : {}),
    quick,
    filters,
    warmup,
    repeats,
    budgetMs,
  });
  info(`${headerLines(header).join('\n')}\n\n`);
  if (cases.length === 0) info('no case matches the selection\n');

  const table = new TablePrinter(cases);
  const tty = !options.json && options.out == null && process.stderr.isTTY === true;
  if (!options.json) out(`${table.header()}\n`);
  const results = await runCases(cases, {
    warmup,
    repeats,
    budgetMs,
    backend: backend.name,
    onStart: (c, i, total) => {
      if (tty) err(`  running ${c.id} (${i + 1}/${total})...\r`);
    },
    onResult: (r, i, total) => {
      if (tty) err('\x1b[2K');
      if (options.json) err(`[${i + 1}/${total}] ${r.id}: ${fmtMs(r.medianMs)} ms ${fmtCheck(r)}\n`);
      else out(`${table.row(r)}\n`);
    },
  });
  finishHeader(header, startMs);

  const run: BenchRun = { header, results };
  if (options.outDir != null) run.files = await writeResults(options.outDir, header, results);
  if (options.json) out(toJson(header, results));

  const errors = results.filter((r) => r.error != null).length;
  const leaks = results.filter((r) => r.leakedTensors !== 0).length;
  info(
    `\n${results.length} case${results.length === 1 ? '' : 's'} in ${header.elapsedS} s on ${header.backend}` +
      `${errors ? `, ${errors} FAILED` : ''}${leaks ? `, ${leaks} LEAKED tensors` : ''}\n`,
  );
  if (run.files) info(`wrote ${run.files.json}, ${run.files.md}, ${run.files.svg}\n`);
  return run;
}
