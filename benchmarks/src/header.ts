/**
 * The header every result file carries: the machine, the backend, the versions, the commit and the date.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';

export interface MachineInfo {
  /** CPU model as `os.cpus()` reports it. */
  cpu: string;
  /** Logical cores. */
  cores: number;
  memoryGiB: number;
  platform: string;
  arch: string;
  /** `os.loadavg()` (1, 5, 15 minutes) when the run started, and when it ended. */
  loadavgStart: number[];
  loadavgEnd?: number[];
}

export interface RunHeader {
  /** `YYYY-MM-DD` (UTC), the date in the result file names. */
  date: string;
  /** ISO time the run started. */
  startedAt: string;
  backend: string;
  /** Why this backend (`requested`, or why the default was chosen). */
  backendReason: string;
  /** For webgpu: the adapter. */
  adapter?: string;
  /** For wasm: the threads XNNPACK runs on in this process (cases that ask for another count run in a child). */
  threads?: number;
  machine: MachineInfo;
  versions: { node: string; tfjs: string };
  /** `git rev-parse --short HEAD`, with `-dirty` when the code under test had uncommitted changes; `unknown` outside git. */
  commit: string;
  quick: boolean;
  filters: string[];
  warmup: number;
  repeats: number;
  /** Time budget of one case's timed runs, in milliseconds; a case stops repeating past it (after 3 runs). */
  budgetMs: number;
  /** Rounds over the cases, each with its share of the repeats and budget (absent in results from before rounds: 1). */
  rounds?: number;
  /** Seconds the whole run took, setup included. */
  elapsedS?: number;
  /** A warning about the machine, set when the load average at the start was high. */
  loadNote?: string;
}

function git(args: string[]): string | undefined {
  try {
    const cwd = fileURLToPath(new URL('.', import.meta.url));
    return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/**
 * The commit the code under test comes from, with `-dirty` when that code (the packages, the benchmarks, the
 * lockfile) has uncommitted changes to tracked files; edits elsewhere (docs) do not change what is measured.
 */
export function gitCommit(): string {
  const head = git(['rev-parse', '--short=12', 'HEAD']);
  if (head == null) return 'unknown';
  const code = [':(top)packages', ':(top)benchmarks', ':(top,exclude)benchmarks/results', ':(top)package-lock.json'];
  const dirty = git(['status', '--porcelain', '--untracked-files=no', '--', ...code]);
  return dirty ? `${head}-dirty` : head;
}

/** What the load average says about the timings: a note when other work was competing for the cores. */
export function loadNote(loadavg: number[], cores: number): string | undefined {
  const oneMinute = loadavg[0] ?? 0;
  if (oneMinute <= 0.5 * cores) return undefined;
  return (
    `load average ${oneMinute.toFixed(2)} on ${cores} cores when the run started: other processes were ` +
    'competing for the CPU, so timings are noisier and slower than on an idle machine'
  );
}

export function collectHeader(options: {
  backend: string;
  backendReason: string;
  adapter?: string;
  threads?: number;
  quick: boolean;
  filters: string[];
  warmup: number;
  repeats: number;
  budgetMs: number;
  rounds?: number;
  now?: Date;
}): RunHeader {
  const now = options.now ?? new Date();
  const cpus = os.cpus();
  const loadavgStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const header: RunHeader = {
    date: now.toISOString().slice(0, 10),
    startedAt: now.toISOString(),
    backend: options.backend,
    backendReason: options.backendReason,
    ...(options.threads != null ? { threads: options.threads } : {}),
    machine: {
      cpu: cpus[0]?.model.trim() ?? 'unknown',
      cores: cpus.length,
      memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      platform: `${os.platform()} ${os.release()}`,
      arch: os.arch(),
      loadavgStart,
    },
    versions: { node: process.version, tfjs: tf.version_core },
    commit: gitCommit(),
    quick: options.quick,
    filters: options.filters,
    warmup: options.warmup,
    repeats: options.repeats,
    budgetMs: options.budgetMs,
    rounds: options.rounds ?? 1,
  };
  if (options.adapter != null) header.adapter = options.adapter;
  const note = loadNote(loadavgStart, cpus.length);
  if (note != null) header.loadNote = note;
  return header;
}

/** Marks the end of the run: the elapsed time and the load average then. */
export function finishHeader(header: RunHeader, startMs: number): void {
  header.elapsedS = Math.round((performance.now() - startMs) / 100) / 10;
  header.machine.loadavgEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
}

/** The header as short `key: value` lines, shared by the table, the Markdown and the SVG. */
export function headerLines(h: RunHeader): string[] {
  const m = h.machine;
  const lines = [
    `date: ${h.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}`,
    `backend: ${h.backend} (${h.backendReason})${h.adapter ? `, adapter ${h.adapter}` : ''}` +
      (h.threads != null ? `, ${h.threads} thread${h.threads === 1 ? '' : 's'}` : ''),
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.platform} ${m.arch}`,
    `load average (1/5/15 min): ${m.loadavgStart.join(' / ')} at start` +
      (m.loadavgEnd ? `, ${m.loadavgEnd.join(' / ')} at end` : ''),
    `versions: node ${h.versions.node}, tfjs-core ${h.versions.tfjs}`,
    `commit: ${h.commit}`,
    `run: ${h.quick ? '--quick, ' : ''}${h.filters.length ? `--filter ${h.filters.join(' ')}, ` : ''}` +
      `${h.warmup} warm-up, ${h.repeats} repeats (budget ${h.budgetMs / 1000} s per case)` +
      ((h.rounds ?? 1) > 1 ? ` over ${h.rounds} rounds` : '') +
      (h.elapsedS != null ? `, ${h.elapsedS} s in all` : ''),
  ];
  if (h.loadNote != null) lines.push(`note: ${h.loadNote}`);
  return lines;
}
