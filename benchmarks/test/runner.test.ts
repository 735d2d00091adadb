// The runner end to end on tiny cases: result files are written and well-formed, leaks and errors are flagged.
// Nothing here asserts on a timing.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBench, serveCases } from '../src/bench.js';
import { allCases } from '../src/cases/index.js';
import { loadNote } from '../src/header.js';
import { benchCase, checkUniqueIds, selectCases, type BenchCase } from '../src/registry.js';
import { MAX_WARMUP_RUNS, mergeRounds, quantile, type CaseResult } from '../src/runner.js';
import type { ResultsFile } from '../src/report/write.js';

/** A cheap elementwise case at sequence length T, in the series `tiny/<name>`. */
function tiny(name: string, T: number, extra: Partial<BenchCase> = {}): BenchCase {
  return benchCase({
    block: 'tiny',
    series: `tiny/${name}`,
    axis: { name: 'T', value: T },
    phase: T === 1 ? 'decode' : 'prefill',
    shape: { B: 1, T, d: 8 },
    bytes: 2 * T * 8 * 4,
    flops: T * 8,
    setup: () => {
      const x = tf.ones([1, T, 8]);
      return { run: () => tf.mul(x, 2), teardown: () => x.dispose() };
    },
    ...extra,
  });
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'slmkit-bench-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('registry', () => {
  it('has unique, well-formed ids, each the series plus its axis', () => {
    expect(() => checkUniqueIds(allCases)).not.toThrow();
    for (const c of allCases) {
      expect(c.id).toBe(`${c.series}/${c.axis.name}=${c.axis.value}`);
      expect(c.series.startsWith(`${c.block}/`)).toBe(true);
      expect(c.id).toMatch(/^[A-Za-z0-9_./=-]+$/);
      expect(['prefill', 'decode', 'train']).toContain(c.phase);
    }
    expect(selectCases(allCases, { quick: true }).length).toBeGreaterThan(0);
  });

  it('selects by substring or regular expression, any filter matching', () => {
    const ids = (filters: string[]) => selectCases(allCases, { filters }).map((c) => c.id);
    expect(ids(['mlp/swiglu/forward/T=128'])).toEqual(['mlp/swiglu/forward/T=128']);
    expect(ids(['^norm/rms/T=(1|512)$'])).toEqual(['norm/rms/T=1', 'norm/rms/T=512']);
    expect(ids(['^norm/rms/T=1$', '^norm/layer/T=1$'])).toEqual(['norm/rms/T=1', 'norm/layer/T=1']);
    expect(ids(['no such case'])).toEqual([]);
  });

  it('rejects a series outside its block and a duplicate id', () => {
    expect(() => benchCase({ ...tiny('a', 1), block: 'other', series: 'tiny/a' })).toThrow(/must start with its block/);
    expect(() => checkUniqueIds([tiny('a', 1), tiny('a', 1)])).toThrow(/registered twice/);
  });
});

describe('runner', () => {
  it('writes JSON, Markdown and SVG with the header, a row per case and a line per series', async () => {
    const cases = [tiny('double', 4), tiny('double', 16), tiny('other', 8)];
    let printed = '';
    const run = await runBench({
      cases,
      backend: 'cpu',
      warmup: 1,
      repeats: 1,
      outDir: dir,
      out: (s) => (printed += s),
      err: (s) => (printed += s),
    });
    expect(run.results.map((r) => r.id)).toEqual(['tiny/double/T=4', 'tiny/double/T=16', 'tiny/other/T=8']);
    expect(run.files).toBeDefined();
    const files = run.files!;
    expect(path.basename(files.json)).toMatch(/^\d{4}-\d{2}-\d{2}-cpu\.json$/);

    // The table, printed as cases finish, has the backend and one row per case.
    expect(printed).toContain('backend: cpu');
    for (const c of cases) expect(printed).toContain(c.id);

    const json = JSON.parse(await readFile(files.json, 'utf8')) as ResultsFile;
    expect(json.schema).toBe(1);
    expect(json.header.backend).toBe('cpu');
    expect(json.header.machine.cores).toBeGreaterThan(0);
    expect(json.header.machine.cpu).not.toBe('');
    expect(json.header.machine.loadavgStart).toHaveLength(3);
    expect(json.header.versions.node).toBe(process.version);
    expect(json.header.versions.tfjs).toBe(tf.version_core);
    expect(json.header.commit).not.toBe('');
    expect(json.header.date).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(json.results).toHaveLength(3);
    for (const r of json.results) {
      expect(r.backend).toBe('cpu');
      expect(r.n).toBe(1);
      expect(r.samplesMs).toHaveLength(1);
      expect(Number.isFinite(r.medianMs)).toBe(true);
      expect(Number.isFinite(r.gbps)).toBe(true);
      expect(r.leakedTensors).toBe(0);
      expect(r.error).toBeUndefined();
    }

    const md = await readFile(files.md, 'utf8');
    expect(md.startsWith('# slmkit benchmarks: cpu, ')).toBe(true);
    for (const key of ['machine', 'backend', 'versions', 'commit', 'load average (1/5/15 min)']) {
      expect(md).toContain(`**${key}**`);
    }
    const rows = md.split('\n').filter((l) => l.startsWith('| '));
    expect(rows[0]).toMatch(/^\| case \| phase \| shape \| median ms \|/);
    expect(rows.slice(2).map((l) => l.split(' | ')[0]!.slice(2))).toEqual(cases.map((c) => c.id));

    const svg = await readFile(files.svg, 'utf8');
    expect(XMLValidator.validate(svg)).toBe(true);
    const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', isArray: (name) => name === 'g' })
      .parse(svg) as { svg: { g: { g?: { '@class': string; '@data-series': string; polyline: unknown }[] }[] } };
    const series = doc.svg.g.flatMap((panel) => panel.g ?? []).filter((g) => g['@class'] === 'series');
    expect(series.map((g) => g['@data-series'])).toEqual(['tiny/double', 'tiny/other']);
    for (const g of series) expect(g.polyline).toBeDefined();
    expect(svg).toContain(`commit: ${json.header.commit}`);
  });

  it('flags a case that leaks tensors and records one that throws, and goes on', async () => {
    const kept: tf.Tensor[] = [];
    const leaky = tiny('leaky', 2, {
      setup: () => {
        const x = tf.ones([1, 2, 8]);
        return {
          run: () => {
            kept.push(tf.add(x, 1)); // never disposed: the leak
            return tf.mul(x, 2);
          },
          teardown: () => x.dispose(),
        };
      },
    });
    const broken = tiny('broken', 2, {
      setup: () => {
        const x = tf.ones([1, 2, 8]);
        return {
          run: () => {
            throw new Error('this case is broken');
          },
          teardown: () => x.dispose(),
        };
      },
    });
    let printed = '';
    const run = await runBench({
      cases: [leaky, broken, tiny('fine', 2)],
      backend: 'cpu',
      warmup: 0,
      repeats: 2,
      out: (s) => (printed += s),
      err: (s) => (printed += s),
    });
    const [l, b, f] = run.results;
    expect(l!.leakedTensors).toBe(2);
    expect(l!.n).toBe(2);
    expect(b!.error).toBe('this case is broken');
    expect(b!.leakedTensors).toBe(0);
    expect(b!.n).toBe(0);
    expect(f!.error).toBeUndefined();
    expect(f!.leakedTensors).toBe(0);
    expect(printed).toContain('LEAK +2 tensors');
    expect(printed).toContain('ERROR: this case is broken');
    expect(run.files).toBeUndefined();
    tf.dispose(kept);
  });

  it('runs a registered case without leaking, with --json on stdout', async () => {
    let stdout = '';
    let stderr = '';
    const run = await runBench({
      cases: allCases,
      filters: ['^norm/rms/T=1$'],
      backend: 'cpu',
      warmup: 0,
      repeats: 1,
      json: true,
      out: (s) => (stdout += s),
      err: (s) => (stderr += s),
    });
    expect(run.results).toHaveLength(1);
    expect(run.results[0]!.leakedTensors).toBe(0);
    expect(run.results[0]!.error).toBeUndefined();
    const parsed = JSON.parse(stdout) as ResultsFile; // stdout is nothing but the JSON
    expect(parsed.results[0]!.id).toBe('norm/rms/T=1');
    expect(stderr).toContain('[1/1] norm/rms/T=1');
  });
});

describe('warm-up', () => {
  it('warms a fast case up for at least WARMUP_MS (at most MAX_WARMUP_RUNS runs); --warmup 0 means none', async () => {
    let runs = 0;
    const counted = tiny('counted', 2, {
      setup: () => ({ run: () => (runs++, tf.zeros([1])), teardown: () => {} }),
    });
    const quiet = { backend: 'cpu' as const, repeats: 1, out: () => {}, err: () => {} };
    await runBench({ ...quiet, cases: [counted], warmup: 1 });
    expect(runs).toBeGreaterThan(2);
    expect(runs).toBeLessThanOrEqual(MAX_WARMUP_RUNS + 1);
    runs = 0;
    await runBench({ ...quiet, cases: [counted], warmup: 0 });
    expect(runs).toBe(1);
  });
});

describe('wasm thread counts', () => {
  it('runs cases asking for another thread count elsewhere, in one results list, and leaves them out off wasm', async () => {
    const asked: [number, string[]][] = [];
    const envs: Record<string, string>[] = [];
    process.env.SLMKIT_BENCH_TEST_HERE = 'yes';
    const run = await runBench({
      cases: [
        tiny('one', 2),
        tiny('two', 2, { threads: 2 }),
        tiny('same', 3, { threads: 1 }),
        tiny('env-here', 2, { env: { SLMKIT_BENCH_TEST_HERE: 'yes' } }),
        tiny('env-there', 2, { env: { SLMKIT_BENCH_TEST_THERE: 'yes' } }),
      ],
      backend: 'wasm',
      warmup: 0,
      repeats: 1,
      out: () => {},
      err: () => {},
      runElsewhere: async ({ threads, env }, cases) => {
        asked.push([threads!, cases.map((c) => c.id)]);
        envs.push(env);
        return cases.map((c) => ({ ...c, backend: 'wasm', threads, samplesMs: [1], n: 1, medianMs: 1, setupMs: 0, leakedTensors: 0 }));
      },
    });
    delete process.env.SLMKIT_BENCH_TEST_HERE;
    expect(asked).toEqual([[2, ['tiny/two/T=2']], [1, ['tiny/env-there/T=2']]]);
    expect(envs).toEqual([{}, { SLMKIT_BENCH_TEST_THERE: 'yes' }]);
    // In the selection's order: a case run elsewhere sits beside the cases around it.
    expect(run.results.map((r) => [r.id, r.threads])).toEqual([
      ['tiny/one/T=2', 1],
      ['tiny/two/T=2', 2],
      ['tiny/same/T=3', 1],
      ['tiny/env-here/T=2', 1],
      ['tiny/env-there/T=2', 1],
    ]);
    expect(run.header.threads).toBe(1);

    const onCpu = await runBench({ cases: [tiny('one', 2), tiny('two', 2, { threads: 2 })], backend: 'cpu', warmup: 0, repeats: 1, out: () => {}, err: () => {} });
    expect(onCpu.results.map((r) => r.id)).toEqual(['tiny/one/T=2']);
  });

  it('rounds run every case (here and in a child) once per round with its share of the repeats, and merge the samples', async () => {
    const setups: string[] = [];
    const counted = (name: string, extra: Partial<BenchCase> = {}): BenchCase => {
      const c = tiny(name, 2, extra);
      return { ...c, setup: () => (setups.push(c.id), c.setup()) };
    };
    const childCalls: number[] = [];
    const run = await runBench({
      cases: [counted('a'), counted('b'), counted('c', { threads: 2 })],
      backend: 'wasm',
      warmup: 0,
      repeats: 5,
      rounds: 2,
      out: () => {},
      err: () => {},
      runElsewhere: async ({ threads }, cases, settings) => {
        childCalls.push(settings.repeats);
        return cases.map((c) => ({ ...c, backend: 'wasm', threads, samplesMs: Array(settings.repeats).fill(childCalls.length), n: 0, setupMs: 1, leakedTensors: 0 }));
      },
    });
    // Round 1 then round 2, in the same order; 5 repeats over 2 rounds: 3 a round.
    expect(setups).toEqual(['tiny/a/T=2', 'tiny/b/T=2', 'tiny/a/T=2', 'tiny/b/T=2']);
    expect(childCalls).toEqual([3, 3]);
    expect(run.results.map((r) => [r.id, r.n])).toEqual([
      ['tiny/a/T=2', 6],
      ['tiny/b/T=2', 6],
      ['tiny/c/T=2', 6],
    ]);
    expect(run.results[2]).toMatchObject({ samplesMs: [1, 1, 1, 2, 2, 2], medianMs: 1.5, setupMs: 2 });
    expect(run.header.rounds).toBe(2);
  });

  it('runs a registered two-thread case in a child process of the built runner', async () => {
    // Two rounds through the child process (started once, kept for the run), each beside the one-thread case.
    const run = await runBench({
      cases: allCases,
      filters: ['^linear/up_proj/T=1$', '^linear/lm_head-2threads/T=1$'],
      backend: 'wasm',
      warmup: 0,
      repeats: 2,
      rounds: 2,
      out: () => {},
      err: () => {},
    });
    expect(run.results.map((r) => [r.id, r.threads, r.n, r.error])).toEqual([
      ['linear/up_proj/T=1', 1, 2, undefined],
      ['linear/lm_head-2threads/T=1', 2, 2, undefined],
    ]);
    expect(run.results[1]!.leakedTensors).toBe(0);
  });

  it('serves requests as a child process does: one JSON line of results per request line, until the input ends', async () => {
    const out: string[] = [];
    async function* input(): AsyncGenerator<string> {
      yield JSON.stringify({ ids: ['tiny/a/T=2', 'tiny/b/T=3'], warmup: 0, repeats: 2, budgetMs: 1000 });
      yield '';
      yield JSON.stringify({ ids: ['tiny/b/T=3'], warmup: 0, repeats: 1, budgetMs: 1000 });
    }
    await serveCases({ cases: [tiny('a', 2), tiny('b', 3)], backend: 'wasm', input: input(), out: (s) => void out.push(s) });
    expect(out.every((line) => line.endsWith('\n'))).toBe(true);
    const answers = out.map((line) => (JSON.parse(line) as { results: CaseResult[] }).results.map((r) => [r.id, r.n, r.leakedTensors]));
    expect(answers).toEqual([
      [
        ['tiny/a/T=2', 2, 0],
        ['tiny/b/T=3', 2, 0],
      ],
      [['tiny/b/T=3', 1, 0]],
    ]);
    async function* unknown(): AsyncGenerator<string> {
      yield JSON.stringify({ ids: ['tiny/none/T=1'], warmup: 0, repeats: 1, budgetMs: 1000 });
    }
    await expect(serveCases({ cases: [tiny('a', 2)], backend: 'wasm', input: unknown(), out: () => {} })).rejects.toThrow(/no case tiny\/none\/T=1/);
  });
});

describe('helpers', () => {
  it('merges rounds: samples in order, statistics over all of them, the worst leak and the first error', () => {
    const base = { block: 'b', series: 's', axis: { name: 'T', value: 1 }, phase: 'prefill', shape: {}, backend: 'wasm', flops: 4e6 } as const;
    const r = (id: string, samplesMs: number[], extra: Partial<CaseResult> = {}): CaseResult =>
      ({ ...base, id, samplesMs, n: samplesMs.length, setupMs: 1, leakedTensors: 0, medianMs: 99, ...extra }) as CaseResult;
    const merged = mergeRounds([
      [r('x', [4, 2]), r('y', [1])],
      [r('x', [8], { leakedTensors: 3 }), r('y', [], { error: 'boom' })],
    ]);
    expect(merged[0]).toMatchObject({ id: 'x', samplesMs: [4, 2, 8], n: 3, medianMs: 4, minMs: 2, maxMs: 8, gflops: 1, setupMs: 2, leakedTensors: 3 });
    expect(merged[1]).toMatchObject({ id: 'y', samplesMs: [1], n: 1, medianMs: 1, error: 'boom' });
  });

  it('interpolates quantiles', () => {
    expect(quantile([1, 2, 3, 4, 5], 0.5)).toBe(3);
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([10, 20], 0.1)).toBeCloseTo(11);
    expect(quantile([7], 0.9)).toBe(7);
  });

  it('notes a busy machine from the load average', () => {
    expect(loadNote([0.4, 0.3, 0.2], 2)).toBeUndefined();
    expect(loadNote([1.6, 1.2, 1.0], 2)).toMatch(/load average 1\.60 on 2 cores/);
  });
});
