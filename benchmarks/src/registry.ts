/**
 * The benchmark registry: what a case is, how one is declared, and how a run picks its cases.
 *
 * A case is one block at one shape in one phase. Its `setup` builds the block and its inputs (untimed) and returns
 * an instance whose `run` is what gets timed; `teardown` disposes what `setup` made. Each block family declares its
 * cases in one file under `cases/`, and `cases/index.ts` lists the files.
 */
import type * as tf from '@tensorflow/tfjs-core';

/** Which part of a model's life a case measures. */
export type Phase = 'prefill' | 'decode' | 'train';

/** What `run` returns: the tensors the runner downloads (the timing barrier) and then disposes. */
export type RunOutput = tf.Tensor | tf.Tensor[];

/** A set-up case, ready to be timed. */
export interface CaseInstance {
  /**
   * The timed work. It must return every tensor it creates that is still alive (the runner downloads them with
   * `await t.data()` inside the timed region, then disposes them); everything else it must dispose itself.
   */
  run(): RunOutput | Promise<RunOutput>;
  /** Untimed work before each run (resetting a cache that `run` grows, say). */
  beforeEach?(): void | Promise<void>;
  /** Disposes everything `setup` made. */
  teardown(): void | Promise<void>;
}

/** The x-axis of a scaling series: the sequence length of a prefill, or the context length of a decode step. */
export interface Axis {
  name: 'T' | 'ctx';
  value: number;
}

/** How a case is declared; {@link benchCase} turns it into a {@link BenchCase}. */
export interface CaseSpec {
  /** The block family, one per case file: `linear`, `mlp`, `norm`, `rotary`, `embedding`, `attention`, `model`. */
  block: string;
  /** The series this case is one point of, e.g. `mlp/swiglu/forward`; the chart draws one line per series. */
  series: string;
  /** Where on the series' x-axis this case sits; the id ends with `/T=128` or `/ctx=512`. */
  axis: Axis;
  phase: Phase;
  /** The dimensions that matter, e.g. `{ B: 1, T: 128, d: 576, ff: 1536 }`. */
  shape: Record<string, number>;
  /** Floating-point operations of one run, when counting them means something (matmul-heavy blocks). */
  flops?: number;
  /** Bytes one run must move at least (inputs read plus outputs written), for memory-bound blocks. */
  bytes?: number;
  /** Whether `--quick` runs this case. */
  quick?: boolean;
  /**
   * `wasm` only: the threads XNNPACK runs this case on. Omitted, the run's count (`--threads`, default 1). A case
   * asking for another count than the run's runs in a child process of the same run (a backend's thread count is
   * fixed when it starts), so one results file holds both; on another backend the case is left out.
   */
  threads?: number;
  /**
   * Environment variables the case runs under (for a library setting read from the environment, such as
   * `SLMKIT_WASM_TFJS_MATMUL`): unless this process already has them, the case runs in a child process of the same
   * run, as for `threads`.
   */
  env?: Record<string, string>;
  setup(): CaseInstance | Promise<CaseInstance>;
}

/** A registered case. `id` is `<series>/<axis>=<value>`, e.g. `mlp/swiglu/forward/T=128`. */
export interface BenchCase extends CaseSpec {
  id: string;
}

/** Declares a case: checks the spec and derives its id. */
export function benchCase(spec: CaseSpec): BenchCase {
  if (!spec.series.startsWith(`${spec.block}/`) && spec.series !== spec.block) {
    throw new Error(`benchmark case: series "${spec.series}" must start with its block "${spec.block}/"`);
  }
  if (!Number.isFinite(spec.axis.value) || spec.axis.value <= 0) {
    throw new Error(`benchmark case ${spec.series}: axis ${spec.axis.name} must be positive, found ${spec.axis.value}`);
  }
  return { ...spec, id: `${spec.series}/${spec.axis.name}=${spec.axis.value}` };
}

/** Throws when two cases share an id. */
export function checkUniqueIds(cases: readonly BenchCase[]): void {
  const seen = new Set<string>();
  for (const c of cases) {
    if (seen.has(c.id)) throw new Error(`benchmark case id "${c.id}" is registered twice`);
    seen.add(c.id);
  }
}

/**
 * Turns a `--filter` value into a matcher over case ids: a regular expression when it compiles as one (a plain
 * substring such as `mlp/swiglu` is one that matches itself), else a literal substring.
 */
export function idMatcher(filter: string): (id: string) => boolean {
  try {
    const re = new RegExp(filter);
    return (id) => re.test(id);
  } catch {
    return (id) => id.includes(filter);
  }
}

/** The cases a run executes: the `--quick` subset if asked, then those matching any of the filters. */
export function selectCases(
  cases: readonly BenchCase[],
  options: { quick?: boolean; filters?: readonly string[] } = {},
): BenchCase[] {
  const matchers = (options.filters ?? []).map(idMatcher);
  return cases.filter((c) => (!options.quick || c.quick === true) && (matchers.length === 0 || matchers.some((m) => m(c.id))));
}
