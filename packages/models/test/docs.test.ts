import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compileExamples, exportsWithoutExamples, extractExamples, extractMarkdownExamples } from '@slmkit/fixtures/docs';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('@slmkit/models documentation', () => {
  it('gives every exported symbol a TSDoc example', () => {
    expect(exportsWithoutExamples(packageDir)).toEqual([]);
  });

  it('has examples that compile against the built package', () => {
    const examples = extractExamples(packageDir);
    expect(examples.length).toBeGreaterThan(10);
    expect(compileExamples(packageDir, examples)).toEqual([]);
  });
});

describe('the guides in docs/ and the root README', () => {
  it('have examples that compile against the built packages', () => {
    // models depends on every other package, so the guides' imports all resolve from here.
    const docsDir = join(packageDir, '..', '..', 'docs');
    const guides = readdirSync(docsDir)
      .filter((f) => f.endsWith('.md'))
      .map((f) => join(docsDir, f));
    guides.push(join(packageDir, '..', '..', 'README.md'));
    const examples = extractMarkdownExamples(guides);
    expect(examples.length).toBeGreaterThan(3);
    expect(compileExamples(packageDir, examples)).toEqual([]);
  });
});
