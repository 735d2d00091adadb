/**
 * A horizontal bar chart in SVG: one bar per benchmark row (the median), with a whisker from the fastest to the
 * slowest run. Plain DOM, no charting library.
 */
import type { BenchRow } from './results.js';

const SVG = 'http://www.w3.org/2000/svg';

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text != null) node.textContent = text;
  return node;
}

/** A "nice" axis maximum: 1, 2, 2.5 or 5 times a power of ten, at least `value` (five ticks divide it evenly). */
function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((v) => v >= value)!;
}

export function barChart(rows: BenchRow[], title: string): SVGSVGElement {
  const labelWidth = 270;
  const plotWidth = 520;
  const barHeight = 22;
  const gap = 10;
  const top = 34;
  const width = labelWidth + plotWidth + 70;
  const height = top + rows.length * (barHeight + gap) + 30;
  const max = niceMax(Math.max(...rows.map((r) => r.maxMs)));
  const x = (ms: number) => labelWidth + (ms / max) * plotWidth;

  const svg = el('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  svg.append(el('text', { x: 0, y: 16, 'font-weight': 600 }, title));
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const ms = (max * i) / ticks;
    const gx = x(ms);
    svg.append(el('line', { class: 'grid', x1: gx, x2: gx, y1: top - 6, y2: height - 24 }));
    svg.append(el('text', { x: gx, y: height - 8, 'text-anchor': 'middle' }, `${+ms.toPrecision(3)} ms`));
  }
  rows.forEach((r, i) => {
    const y = top + i * (barHeight + gap);
    const mid = y + barHeight / 2;
    svg.append(el('text', { x: labelWidth - 10, y: mid + 4, 'text-anchor': 'end' }, r.name));
    svg.append(el('rect', { class: 'bar', x: labelWidth, y, width: Math.max(1, x(r.medianMs) - labelWidth), height: barHeight, rx: 3 }));
    svg.append(el('line', { class: 'whisker', x1: x(r.minMs), x2: x(r.maxMs), y1: mid, y2: mid }));
    for (const end of [r.minMs, r.maxMs]) svg.append(el('line', { class: 'whisker', x1: x(end), x2: x(end), y1: mid - 5, y2: mid + 5 }));
    svg.append(el('text', { x: x(r.maxMs) + 6, y: mid + 4 }, `${r.medianMs.toFixed(2)} ms`));
  });
  return svg;
}
