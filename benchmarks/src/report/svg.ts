/**
 * The SVG chart, written by hand: one panel per block, median time against sequence (or context) length, one
 * line per series, with p10-p90 whiskers. Both axes are logarithmic: lengths double or quadruple from point to
 * point and times span decades.
 */
import { headerLines, type RunHeader } from '../header.js';
import type { CaseResult } from '../runner.js';
import { fmtMs } from './format.js';

const WIDTH = 1000;
const COLS = 2;
const GAP = 20;
const PANEL_W = (WIDTH - GAP * (COLS + 1)) / COLS;
const PLOT = { left: 64, right: 16, top: 30, height: 200, bottom: 44 };
const LEGEND_ROW = 16;
const LINE = 16;
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[ch]!);
}

/** Rounds coordinates so the file stays small and diffs stay readable. */
const n = (x: number): string => String(Math.round(x * 10) / 10);

/** 10^e as a plain number: 0.01, 0.1, 1, 10, 100. */
const decade = (e: number): string => String(Number((10 ** e).toPrecision(1)));

interface Panel {
  title: string;
  block: string;
  series: { name: string; points: CaseResult[] }[];
}

/**
 * One panel per block, or two when a block has both prefill series (by T) and decode series (by context length):
 * the two x-axes mean different things.
 */
function panels(results: readonly CaseResult[]): Panel[] {
  const byPanel = new Map<string, { block: string; axis: string; series: Map<string, CaseResult[]> }>();
  for (const r of results) {
    if (r.medianMs == null || r.error != null) continue;
    const key = `${r.block}\u0000${r.axis.name}`;
    const panel = byPanel.get(key) ?? { block: r.block, axis: r.axis.name, series: new Map<string, CaseResult[]>() };
    byPanel.set(key, panel);
    const points = panel.series.get(r.series) ?? [];
    panel.series.set(r.series, points);
    points.push(r);
  }
  const axesOf = (block: string) => [...byPanel.values()].filter((p) => p.block === block).length;
  return [...byPanel.values()].map(({ block, axis, series }) => ({
    title: axesOf(block) > 1 ? `${block}: ${axis === 'ctx' ? 'decode step by context length' : 'by sequence length'}` : block,
    block,
    series: [...series].map(([name, points]) => ({ name, points: [...points].sort((a, b) => a.axis.value - b.axis.value) })),
  }));
}

function panelHeight(p: Panel): number {
  return PLOT.top + PLOT.height + PLOT.bottom + p.series.length * LEGEND_ROW + 8;
}

function drawPanel(p: Panel, x0: number, y0: number): string[] {
  const out: string[] = [];
  const plotW = PANEL_W - PLOT.left - PLOT.right;
  const px = x0 + PLOT.left;
  const py = y0 + PLOT.top;
  const all = p.series.flatMap((s) => s.points);
  const xs = [...new Set(all.map((r) => r.axis.value))].sort((a, b) => a - b);
  const lo = Math.min(...all.map((r) => r.p10Ms ?? r.medianMs!));
  const hi = Math.max(...all.map((r) => r.p90Ms ?? r.medianMs!));
  let yLo = Math.floor(Math.log10(Math.max(lo, 1e-4)));
  let yHi = Math.ceil(Math.log10(Math.max(hi, 1e-4)));
  if (yHi <= yLo) yHi = yLo + 1;
  const xLo = Math.log2(xs[0]!);
  const xHi = Math.log2(xs[xs.length - 1]!);
  const sx = (v: number): number => (xHi === xLo ? px + plotW / 2 : px + ((Math.log2(v) - xLo) / (xHi - xLo)) * plotW);
  const sy = (ms: number): number => py + PLOT.height - ((Math.log10(ms) - yLo) / (yHi - yLo)) * PLOT.height;

  out.push(`<g class="panel" data-block="${escapeXml(p.block)}">`);
  out.push(`<text x="${n(x0 + 4)}" y="${n(y0 + 18)}" font-weight="bold">${escapeXml(p.title)}</text>`);
  out.push(`<rect x="${n(px)}" y="${n(py)}" width="${n(plotW)}" height="${PLOT.height}" fill="none" stroke="#888"/>`);
  for (let e = yLo; e <= yHi; e++) {
    const y = sy(10 ** e);
    out.push(`<line x1="${n(px)}" y1="${n(y)}" x2="${n(px + plotW)}" y2="${n(y)}" stroke="#ddd"/>`);
    out.push(`<text x="${n(px - 6)}" y="${n(y + 4)}" text-anchor="end" font-size="11">${decade(e)}</text>`);
  }
  for (const v of xs) {
    const x = sx(v);
    out.push(`<line x1="${n(x)}" y1="${n(py)}" x2="${n(x)}" y2="${n(py + PLOT.height)}" stroke="#eee"/>`);
    out.push(`<text x="${n(x)}" y="${n(py + PLOT.height + 15)}" text-anchor="middle" font-size="11">${v}</text>`);
  }
  const xTitle = all[0]!.axis.name === 'ctx' ? 'context length' : 'sequence length T';
  out.push(
    `<text x="${n(px + plotW / 2)}" y="${n(py + PLOT.height + 32)}" text-anchor="middle" font-size="11">${xTitle}</text>`,
  );
  out.push(
    `<text transform="translate(${n(x0 + 14)} ${n(py + PLOT.height / 2)}) rotate(-90)" text-anchor="middle" ` +
      `font-size="11">median ms (log)</text>`,
  );
  p.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const pts = s.points.map((r) => `${n(sx(r.axis.value))},${n(sy(r.medianMs!))}`).join(' ');
    out.push(`<g class="series" data-series="${escapeXml(s.name)}">`);
    out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const r of s.points) {
      const x = sx(r.axis.value);
      if (r.p10Ms != null && r.p90Ms != null) {
        out.push(`<line x1="${n(x)}" y1="${n(sy(r.p10Ms))}" x2="${n(x)}" y2="${n(sy(r.p90Ms))}" stroke="${color}"/>`);
      }
      out.push(
        `<circle cx="${n(x)}" cy="${n(sy(r.medianMs!))}" r="3" fill="${color}">` +
          `<title>${escapeXml(`${r.id}: ${fmtMs(r.medianMs)} ms`)}</title></circle>`,
      );
    }
    const ly = py + PLOT.height + PLOT.bottom + i * LEGEND_ROW;
    out.push(`<line x1="${n(px)}" y1="${n(ly - 4)}" x2="${n(px + 18)}" y2="${n(ly - 4)}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${n(px + 24)}" y="${n(ly)}" font-size="11">${escapeXml(s.name)}</text>`);
    out.push('</g>');
  });
  out.push('</g>');
  return out;
}

export function toSvg(header: RunHeader, results: readonly CaseResult[]): string {
  const title = `slmkit benchmarks: ${header.backend}, ${header.date}`;
  const lines = headerLines(header);
  const body: string[] = [];
  body.push(`<text x="${GAP}" y="24" font-size="16" font-weight="bold">${escapeXml(title)}</text>`);
  lines.forEach((l, i) => body.push(`<text x="${GAP}" y="${24 + LINE * (i + 1)}" font-size="11">${escapeXml(l)}</text>`));
  let y = 24 + LINE * (lines.length + 1);
  const ps = panels(results);
  if (ps.length === 0) {
    body.push(`<text x="${GAP}" y="${y + LINE}">no results to plot</text>`);
    y += 2 * LINE;
  }
  for (let i = 0; i < ps.length; i += COLS) {
    const row = ps.slice(i, i + COLS);
    const h = Math.max(...row.map(panelHeight));
    row.forEach((p, j) => body.push(...drawPanel(p, GAP + j * (PANEL_W + GAP), y)));
    y += h + GAP;
  }
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${n(y)}" viewBox="0 0 ${WIDTH} ${n(y)}" ` +
      `font-family="sans-serif">`,
    `<title>${escapeXml(title)}</title>`,
    `<desc>${escapeXml(lines.join('\n'))}</desc>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
