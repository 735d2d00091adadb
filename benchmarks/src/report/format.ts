/** Number and cell formatting shared by the table, Markdown and SVG reporters. */
import type { CaseResult } from '../runner.js';

/** Milliseconds to about three significant digits. */
export function fmtMs(ms: number | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return '-';
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  if (ms >= 1) return ms.toFixed(2);
  return ms.toFixed(3);
}

/** A rate (GFLOP/s or GB/s) to about three significant digits. */
export function fmtRate(x: number | undefined): string {
  if (x == null || !Number.isFinite(x)) return '';
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  if (x >= 0.01) return x.toFixed(2);
  return x.toPrecision(2);
}

export function fmtShape(shape: Record<string, number>): string {
  return Object.entries(shape)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** The check column: empty when all is well, else the leak and/or the error. */
export function fmtCheck(r: CaseResult): string {
  const parts: string[] = [];
  if (r.error != null) parts.push(`ERROR: ${r.error.split('\n')[0]}`);
  if (r.leakedTensors !== 0) parts.push(`LEAK ${r.leakedTensors > 0 ? '+' : ''}${r.leakedTensors} tensors`);
  return parts.length ? parts.join('; ') : 'ok';
}

export const COLUMNS = ['case', 'phase', 'shape', 'median ms', 'p10-p90 ms', 'n', 'GFLOP/s', 'GB/s', 'check'] as const;

/** One result as the cells of {@link COLUMNS}. */
export function cells(r: CaseResult): string[] {
  return [
    r.id,
    r.phase,
    fmtShape(r.shape),
    fmtMs(r.medianMs),
    r.p10Ms == null ? '-' : `${fmtMs(r.p10Ms)}-${fmtMs(r.p90Ms)}`,
    String(r.n),
    fmtRate(r.gflops),
    fmtRate(r.gbps),
    fmtCheck(r),
  ];
}
