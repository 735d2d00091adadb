/**
 * The page: pick a backend (WebGPU, else wasm, and say so), load a Hugging Face checkpoint over HTTP, run a forward
 * pass and a greedy generation, time a few blocks, train a LoRA for a few steps, and show it all as tables and a
 * chart. Everything measured is
 * also published on `window.__slmkit` (see `PageResults`).
 *
 * `?backend=wasm` (or `webgpu`, `cpu`) forces a backend; `?warmup=2&repeats=5` set the benchmark's runs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_NAMES, type BackendName } from '@slmkit/core';
import { CausalLM, countParameters, fromPretrained } from '@slmkit/models';
import { chooseBackend } from './backend.js';
import { benchCases, runBench } from './bench.js';
import { barChart } from './chart.js';
import { loraFineTune } from './lora.js';
import type { BenchRow, PageResults } from './results.js';

const results: PageResults = { status: 'running', timings: {} };
window.__slmkit = results;

function section(id: string): HTMLElement {
  const node = document.getElementById(id)!;
  node.replaceChildren(node.querySelector('h2')!);
  return node;
}

function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: { class?: string; text?: string } = {}, ...children: Node[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.class != null) node.className = props.class;
  if (props.text != null) node.textContent = props.text;
  node.append(...children);
  return node;
}

function definitions(pairs: [string, string | Node][]): HTMLDListElement {
  const dl = h('dl');
  for (const [k, v] of pairs) dl.append(h('dt', { text: k }), typeof v === 'string' ? h('dd', { text: v }) : h('dd', {}, v));
  return dl;
}

function table(head: string[], rows: (string | number)[][], numeric: boolean[]): HTMLTableElement {
  const t = h('table');
  t.append(h('thead', {}, h('tr', {}, ...head.map((c) => h('th', { text: c })))));
  t.append(h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c, i) => h('td', { class: numeric[i] ? 'num' : '', text: String(c) }))))));
  return t;
}

async function timed<T>(label: string, work: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const value = await work();
  results.timings![label] = Math.round(performance.now() - t0);
  return value;
}

const query = new URLSearchParams(location.search);

/** A small positive integer from the query (`?repeats=3`), or the default. */
function queryInt(name: string, fallback: number, min: number): number {
  const value = query.get(name);
  if (value == null || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > 100) throw new Error(`?${name}=${value}: expected an integer in [${min}, 100]`);
  return n;
}

function requestedBackend(): BackendName | null {
  const value = query.get('backend');
  if (value == null || value === '') return null;
  if (!(BACKEND_NAMES as readonly string[]).includes(value)) throw new Error(`?backend=${value}: expected one of ${BACKEND_NAMES.join(', ')}`);
  return value as BackendName;
}

async function run(): Promise<void> {
  // 1. Backend.
  const choice = await timed('backend', () => chooseBackend(requestedBackend()));
  results.backend = choice.info.name;
  results.reason = choice.fallback != null ? 'fallback: WebGPU unavailable' : choice.info.reason;
  results.adapter = choice.info.adapter;
  results.fallback = choice.fallback;
  const backendCard = section('backend');
  backendCard.append(
    h('p', {}, h('span', { class: `badge ${choice.fallback != null ? 'warn' : 'ok'}`, text: choice.info.name }),
      document.createTextNode(`  ${results.reason}${choice.info.adapter != null ? ` · adapter: ${choice.info.adapter}` : ''}`)),
  );
  if (choice.fallback != null) {
    backendCard.append(h('p', { class: 'notice', text: `WebGPU is not available here, so this page runs on wasm instead. (${choice.fallback})` }));
  }

  // 2. The checkpoint, fetched from this server like any folder on the Hub.
  const base = new URL(`${import.meta.env.BASE_URL}models/llama/`, location.href);
  results.model = base.href;
  const loaded = await timed('load', () => fromPretrained(base));
  if (!(loaded instanceof CausalLM)) {
    loaded.dispose();
    throw new Error(`${base.href} is not a transformer checkpoint; this page runs CausalLM models`);
  }
  const model = loaded;
  try {
    const [inputs, expected] = await Promise.all([
      fetch(new URL('input_ids.json', base)).then((r) => r.json() as Promise<{ input_ids: number[][] }>),
      fetch(new URL('expected.json', base)).then((r) => (r.ok ? (r.json() as Promise<{ generation?: { new_token_ids: number[][] } }>) : null)),
    ]);
    const c = model.config;
    results.modelSummary = {
      family: c.family, layers: c.numLayers, hidden: c.hiddenSize, heads: c.numHeads, kvHeads: c.numKVHeads,
      vocab: c.vocabSize, parameters: countParameters(c).total,
    };
    section('model').append(definitions([
      ['checkpoint', base.pathname],
      ['family', `${c.family} (${c.numLayers} layers, d=${c.hiddenSize}, ${c.numHeads} heads / ${c.numKVHeads} KV heads, vocab ${c.vocabSize})`],
      ['parameters', results.modelSummary.parameters.toLocaleString('en-US')],
      ['loaded in', `${results.timings!.load} ms`],
    ]));

    // 3. Forward and greedy generation.
    const ids = inputs.input_ids;
    results.inputIds = ids;
    const logits = await timed('forward', async () => {
      const t = tf.tensor2d(ids, undefined, 'int32'); // [B, T]
      const y = model.forward(t); // [B, T, V]
      const data = await y.data();
      results.logitsShape = y.shape.slice();
      tf.dispose([t, y]);
      return data;
    });
    results.logits = Array.from(logits);
    const out = await timed('generate', () => model.generate(ids, { maxNewTokens: 8, stopTokens: [] }));
    results.generated = out.tokens;
    results.expectedGenerated = expected?.generation?.new_token_ids;
    const matches = results.expectedGenerated != null && JSON.stringify(results.expectedGenerated) === JSON.stringify(out.tokens);
    let maxAbs = 0;
    for (const v of logits) maxAbs = Math.max(maxAbs, Math.abs(v));
    section('check').append(
      definitions([
        ['forward', `ids [${ids.length}, ${ids[0].length}] → logits [${results.logitsShape!.join(', ')}] in ${results.timings!.forward} ms (max |logit| ${maxAbs.toFixed(4)})`],
        ['first logits', Array.from(logits.subarray(0, 5), (v) => v.toFixed(5)).join(', ') + ', …'],
        ...out.tokens.map((r, b): [string, Node] => [`row ${b}, greedy`, h('span', { class: 'tokens', text: r.join(' ') })]),
        ['transformers', results.expectedGenerated == null
          ? 'no recorded tokens for this checkpoint'
          : h('span', {}, h('span', { class: `badge ${matches ? 'ok' : 'bad'}`, text: matches ? 'same tokens' : 'different tokens' }),
            document.createTextNode(` as Hugging Face recorded (${results.timings!.generate} ms for 8 tokens per row)`))],
      ]),
    );

    // 4. Benchmark.
    const benchCard = section('bench');
    const progress = h('p', { class: 'muted', text: 'timing…' });
    benchCard.append(progress);
    const cases = benchCases(model, ids);
    const warmup = queryInt('warmup', 2, 0);
    const repeats = queryInt('repeats', 5, 1);
    const rows: BenchRow[] = await timed('bench', () =>
      runBench(cases, { warmup, repeats, onRow: (row, done) => (progress.textContent = `timing… ${done}/${cases.length} (${row.name})`) }),
    );
    results.bench = rows;
    progress.textContent = `Median of ${repeats} runs after ${warmup} warm-up run(s), on ${choice.info.name}; each run includes reading the output back.`;
    if (/swiftshader/i.test(choice.info.adapter ?? '')) {
      progress.textContent += ' SwiftShader emulates the GPU on the CPU: these times show that everything runs, not how fast a GPU is.';
    }
    benchCard.append(
      table(
        ['block', 'input', 'median ms', 'min ms', 'max ms'],
        rows.map((r) => [r.name, r.shape, r.medianMs.toFixed(2), r.minMs.toFixed(2), r.maxMs.toFixed(2)]),
        [false, false, true, true, true],
      ),
      barChart(rows, `Median time per call on ${choice.info.name} (whiskers: fastest to slowest run)`),
    );

    // 5. A few LoRA fine-tuning steps on the prompt: only the adapter trains; it is removed afterwards.
    const lora = await timed('lora', () => loraFineTune(model, ids));
    results.lora = lora;
    section('lora').append(
      definitions([
        ['adapter', `LoRA r=4, alpha 8 on ${lora.layers} layers (q_proj, v_proj): ${lora.trainable.toLocaleString('en-US')} trainable parameters, the base frozen`],
        ['loss per step', lora.losses.map((l) => l.toFixed(4)).join(' → ')],
        ['time', `${(lora.stepMs.reduce((a, b) => a + b, 0) / lora.stepMs.length).toFixed(0)} ms per step (Adam, next-token loss on the prompt)`],
      ]),
    );
  } finally {
    model.dispose();
  }
  results.status = 'done';
}

run().catch((e: unknown) => {
  const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  results.error = message;
  results.status = 'error';
  document.querySelector('main')!.append(h('p', { class: 'error', text: message }));
  console.error(e);
});
