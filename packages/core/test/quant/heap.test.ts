// The allocator over a WebAssembly memory that keeps quantised weights resident: alignment, no overlap, reuse of
// freed blocks (coalesced), growth that keeps the data, and no creep in a loop of allocate / free.
import { describe, expect, it } from 'vitest';
import { WasmHeap } from '../../src/quant/wasm/heap.js';

const PAGE = 65536;

describe('WasmHeap', () => {
  it('hands out 16-aligned, non-overlapping blocks and counts them', () => {
    const heap = new WasmHeap(new WebAssembly.Memory({ initial: 1 }), 8);
    const sizes = [1, 0, 17, 16, 100];
    const blocks = sizes.map((n) => [heap.alloc(n), n] as const);
    for (const [at] of blocks) {
      expect(at % 16).toBe(0);
      expect(at).toBeGreaterThanOrEqual(8);
    }
    const spans = blocks.map(([at, n]) => [at, at + Math.max(16, Math.ceil(n / 16) * 16)]).sort((a, b) => a[0] - b[0]);
    for (let k = 1; k < spans.length; k++) expect(spans[k][0]).toBeGreaterThanOrEqual(spans[k - 1][1]);
    expect(heap.stats()).toMatchObject({ blocks: 5, allocated: 16 + 16 + 32 + 16 + 112, free: 0 });
    expect(() => heap.alloc(-1)).toThrow(RangeError);
    expect(() => heap.alloc(1.5)).toThrow(RangeError);
  });

  it('reuses a freed block, merges neighbouring holes, and gives a hole at the top back to the top', () => {
    const heap = new WasmHeap(new WebAssembly.Memory({ initial: 1 }));
    const a = heap.alloc(64);
    const b = heap.alloc(64);
    const c = heap.alloc(64);
    const d = heap.alloc(64); // keeps c's hole below the top
    heap.free(b);
    expect(heap.alloc(48)).toBe(b); // first fit, in b's place
    heap.free(b);
    heap.free(c);
    expect(heap.stats()).toMatchObject({ free: 128, blocks: 2 });
    expect(heap.alloc(128)).toBe(b); // b and c merged into one hole
    heap.free(b);
    heap.free(a);
    expect(heap.alloc(192)).toBe(a); // a, b, c merged
    heap.free(a);
    heap.free(d); // everything free: the top comes back to the base
    expect(heap.stats()).toEqual({ allocated: 0, blocks: 0, free: 0, top: 0, capacity: PAGE });
    expect(() => heap.free(d)).toThrow(/not a live block/);
    expect(() => heap.free(12345)).toThrow(RangeError);
  });

  it('grows the memory when nothing fits, keeping what earlier blocks hold', () => {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const heap = new WasmHeap(memory);
    const a = heap.alloc(1000);
    new Uint8Array(memory.buffer, a, 1000).fill(7);
    const big = heap.alloc(3 * PAGE);
    expect(memory.buffer.byteLength).toBeGreaterThanOrEqual(big + 3 * PAGE);
    expect(heap.stats().capacity).toBe(memory.buffer.byteLength);
    expect(new Uint8Array(memory.buffer, a, 1000).every((v) => v === 7)).toBe(true);
    new Uint8Array(memory.buffer, big, 3 * PAGE).fill(1); // the whole block is addressable
    heap.free(big);
    heap.free(a);
    expect(heap.stats().top).toBe(0);
  });

  it('does not creep: a loop of allocations and frees of mixed sizes stays within the first pass’s memory', () => {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const heap = new WasmHeap(memory);
    const keep = heap.alloc(5000); // a long-lived block below the churn
    const pass = (): void => {
      const blocks = [heap.alloc(20000), heap.alloc(300), heap.alloc(70000), heap.alloc(16)];
      heap.free(blocks[1]);
      heap.free(blocks[0]);
      heap.free(blocks[3]);
      heap.free(blocks[2]);
    };
    pass();
    const after = heap.stats();
    for (let k = 0; k < 200; k++) pass();
    expect(heap.stats()).toEqual(after);
    expect(after.blocks).toBe(1);
    expect(after.top).toBe(keep + 5008);
    heap.free(keep);
  });
});
