/** Writes a run's results as `<date>-<backend>.json`, `.md` and `.svg`. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { RunHeader } from '../header.js';
import type { CaseResult } from '../runner.js';
import { toMarkdown } from './markdown.js';
import { toSvg } from './svg.js';

/** The JSON file's contents. `schema` changes when a field changes meaning. */
export interface ResultsFile {
  schema: 1;
  header: RunHeader;
  results: CaseResult[];
}

export function toJson(header: RunHeader, results: readonly CaseResult[]): string {
  const file: ResultsFile = { schema: 1, header, results: [...results] };
  return `${JSON.stringify(file, null, 2)}\n`;
}

export async function writeResults(
  outDir: string,
  header: RunHeader,
  results: readonly CaseResult[],
): Promise<{ json: string; md: string; svg: string }> {
  await mkdir(outDir, { recursive: true });
  const base = path.join(outDir, `${header.date}-${header.backend}`);
  const files = { json: `${base}.json`, md: `${base}.md`, svg: `${base}.svg` };
  await writeFile(files.json, toJson(header, results));
  await writeFile(files.md, toMarkdown(header, results));
  await writeFile(files.svg, toSvg(header, results));
  return files;
}
