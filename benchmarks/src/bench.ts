/**
 * One benchmark run end to end: start the backend, pick the cases, run them with the table (or progress lines)
 * printed as they finish, and write the JSON, Markdown and SVG results. `main.ts` calls it with the command
 * line's options; the tests call it in-process with tiny cases.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
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
   * results; by default a child process of `main.js --serve` per setup (`--threads`, the environment added), kept
   * for the whole run. Tests replace it.
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
  // The selection in its order, cut where the place a case runs changes: here, or a child process per setup.
  const groups: { setup: ChildSetup | null; cases: BenchCase[] }[] = [];
  for (const c of selected) {
    const setup: ChildSetup | null = here(c)
      ? null
      : { ...(c.threads != null ? { threads: c.threads } : threads != null ? { threads } : {}), env: c.env ?? {} };
    const last = groups[groups.length - 1];
    if (last != null && JSON.stringify(last.setup) === JSON.stringify(setup)) last.cases.push(c);
    else groups.push({ setup, cases: [c] });
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
  // Each round runs the selection in its order, a case that runs in a child process beside the cases around it (a
  // two-thread variant right after its one-thread case), so that compared cases are timed seconds apart, not minutes;
  // rows print as cases finish in a single round, and at the end (merged) over several.
  const perRound = { warmup, repeats: Math.ceil(repeats / rounds), budgetMs: budgetMs / rounds };
  const children = options.runElsewhere == null ? new ChildProcesses(backend.name) : null;
  const runElsewhere = options.runElsewhere ?? ((setup, group, settings) => children!.run(setup, group, settings));
  const roundResults: CaseResult[][] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      if (rounds > 1) info(`round ${round + 1} of ${rounds}\n`);
      const done: CaseResult[] = [];
      const finished = (r: CaseResult): void => {
        done.push(r);
        if (rounds === 1) report(r, done.length - 1);
      };
      for (const { setup, cases: group } of groups) {
        if (setup != null) {
          if (tty) err(`  running ${group.length} case${group.length === 1 ? '' : 's'} in a child process...\r`);
          (await runElsewhere(setup, group, perRound)).forEach(finished);
          continue;
        }
        const offset = done.length;
        await runCases(group, {
          ...perRound,
          backend: backend.name,
          ...(threads != null ? { threads } : {}),
          onStart: (c, i) => {
            if (tty) err(`  running ${c.id} (${offset + i + 1}/${total})...\r`);
          },
          onResult: finished,
        });
      }
      roundResults.push(done);
    }
  } finally {
    children?.close();
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

/** What {@link serveCases} reads, a line each: the cases to run (by id) and their settings. */
interface ServeRequest {
  ids: string[];
  warmup: number;
  repeats: number;
  budgetMs: number;
}

/**
 * Child processes of the built `main.js --serve`, one per setup (thread count and environment), started when first
 * asked and kept for the whole run: each request is a line on the child's standard input, each answer a line on its
 * standard output.
 */
class ChildProcesses {
  private readonly children = new Map<string, { process: ChildProcessWithoutNullStreams; answers: AsyncIterator<string>; stderr: string[] }>();

  constructor(private readonly backend: string) {}

  /** Runs `cases` with `settings` in the child for `setup`; an error result per case if it fails. */
  async run(setup: ChildSetup, cases: BenchCase[], settings: { warmup: number; repeats: number; budgetMs: number }): Promise<CaseResult[]> {
    const child = this.child(setup);
    try {
      const request: ServeRequest = { ids: cases.map((c) => c.id), ...settings };
      child.process.stdin.write(`${JSON.stringify(request)}\n`);
      for (let next = await child.answers.next(); !next.done; next = await child.answers.next()) {
        if (next.value.startsWith('{')) return (JSON.parse(next.value) as { results: CaseResult[] }).results;
      }
      throw new Error(`exited (code ${child.process.exitCode})\n${child.stderr.join('').slice(-2000)}`);
    } catch (e) {
      this.children.delete(JSON.stringify(setup));
      child.process.kill();
      const message = `child process (${JSON.stringify(setup)}) failed: ${(e as Error).message}`;
      return cases.map((c) => ({
        id: c.id, block: c.block, series: c.series, axis: c.axis, phase: c.phase, shape: c.shape, backend: this.backend,
        ...(setup.threads != null ? { threads: setup.threads } : {}), samplesMs: [], n: 0, setupMs: 0, leakedTensors: 0, error: message,
      }));
    }
  }

  /** Ends every child (each exits at the end of its input). */
  close(): void {
    for (const { process: child } of this.children.values()) child.stdin.end();
    this.children.clear();
  }

  private child(setup: ChildSetup) {
    const key = JSON.stringify(setup);
    const running = this.children.get(key);
    if (running != null) return running;
    // The built entry point, from `dist/` (this file's home once built) or `src/` (under the tests).
    const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));
    const args = [main, `--backend=${this.backend}`, ...(setup.threads != null ? [`--threads=${setup.threads}`] : []), '--serve'];
    const process_ = spawn(process.execPath, args, { env: { ...process.env, ...setup.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const stderr: string[] = [];
    process_.stderr.on('data', (d: Buffer) => void stderr.push(d.toString()));
    process_.stdin.on('error', () => {}); // a child that died answers with an error result instead
    const child = { process: process_, answers: createInterface({ input: process_.stdout })[Symbol.asyncIterator](), stderr };
    this.children.set(key, child);
    return child;
  }
}

/**
 * The other end of a run's child processes (`main.js --serve`): starts the backend once, then for each request line
 * on `input` runs the cases it names among `cases` and writes their results as one JSON line to `out`, until the
 * input ends.
 */
export async function serveCases(options: {
  cases: readonly BenchCase[];
  backend?: BackendName;
  threads?: number;
  input: AsyncIterable<string>;
  out: (s: string) => void;
}): Promise<void> {
  // Listening before the backend starts: a readline interface drops the lines that arrive before its iterator exists.
  const lines = options.input[Symbol.asyncIterator]();
  const backend = await initBackend(options.backend, options.threads != null ? { threads: options.threads } : {});
  const byId = new Map(options.cases.map((c) => [c.id, c]));
  for (let next = await lines.next(); !next.done; next = await lines.next()) {
    const line = next.value;
    if (line.trim() === '') continue;
    const { ids, warmup, repeats, budgetMs } = JSON.parse(line) as ServeRequest;
    const unknown = ids.filter((id) => !byId.has(id));
    if (unknown.length > 0) throw new Error(`serve: no case ${unknown.join(', ')}`);
    const results = await runCases(
      ids.map((id) => byId.get(id)!),
      { warmup, repeats, budgetMs, backend: backend.name, ...(backend.threads != null ? { threads: backend.threads } : {}) },
    );
    options.out(`${JSON.stringify({ results })}\n`);
  }
}
