/**
 * `npm run bench`: the per-block micro-benchmarks. Run with `--help` for the options.
 */
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BackendName } from '@slmkit/core';
import { runBench, serveCases } from './bench.js';
import { allCases } from './cases/index.js';
import { selectCases } from './registry.js';

const USAGE = `usage: npm run bench -- [options]

  --quick             the one-minute subset (fewer cases, 1 warm-up, 5 repeats, 1.5 s budget per case)
  --filter PATTERN    only cases whose id matches PATTERN, a regular expression or a plain substring
                      (repeatable: a case runs if any pattern matches), e.g. --filter 'mlp/swiglu' --filter 'T=512'
  --backend NAME      wasm (default in Node), cpu or webgpu
  --threads N         wasm: XNNPACK threads of this run (default SLMKIT_WASM_THREADS, else 1); cases that ask
                      for another count run in a child process
  --json              print the results as JSON on stdout instead of the table (progress goes to stderr)
  --repeats N         timed runs per case (default 10, --quick 5)
  --rounds N          run the selection N times, each with its share of the repeats and budget, and merge each
                      case's samples (default 1): compared cases are then timed close together in time
  --warmup N          untimed runs before them (default 2, --quick 1), continued until they add up to 0.25 s
  --budget SECONDS    stop repeating a case once its timed runs add up to this, after 3 of them (default 10)
  --out DIR           where the JSON, Markdown and SVG go (default benchmarks/results)
  --no-write          write no result files
  --list              list the selected case ids and exit
  --serve             internal: run as a run's child process (requests on standard input, results on output)
`;

function usageError(message: string): never {
  process.stderr.write(`${message}\n\n${USAGE}`);
  process.exit(2);
}

function count(name: string, v: string | undefined): number | undefined {
  if (v == null) return undefined;
  const x = Number(v);
  if (!Number.isInteger(x) || x < 0) usageError(`--${name} must be a non-negative integer, found "${v}"`);
  return x;
}

function parse() {
  try {
    return parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        filter: { type: 'string', multiple: true },
        backend: { type: 'string' },
        threads: { type: 'string' },
        json: { type: 'boolean', default: false },
        repeats: { type: 'string' },
        rounds: { type: 'string' },
        warmup: { type: 'string' },
        budget: { type: 'string' },
        out: { type: 'string' },
        'no-write': { type: 'boolean', default: false },
        list: { type: 'boolean', default: false },
        serve: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }).values;
  } catch (e) {
    return usageError((e as Error).message);
  }
}

const values = parse();
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (values.backend != null && !['wasm', 'cpu', 'webgpu'].includes(values.backend)) {
  usageError(`--backend must be wasm, cpu or webgpu, found "${values.backend}"`);
}
if (values.list) {
  const ids = selectCases(allCases, { quick: values.quick, filters: values.filter ?? [] }).map((c) => c.id);
  process.stdout.write(`${ids.join('\n')}\n`);
  process.exit(0);
}

const threads = count('threads', values.threads);
if (threads === 0) usageError('--threads must be at least 1');
if (values.serve) {
  await serveCases({
    cases: allCases,
    ...(values.backend != null ? { backend: values.backend as BackendName } : {}),
    ...(threads != null ? { threads } : {}),
    input: createInterface({ input: process.stdin }),
    out: (line) => void process.stdout.write(line),
  });
  process.exit(0);
}
const repeats = count('repeats', values.repeats);
const rounds = count('rounds', values.rounds);
const warmup = count('warmup', values.warmup);
const budget = values.budget == null ? undefined : Number(values.budget);
if (budget != null && !(budget >= 0)) usageError(`--budget must be a number of seconds, found "${values.budget}"`);
const run = await runBench({
  cases: allCases,
  ...(values.backend != null ? { backend: values.backend as BackendName } : {}),
  ...(threads != null ? { threads } : {}),
  quick: values.quick,
  filters: values.filter ?? [],
  ...(repeats != null ? { repeats: Math.max(1, repeats) } : {}),
  ...(rounds != null ? { rounds: Math.max(1, rounds) } : {}),
  ...(warmup != null ? { warmup } : {}),
  ...(budget != null ? { budgetMs: budget * 1000 } : {}),
  ...(values['no-write'] ? {} : { outDir: values.out ?? fileURLToPath(new URL('../results', import.meta.url)) }),
  json: values.json,
});
if (run.results.some((r) => r.error != null)) process.exitCode = 1;
