/** The Markdown report: the header as a list, then one table row per case. */
import { headerLines, type RunHeader } from '../header.js';
import type { CaseResult } from '../runner.js';
import { COLUMNS, cells } from './format.js';

const RIGHT = new Set(['median ms', 'p10-p90 ms', 'n', 'GFLOP/s', 'GB/s']);

function escapeCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function toMarkdown(header: RunHeader, results: readonly CaseResult[]): string {
  const out = [`# slmkit benchmarks: ${header.backend}, ${header.date}`, ''];
  for (const line of headerLines(header)) {
    const i = line.indexOf(': ');
    out.push(`- **${line.slice(0, i)}**: ${line.slice(i + 2)}`);
  }
  out.push('');
  out.push(`| ${COLUMNS.join(' | ')} |`);
  out.push(`|${COLUMNS.map((c) => (RIGHT.has(c) ? ' ---: ' : ' --- ')).join('|')}|`);
  for (const r of results) out.push(`| ${cells(r).map(escapeCell).join(' | ')} |`);
  out.push('');
  out.push(
    'Times are the median of the timed runs after warm-up, each ending with a download of the outputs; ' +
      'p10-p90 is their spread, n how many there were. GFLOP/s and GB/s divide the work a case declares by the ' +
      'median; check flags a case that threw or left tensors behind. See benchmarks/README.md.',
  );
  out.push('');
  return out.join('\n');
}
