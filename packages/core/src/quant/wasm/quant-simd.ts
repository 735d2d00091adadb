/**
 * The quantised matmul on WebAssembly SIMD (`quant.wat`) for int8, int4 (groups of a multiple of 32) and ternary
 * weights. A {@link ResidentQuantWeight} copies a layer's codes, scales, zero points and bias into the module's
 * memory once, in the kernel's layout; each call then copies only the activations in and the output out.
 * {@link quantMatMulSimd} is the copying path for a weight with no resident copy (it makes one, runs, frees it).
 *
 * @module
 */
import { instantiateWasm } from '../../wasm.js';
import { QUANT_WASM_BASE64 } from './quant-wasm.js';
import { WasmHeap, type WasmHeapStats } from './heap.js';
import { CODES_PER_WORD, wordsPerRow, type PackedWeight, type QuantScheme } from '../formats.js';

interface QuantExports {
  memory: WebAssembly.Memory;
  gemv_int8(x: number, codes: number, scales: number, bias: number, out: number, N: number, Ip: number, O: number): void;
  group_sums(x: number, xs: number, N: number, Ip: number, G: number): void;
  gemv_int4(x: number, xs: number, codes: number, gscale: number, gzero: number, bias: number, out: number, N: number, Ip: number, O: number, G: number, groups: number): void;
  gemv_ternary(x: number, codes: number, gamma: number, bias: number, out: number, N: number, Ip: number, O: number): void;
  gemm_int8(x: number, codes: number, scales: number, bias: number, out: number, scratch: number, N: number, Ip: number, O: number): void;
  gemm_int4(x: number, codes: number, gscale: number, gzero: number, bias: number, out: number, scratch: number, N: number, Ip: number, O: number, G: number, groups: number): void;
  gemm_ternary(x: number, codes: number, gamma: number, bias: number, out: number, scratch: number, N: number, Ip: number, O: number): void;
}

/** Input rows from which a call decodes each weight row once to floats (gemm) instead of in registers per row (gemv). */
export const GEMM_MIN_ROWS = 4;

/** Codes per 16-byte block of the kernel's layout (and so the padding of a row). */
const BLOCK: Readonly<Record<QuantScheme, number>> = { int8: 16, int4: 32, ternary: 64 };

let module: { exports: QuantExports; heap: WasmHeap } | null | undefined;
let enabled = true;

/** The module and its heap, instantiated on first use; `null` where WebAssembly SIMD is missing. */
function quantModule(): { exports: QuantExports; heap: WasmHeap } | null {
  if (module === undefined) {
    const exports = instantiateWasm<QuantExports>(QUANT_WASM_BASE64);
    module = exports === null ? null : { exports, heap: new WasmHeap(exports.memory) };
  }
  return module;
}

/** Turns the SIMD path off or on (tests use it to run the typed-array loops). Internal. */
export function setQuantSimd(on: boolean): void {
  enabled = on;
}

/** What the module's heap holds (tests check that layers free what they took); `null` without SIMD. Internal. */
export function quantHeapStats(): WasmHeapStats | null {
  return quantModule()?.heap.stats() ?? null;
}

/** Whether the SIMD kernels take this weight (int8, int4 with a group size that is a multiple of 32, ternary) here. */
export function quantSimdSupports(q: Pick<PackedWeight, 'scheme' | 'groupSize'>): boolean {
  return enabled && (q.scheme !== 'int4' || q.groupSize % 32 === 0) && quantModule() !== null;
}

/**
 * A quantised weight (and bias) held in the SIMD module's memory in the kernel's layout, so that a call copies only
 * activations. Made by {@link ResidentQuantWeight.create}; {@link ResidentQuantWeight.free} gives the memory back,
 * after which the object must not be used. Internal to `QuantizedLinear`.
 */
export class ResidentQuantWeight {
  /** The tensors' data ids this copy was made from (the kernel checks them before using it). */
  sources: readonly object[] = [];
  private freed = false;

  private constructor(
    private readonly m: { exports: QuantExports; heap: WasmHeap },
    readonly scheme: QuantScheme,
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly groupSize: number,
    /** Input features per row, padded to the scheme's block. */
    private readonly Ip: number,
    private readonly codes: number,
    private readonly scales: number,
    private readonly zeros: number,
    private readonly bias: number,
    /** Bytes taken from the heap. */
    readonly bytes: number,
  ) {}

  /** Copies `q` and `bias` (`[out]`, or empty for none) into the module; `null` where {@link quantSimdSupports} is false. */
  static create(q: PackedWeight, bias: Float32Array): ResidentQuantWeight | null {
    const m = quantModule();
    if (m === null || !quantSimdSupports(q)) return null;
    const { scheme, inFeatures: I, outFeatures: O } = q;
    const block = BLOCK[scheme];
    const Ip = Math.ceil(I / block) * block;
    const bitsPerCode = 32 / CODES_PER_WORD[scheme];
    const rowBytes = (Ip * bitsPerCode) / 8;
    const groups = scheme === 'int4' ? Math.ceil(I / q.groupSize) : 1;
    const scaleCount = scheme === 'int8' ? O : scheme === 'int4' ? O * groups : 1;
    // Rows of codes, scales and bias for an even number of channels (the decode-step kernel takes them in pairs).
    const Oe = O + (O % 2);
    const sizes = [Oe * rowBytes, 4 * (scheme === 'int8' ? Oe : scheme === 'int4' ? Oe * groups : 1), scheme === 'int4' ? Oe * groups : 0, 4 * Oe];
    const [codes, scales, zeros, biasAt] = sizes.map((n) => m.heap.alloc(n));
    const buffer = m.exports.memory.buffer; // after the allocations: growing detaches earlier views
    // Codes: the packed words hold code i at field i % per of word i / per; the kernel wants code 4k + j of each
    // 16-byte block at field k of lane j (see quant.wat).
    const per = CODES_PER_WORD[scheme];
    const mask = (1 << bitsPerCode) - 1;
    const words = wordsPerRow(scheme, I);
    const lanes = new Uint32Array(buffer, codes, (Oe * rowBytes) / 4);
    lanes.fill(scheme === 'ternary' ? 0x55555555 : 0); // padding: code 0 (ternary stores q + 1)
    for (let o = 0; o < O; o++) {
      const src = o * words;
      const dst = (o * rowBytes) / 4;
      for (let i = 0; i < I; i++) {
        const code = (q.packed[src + Math.floor(i / per)] >>> (bitsPerCode * (i % per))) & mask;
        const b = Math.floor(i / block);
        const r = i % block;
        const lane = dst + 4 * b + (r % 4);
        const shift = bitsPerCode * Math.floor(r / 4);
        lanes[lane] = (lanes[lane] & ~(mask << shift)) | (code << shift);
      }
    }
    const s = new Float32Array(buffer, scales, sizes[1] / 4);
    s.fill(0);
    s.set(q.scales.subarray(0, scaleCount));
    if (scheme === 'int4') {
      const z = new Uint8Array(buffer, zeros, Oe * groups);
      z.fill(0);
      for (let f = 0; f < O * groups; f++) z[f] = (q.zeros[f >> 3] >>> (4 * (f & 7))) & 15;
    }
    const b = new Float32Array(buffer, biasAt, Oe);
    b.fill(0);
    if (bias.length > 0) b.set(bias.subarray(0, O));
    const bytes = sizes.reduce((a, n) => a + Math.max(16, Math.ceil(n / 16) * 16), 0);
    return new ResidentQuantWeight(m, scheme, I, O, q.groupSize, Ip, codes, scales, zeros, biasAt, bytes);
  }

  /** Whether {@link ResidentQuantWeight.free} has run. */
  get isFreed(): boolean {
    return this.freed;
  }

  /** `out [N, O] = x [N, I] · Ŵᵀ + bias`. */
  matmul(x: Float32Array, N: number, out: Float32Array): void {
    if (this.freed) throw new Error('ResidentQuantWeight: used after free()');
    const { Ip, inFeatures: I, outFeatures: O, groupSize: G } = this;
    if (N === 0 || O === 0) return;
    const { exports: e, heap } = this.m;
    const gemm = N >= GEMM_MIN_ROWS;
    const groups = this.scheme === 'int4' ? Math.ceil(I / G) : 0;
    const xAt = heap.alloc(4 * N * Ip);
    const outAt = heap.alloc(4 * N * O);
    const extraAt = heap.alloc(gemm ? 8 * Ip : 16 * N * groups); // two decoded rows, or the int4 group sums
    try {
      const f32 = new Float32Array(e.memory.buffer);
      const x0 = xAt / 4;
      if (Ip === I) f32.set(x.subarray(0, N * I), x0);
      else {
        for (let n = 0; n < N; n++) {
          f32.set(x.subarray(n * I, (n + 1) * I), x0 + n * Ip);
          f32.fill(0, x0 + n * Ip + I, x0 + (n + 1) * Ip);
        }
      }
      if (this.scheme === 'int8') {
        if (gemm) e.gemm_int8(xAt, this.codes, this.scales, this.bias, outAt, extraAt, N, Ip, O);
        else e.gemv_int8(xAt, this.codes, this.scales, this.bias, outAt, N, Ip, O);
      } else if (this.scheme === 'int4') {
        if (gemm) e.gemm_int4(xAt, this.codes, this.scales, this.zeros, this.bias, outAt, extraAt, N, Ip, O, G, groups);
        else {
          e.group_sums(xAt, extraAt, N, Ip, G);
          e.gemv_int4(xAt, extraAt, this.codes, this.scales, this.zeros, this.bias, outAt, N, Ip, O, G, groups);
        }
      } else if (gemm) e.gemm_ternary(xAt, this.codes, this.scales, this.bias, outAt, extraAt, N, Ip, O);
      else e.gemv_ternary(xAt, this.codes, this.scales, this.bias, outAt, N, Ip, O);
      out.set(new Float32Array(e.memory.buffer, outAt, N * O));
    } finally {
      heap.free(extraAt);
      heap.free(outAt);
      heap.free(xAt);
    }
  }

  /** Gives the memory back to the heap (once; later calls do nothing). */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    for (const at of [this.bias, this.zeros, this.scales, this.codes]) this.m.heap.free(at);
  }
}

/**
 * `out [N, O] = x [N, I] · Ŵᵀ + bias`, copying the weight into the module for this call only (the path of a
 * weight with no {@link ResidentQuantWeight}). Returns `false`, touching nothing, where
 * {@link quantSimdSupports} is false.
 */
export function quantMatMulSimd(x: Float32Array, N: number, q: PackedWeight, bias: Float32Array, out: Float32Array): boolean {
  const resident = ResidentQuantWeight.create(q, bias);
  if (resident === null) return false;
  try {
    resident.matmul(x, N, out);
  } finally {
    resident.free();
  }
  return true;
}
