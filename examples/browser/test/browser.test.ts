/**
 * End-to-end: build the page, serve it on http://localhost (WebGPU needs a secure page), drive Debian's Chromium
 * through playwright-core, and check what the page computed against Node's `cpu` backend.
 *
 * With SLMKIT_REQUIRE_WEBGPU=1 (CI), a missing Chromium or a page that cannot get WebGPU fails the test; without it,
 * the WebGPU test is skipped with the reason.
 */
import { existsSync, mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@slmkit/core';
import { caseDir, loadCase } from '@slmkit/fixtures';
import { fromPretrained, type CausalLM } from '@slmkit/models';
import { LORA_STEPS, loraFineTune } from '../src/lora.js';
import type { PageResults } from '../src/results.js';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const RESULTS = join(ROOT, 'test-results');
const SITE = join(RESULTS, 'site'); // the build this test serves (test-results/ is git-ignored)
const CHROMIUM = process.env.SLMKIT_CHROMIUM ?? '/usr/bin/chromium';
const REQUIRE_WEBGPU = process.env.SLMKIT_REQUIRE_WEBGPU === '1';
/**
 * Headless Chromium as root, offline. `--enable-unsafe-webgpu` exposes WebGPU on Linux (here on SwiftShader, the CPU
 * Vulkan driver inside Debian's chromium); nothing else is needed for an adapter.
 */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--enable-unsafe-webgpu',
];
const TOLERANCE = 5e-4;
/** Fewer benchmark runs than the page's default: SwiftShader is slow and the test times nothing. */
const QUERY = '?warmup=1&repeats=2';

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && REQUIRE_WEBGPU) {
  throw new Error(`SLMKIT_REQUIRE_WEBGPU=1 but there is no Chromium at ${CHROMIUM} (apt-get install chromium, or set SLMKIT_CHROMIUM)`);
}

interface Reference {
  logits: Float32Array;
  shape: number[];
  generated: number[][];
  /** The losses of the page's LoRA steps, computed in Node. */
  loraLosses: number[];
}

/** What Node's cpu backend computes for the page's model and input. */
async function nodeReference(): Promise<Reference> {
  await initBackend('cpu');
  const fixture = loadCase('llama');
  const model = await fromPretrained(caseDir('llama'));
  try {
    const ids = tf.tensor2d(fixture.inputIds, undefined, 'int32');
    const y = model.forward(ids);
    const logits = (await y.data()) as Float32Array;
    const shape = y.shape.slice();
    tf.dispose([ids, y]);
    const out = await model.generate(fixture.inputIds, { maxNewTokens: 8, stopTokens: [] });
    const lora = await loraFineTune(model as CausalLM, fixture.inputIds);
    return { logits, shape, generated: out.tokens, loraLosses: lora.losses };
  } finally {
    model.dispose();
  }
}

/**
 * The page's LoRA steps: the loss falls, nothing leaks, and each step's loss is Node cpu's (the adapter's initial
 * values are drawn in JavaScript from a seed, so every backend starts from the same adapter).
 */
async function expectLoRA(r: PageResults, page: Page, reference: Reference): Promise<void> {
  const lora = r.lora!;
  expect(lora.losses).toHaveLength(LORA_STEPS);
  expect(lora.losses.every(Number.isFinite)).toBe(true);
  expect(lora.losses.at(-1)!).toBeLessThan(0.8 * lora.losses[0]!);
  expect(lora.layers).toBe(4);
  expect(lora.numTensors.after).toBe(lora.numTensors.before);
  expect(maxAbsDiff(lora.losses, reference.loraLosses)).toBeLessThanOrEqual(2e-3);
  expect(await page.locator('#lora dd').count()).toBe(3);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Opens the page, waits (bounded) until it is done or failed, saves a screenshot, and returns its results. */
async function runPage(page: Page, url: string, screenshot: string): Promise<{ results: PageResults; log: string[] }> {
  const log: string[] = [];
  page.on('console', (m) => {
    // The checkpoint loader probes for files a folder may lack (a sharded index, a tokenizer): 404s are expected.
    if (m.type() === 'error' && !m.text().includes('404')) log.push(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  await page.goto(url, { timeout: 30_000, waitUntil: 'load' });
  try {
    await page.waitForFunction(() => window.__slmkit != null && window.__slmkit.status !== 'running', null, {
      timeout: 150_000,
      polling: 250,
    });
  } finally {
    await page.screenshot({ path: join(RESULTS, screenshot), fullPage: true, timeout: 15_000 }).catch(() => undefined);
  }
  const results = await page.evaluate(() => window.__slmkit!);
  return { results, log };
}

describe.skipIf(!haveChromium)('browser example in headless Chromium', () => {
  let reference: Reference;
  let server: PreviewServer | undefined;
  let browser: Browser | undefined;
  let url = '';

  beforeAll(async () => {
    mkdirSync(RESULTS, { recursive: true });
    reference = await nodeReference();
    const configFile = join(ROOT, 'vite.config.ts');
    await build({ root: ROOT, configFile, logLevel: 'warn', build: { outDir: SITE, emptyOutDir: true } });
    server = await preview({
      root: ROOT,
      configFile,
      logLevel: 'warn',
      build: { outDir: SITE },
      preview: { host: 'localhost', port: 0, strictPort: true, open: false },
    });
    const { port } = server.httpServer.address() as AddressInfo;
    url = `http://localhost:${port}/`;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
  }, 120_000);

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await server?.close().catch(() => undefined);
  }, 30_000);

  it('runs on WebGPU and matches Node cpu within 5e-4', async (context) => {
    const page = await browser!.newPage({ viewport: { width: 1000, height: 900 } });
    try {
      const { results: r, log } = await runPage(page, url + QUERY, 'browser-webgpu.png');
      expect(r.status, `the page failed: ${r.error}\n${log.join('\n')}`).toBe('done');
      if (r.backend !== 'webgpu') {
        const why = `the page could not get WebGPU and ran on ${r.backend}: ${r.fallback ?? r.reason}`;
        if (REQUIRE_WEBGPU) expect.fail(`SLMKIT_REQUIRE_WEBGPU=1 but ${why}`);
        context.skip(why);
      }
      expect(r.fallback).toBeUndefined();
      expect(r.adapter).toBeTruthy();
      expect(await page.locator('#backend .badge').textContent()).toBe('webgpu');

      expect(r.logitsShape).toEqual(reference.shape);
      expect(r.logits).toHaveLength(reference.logits.length);
      expect(maxAbsDiff(r.logits!, reference.logits)).toBeLessThanOrEqual(TOLERANCE);
      expect(r.generated).toEqual(reference.generated);
      expect(r.generated).toEqual(r.expectedGenerated); // and Hugging Face's recorded tokens

      // The benchmark: one row per block in the table and in the chart, every time a real number.
      expect(r.bench!.map((b) => b.name)).toHaveLength(6);
      for (const b of r.bench!) {
        expect(Number.isFinite(b.medianMs) && b.minMs <= b.medianMs && b.medianMs <= b.maxMs).toBe(true);
        expect(b.repeats).toBe(2);
      }
      expect(await page.locator('#bench tbody tr').count()).toBe(6);
      expect(await page.locator('#bench svg.chart rect.bar').count()).toBe(6);
      await expectLoRA(r, page, reference);
      expect(log, log.join('\n')).toEqual([]);
    } finally {
      await page.close();
    }
  }, 210_000);

  it('falls back to wasm, says so on the page, and still matches Node cpu', async () => {
    // A browser without WebGPU: hide navigator.gpu before any script of the page runs.
    const pageContext = await browser!.newContext({ viewport: { width: 1000, height: 900 } });
    try {
      await pageContext.addInitScript(() => {
        Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
      });
      const page = await pageContext.newPage();
      const { results: r, log } = await runPage(page, url + QUERY, 'browser-wasm-fallback.png');
      expect(r.status, `the page failed: ${r.error}\n${log.join('\n')}`).toBe('done');
      expect(r.backend).toBe('wasm');
      expect(r.fallback).toMatch(/navigator\.gpu/);
      await expect(page.locator('#backend .notice').textContent()).resolves.toMatch(/WebGPU is not available here, so this page runs on wasm/);
      expect(maxAbsDiff(r.logits!, reference.logits)).toBeLessThanOrEqual(TOLERANCE);
      expect(r.generated).toEqual(reference.generated);
      await expectLoRA(r, page, reference);
      expect(log, log.join('\n')).toEqual([]);
    } finally {
      await pageContext.close();
    }
  }, 60_000);
});
