import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compileExamples, exportsWithoutExamples, extractExamples, extractMarkdownExamples } from '@slmkit/fixtures/docs';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('@slmkit/adapters documentation', () => {
  it('gives every exported symbol a TSDoc example', () => {
    expect(exportsWithoutExamples(packageDir)).toEqual([]);
  });

  it('has examples that compile against the built package', () => {
    const examples = extractExamples(packageDir);
    expect(examples.length).toBeGreaterThan(8);
    expect(compileExamples(packageDir, examples)).toEqual([]);
  });

  it('has a guide (docs/adapters.md) whose examples compile against the built packages', () => {
    const examples = extractMarkdownExamples([join(packageDir, '..', '..', 'docs', 'adapters.md')]);
    expect(examples.length).toBeGreaterThanOrEqual(4);
    expect(compileExamples(packageDir, examples)).toEqual([]);
  });
});
