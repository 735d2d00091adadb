/**
 * A small allocator over a WebAssembly module's linear memory: the quantised layers keep their codes there between
 * calls (see `quant-simd.ts`), and each call takes its activations' scratch from it.
 *
 * First fit over a list of free blocks kept sorted by address, coalesced on free; a block at the top of the heap
 * goes back to the top. Memory grows with `memory.grow` when no free block fits and never shrinks (WebAssembly
 * cannot), so freed space is reused, not returned. Every block is 16-byte aligned (a `v128` load or store).
 *
 * @module
 */

/** Allocation granule and alignment, in bytes. */
const ALIGN = 16;
/** WebAssembly page size, in bytes. */
const PAGE = 65536;

/** What a {@link WasmHeap} holds, in bytes. Internal. */
export interface WasmHeapStats {
  /** Bytes in live blocks (rounded up to 16 each). */
  allocated: number;
  /** Live blocks. */
  blocks: number;
  /** Bytes in free blocks below the top. */
  free: number;
  /** The top: one past the highest byte ever handed out and not given back to the top. */
  top: number;
  /** The memory's size. */
  capacity: number;
}

/**
 * First-fit allocator over `memory` from byte `base` up (the bytes below `base` are left to the module). Internal:
 * one per module instance.
 */
export class WasmHeap {
  /** Free blocks below `top`, sorted by address, never adjacent (coalesced). */
  private readonly holes: { at: number; size: number }[] = [];
  /** Live blocks: address → size. */
  private readonly live = new Map<number, number>();
  private top: number;

  constructor(
    private readonly memory: WebAssembly.Memory,
    base = 0,
  ) {
    this.top = Math.ceil(base / ALIGN) * ALIGN;
  }

  /**
   * A block of at least `bytes` bytes (16-aligned; 0 bytes still takes 16 so that every block has its own address).
   * Grows the memory when nothing fits, which detaches every earlier view of `memory.buffer`: take views after
   * allocating.
   */
  alloc(bytes: number): number {
    if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`WasmHeap.alloc: bytes must be a non-negative integer, found ${bytes}`);
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let h = 0; h < this.holes.length; h++) {
      const hole = this.holes[h];
      if (hole.size < size) continue;
      const at = hole.at;
      if (hole.size === size) this.holes.splice(h, 1);
      else {
        hole.at += size;
        hole.size -= size;
      }
      this.live.set(at, size);
      return at;
    }
    const at = this.top;
    const need = at + size - this.memory.buffer.byteLength;
    if (need > 0) this.memory.grow(Math.ceil(need / PAGE));
    this.top = at + size;
    this.live.set(at, size);
    return at;
  }

  /** Gives block `at` back. Throws a `RangeError` for an address that is not a live block (a double free). */
  free(at: number): void {
    const size = this.live.get(at);
    if (size === undefined) throw new RangeError(`WasmHeap.free: ${at} is not a live block`);
    this.live.delete(at);
    // Insert in address order, then merge with the neighbours.
    let h = 0;
    while (h < this.holes.length && this.holes[h].at < at) h++;
    this.holes.splice(h, 0, { at, size });
    const next = this.holes[h + 1];
    if (next !== undefined && at + size === next.at) {
      this.holes[h].size += next.size;
      this.holes.splice(h + 1, 1);
    }
    const prev = this.holes[h - 1];
    if (prev !== undefined && prev.at + prev.size === at) {
      prev.size += this.holes[h].size;
      this.holes.splice(h, 1);
      h--;
    }
    // A hole that reaches the top is the top.
    const last = this.holes[this.holes.length - 1];
    if (last !== undefined && last.at + last.size === this.top) {
      this.top = last.at;
      this.holes.pop();
    }
  }

  /** The heap's bookkeeping (for tests). */
  stats(): WasmHeapStats {
    let allocated = 0;
    for (const size of this.live.values()) allocated += size;
    return {
      allocated,
      blocks: this.live.size,
      free: this.holes.reduce((a, h) => a + h.size, 0),
      top: this.top,
      capacity: this.memory.buffer.byteLength,
    };
  }
}
