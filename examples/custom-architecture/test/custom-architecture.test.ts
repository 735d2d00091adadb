import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import type { BackendName } from '@slmkit/core';
import { main } from '../src/main.js';
import { TINY_CONFIG, expectedParameterCount } from '../src/model.js';

describe.each<BackendName>(['cpu', 'wasm'])('custom-architecture example on %s', (backend) => {
  it('counts, runs a forward, and decodes through its caches the tokens a full forward picks, leak-free', async () => {
    const lines: string[] = [];
    const r = await main({ backend, log: (l) => lines.push(l) });

    expect(r.backend).toBe(backend);
    expect(tf.getBackend()).toBe(backend);
    expect(r.parameters.total).toBe(expectedParameterCount(TINY_CONFIG));
    expect(r.parameters.total).toBe(94_528);
    // The listed modules cover every parameter (the tied head adds none).
    expect(r.parameters.byModule.reduce((s, [, n]) => s + n, 0)).toBe(r.parameters.total);

    expect(r.logitsShape).toEqual([1, 12, TINY_CONFIG.vocabSize]);
    expect(r.generated).toHaveLength(10);
    for (const t of r.generated) expect(t >= 0 && t < TINY_CONFIG.vocabSize).toBe(true);
    expect(r.fullForwardArgmax).toEqual(r.generated);
    expect(r.maxLogitDiff).toBeLessThan(1e-4);
    // The untrained toy still produces more than one distinct token, so the comparison above means something.
    expect(new Set(r.generated).size).toBeGreaterThan(1);

    // 12 prompt tokens + 9 fed back: the full-attention cache holds them all, the windowed one only its window.
    expect(r.caches).toEqual([{ length: 21, held: 21 }, { length: 21, held: 8 }]);
    expect(r.numTensors.after).toBe(r.numTensors.before);
    expect(tf.memory().numTensors).toBe(r.numTensors.before);
    expect(lines.join('\n')).toContain('same tokens');
  });
});
