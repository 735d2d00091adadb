import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compileExamples, exportsWithoutExamples, extractExamples } from '@slmkit/fixtures/docs';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('@slmkit/hybrid documentation', () => {
  it('gives every exported symbol a TSDoc example', () => {
    expect(exportsWithoutExamples(packageDir)).toEqual([]);
  });

  it('has examples that compile against the built package', () => {
    const examples = extractExamples(packageDir);
    expect(examples.length).toBeGreaterThan(5);
    expect(compileExamples(packageDir, examples)).toEqual([]);
  });
});
