/**
 * One benchmark run end to end: start the backend, pick the cases, run them with the table (or progress lines)
 * printed as they finish, and write the JSON, Markdown and SVG results. `main.ts` calls it with the command
 * line's options; the tests call it in-process with tiny cases.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initBackend, type BackendName } from '@slmkit/core';
import { collectHeader, finishHeader, headerLines, type RunHeader } from './header.js';
import { selectCases, type BenchCase } from './registry.js';
import { fmtCheck, fmtMs } from './report/format.js';
import { TablePrinter } from './report/table.js';
import { toJson, writeResults } from './report/write.js';
import { mergeRounds, runCases, type CaseResult } from './runner.js';

export interface BenchOptions {
  /** Every case the selection is made from. */
  cases: readonly BenchCase[];
  /** The backend; omitted, `initBackend()` picks the platform default (`wasm` in Node, or `SLMKIT_BACKEND`). */
  backend?: BackendName;
  /** `wasm`: the threads this process runs on (default `SLMKIT_WASM_THREADS`, else 1). */
  threads?: number;
  /**
   * Runs the cases that ask for another wasm thread count or environment than this process has, and returns their
   * results; by default a child process of `main.js` (`--threads`, the environment added). Tests replace it.
   */
  runElsewhere?: (setup: ChildSetup, cases: BenchCase[], settings: { warmup: number; repeats: number; budgetMs: number }) => Promise<CaseResult[]>;
  quick?: boolean;
  filters?: string[];
  warmup?: number;
  repeats?: number;
  /**
   * Rounds over the selected cases (default 1): each round runs every case (set up, warmed up, timed, torn down)
   * with its share of the repeats and budget, and a case's samples from all rounds make its result. Cases compared
   * with each other are then timed in the same stretches of the run, not minutes apart, which on a machine whose
   * speed drifts keeps their ratios steadier.
   */
  rounds?: number;
  budgetMs?: number;
  /** Where result files go; `undefined` writes none. */
  outDir?: string;
  /** Print the results as JSON on `out` instead of the table (progress then goes to `err`). */
  json?: boolean;
  /** Standard output and error; default `process.stdout` / `process.stderr`. */
  out?: (s: string) => void;
  err?: (s: string) => void;
}

/** What a child process of the run differs in: the wasm thread count and environment variables. */
export interface ChildSetup {
  threads?: number;
  env: Record<string, string>;
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
  const rounds = options.rounds ?? 1;
  const filters = options.filters ?? [];

  const backend = await initBackend(options.backend, options.threads != null ? { threads: options.threads } : {});
  const threads = backend.threads;
  // Cases asking for a thread count or an environment this process does not have run in a child; cases asking
  // for a thread count are left out off wasm.
  const selected = selectCases(options.cases, { quick, filters }).filter((c) => c.threads == null || threads != null);
  const here = (c: BenchCase): boolean =>
    (c.threads == null || c.threads === threads) && Object.entries(c.env ?? {}).every(([k, v]) => process.env[k] === v);
  const cases = selected.filter(here);
  const elsewhere = new Map<string, { setup: ChildSetup; cases: BenchCase[] }>();
  for (const c of selected.filter((x) => !here(x))) {
    const setup: ChildSetup = { ...(c.threads != null ? { threads: c.threads } : threads != null ? { threads } : {}), env: c.env ?? {} };
    const key = JSON.stringify(setup);
    elsewhere.set(key, { setup, cases: [...(elsewhere.get(key)?.cases ?? []), c] });
  }
  const startMs = performance.now();
  const header = collectHeader({
    backend: backend.name,
    backendReason: backend.reason,
    ...(backend.adapter != null ? { adapter: backend.adapter } : {}),
    ...(threads != null ? { threads } : {}),
    quick,
    filters,
    warmup,
    repeats,
    budgetMs,
    rounds,
  });
  info(`${headerLines(header).join('\n')}\n\n`);
  if (selected.length === 0) info('no case matches the selection\n');

  const table = new TablePrinter(selected);
  const tty = !options.json && options.out == null && process.stderr.isTTY === true;
  if (!options.json) out(`${table.header()}\n`);
  const total = selected.length;
  const report = (r: CaseResult, i: number): void => {
    if (tty) err('\x1b[2K');
    if (options.json) err(`[${i + 1}/${total}] ${r.id}: ${fmtMs(r.medianMs)} ms ${fmtCheck(r)}\n`);
    else out(`${table.row(r)}\n`);
  };
  // Each round: this process's cases, then each child process's; rows print as cases finish in a single round, and
  // at the end (merged) over several.
  const perRound = { warmup, repeats: Math.ceil(repeats / rounds), budgetMs: budgetMs / rounds };
  const runElsewhere = options.runElsewhere ?? ((setup, group, settings) => childRun(backend.name, setup, group, settings));
  const roundResults: CaseResult[][] = [];
  for (let round = 0; round < rounds; round++) {
    if (rounds > 1) info(`round ${round + 1} of ${rounds}\n`);
    const onResult = (r: CaseResult, i: number): void => (rounds === 1 ? report(r, i) : undefined);
    const done = await runCases(cases, {
      ...perRound,
      backend: backend.name,
      ...(threads != null ? { threads } : {}),
      onStart: (c, i) => {
        if (tty) err(`  running ${c.id} (${i + 1}/${total})...\r`);
      },
      onResult,
    });
    for (const { setup, cases: group } of elsewhere.values()) {
      if (tty) err(`  running ${group.length} case${group.length === 1 ? '' : 's'} in a child process...\r`);
      for (const r of await runElsewhere(setup, group, perRound)) {
        done.push(r);
        onResult(r, done.length - 1);
      }
    }
    roundResults.push(done);
  }
  const results = rounds === 1 ? roundResults[0]! : mergeRounds(roundResults);
  if (rounds > 1) results.forEach(report);
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

/** Runs `cases` in a child `main.js --json` with `setup`, and returns its results (an error result per case if it fails). */
async function childRun(
  backend: string,
  setup: ChildSetup,
  cases: BenchCase[],
  settings: { warmup: number; repeats: number; budgetMs: number },
): Promise<CaseResult[]> {
  // The built entry point, from `dist/` (this file's home once built) or `src/` (under the tests).
  const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));
  const escape = (id: string): string => id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const args = [
    main,
    `--backend=${backend}`,
    ...(setup.threads != null ? [`--threads=${setup.threads}`] : []),
    '--json',
    '--no-write',
    `--filter=^(${cases.map((c) => escape(c.id)).join('|')})$`,
    `--warmup=${settings.warmup}`,
    `--repeats=${settings.repeats}`,
    `--budget=${settings.budgetMs / 1000}`,
  ];
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, args, { maxBuffer: 64 << 20, env: { ...process.env, ...setup.env } }, (error, out, errOut) =>
        error != null && out === '' ? reject(new Error(`${error.message}\n${errOut}`)) : resolve(out),
      );
    });
    return (JSON.parse(stdout) as { results: CaseResult[] }).results;
  } catch (e) {
    const message = `child process (${JSON.stringify(setup)}) failed: ${(e as Error).message}`;
    return cases.map((c) => ({
      id: c.id, block: c.block, series: c.series, axis: c.axis, phase: c.phase, shape: c.shape,
      backend, ...(setup.threads != null ? { threads: setup.threads } : {}), samplesMs: [], n: 0, setupMs: 0, leakedTensors: 0, error: message,
    }));
  }
}
