/**
 * The terminal table, printed a row at a time as cases finish, so the table is also the progress display.
 */
import type { BenchCase } from '../registry.js';
import type { CaseResult } from '../runner.js';
import { COLUMNS, cells, fmtShape } from './format.js';

/** Numbers are right-aligned; text is left-aligned. */
const RIGHT = new Set(['median ms', 'p10-p90 ms', 'n', 'GFLOP/s', 'GB/s']);

export class TablePrinter {
  private readonly widths: number[];

  /** Column widths are fixed up front from the cases to run, since rows are printed before the last one exists. */
  constructor(cases: readonly BenchCase[]) {
    const fixed = [8, 7, 0, 9, 15, 3, 7, 6, 5];
    this.widths = COLUMNS.map((name, i) => Math.max(name.length, fixed[i]!));
    for (const c of cases) {
      this.widths[0] = Math.max(this.widths[0]!, c.id.length);
      this.widths[2] = Math.max(this.widths[2]!, fmtShape(c.shape).length);
    }
  }

  private line(values: readonly string[]): string {
    return values
      .map((v, i) => {
        const w = this.widths[i]!;
        if (i === values.length - 1) return v; // the check column is free-form and last
        return RIGHT.has(COLUMNS[i]!) ? v.padStart(w) : v.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  }

  header(): string {
    const rule = this.widths.map((w, i) => '-'.repeat(i === this.widths.length - 1 ? 5 : w)).join('  ');
    return `${this.line(COLUMNS)}\n${rule}`;
  }

  row(r: CaseResult): string {
    return this.line(cells(r));
  }
}
