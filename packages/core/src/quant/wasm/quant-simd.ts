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
  gemv_int8(xh: number, xl: number, xscale: number, codes: number, scales: number, bias: number, out: number, N: number, Ip: number, O: number): void;
  gemv_int4(xh: number, xl: number, xs: number, xscale: number, codes: number, gscale: number, gzero: number, bias: number, out: number, N: number, Ip: number, O: number, G: number, groups: number): void;
  gemv_ternary(xh: number, xl: number, xscale: number, codes: number, gamma: number, bias: number, out: number, N: number, Ip: number, O: number): void;
  gemm_int8(x: number, codes: number, scales: number, bias: number, out: number, scratch: number, N: number, Ip: number, O: number): void;
  gemm_int4(x: number, codes: number, gscale: number, gzero: number, bias: number, out: number, scratch: number, N: number, Ip: number, O: number, G: number, groups: number): void;
  gemm_ternary(x: number, codes: number, gamma: number, bias: number, out: number, scratch: number, N: number, Ip: number, O: number): void;
}

/**
 * Input rows from which a call decodes each weight row once to floats (gemm) instead of in registers for every row
 * (gemv). Measured at 576 → 1536 on wasm: the integer gemv costs about 0.08 (int8), 0.13 (int4), 0.11 (ternary) ms per
 * row, the gemm about 0.07 ms to decode plus 0.07–0.1 per row.
 */
export const GEMM_MIN_ROWS: Readonly<Record<QuantScheme, number>> = { int8: 8, int4: 4, ternary: 4 };

/** The decode-step kernels' fixed point: inputs become (xh · 2^14 + xl) · 2^−e with |xh · 2^14 + xl| < 2^28. */
const FIXED_BITS = 28;
/** Widest ternary row the decode-step kernel sums without a flush (see quant.wat). */
const TERNARY_GEMV_MAX_IN = 1 << 19;
/** Widest int4 group the decode-step kernel sums without a flush. */
const INT4_GEMV_MAX_GROUP = 1 << 15;

/** Codes per 16-byte block of the kernel's layout (and so the padding of a row). */
const BLOCK: Readonly<Record<QuantScheme, number>> = { int8: 16, int4: 32, ternary: 64 };

let loaded: { exports: QuantExports; heap: WasmHeap } | null | undefined;
let enabled = true;

/** The module and its heap, instantiated on first use; `null` where WebAssembly SIMD is missing. */
function quantModule(): { exports: QuantExports; heap: WasmHeap } | null {
  if (loaded === undefined) {
    const exports = instantiateWasm<QuantExports>(QUANT_WASM_BASE64);
    loaded = exports === null ? null : { exports, heap: new WasmHeap(exports.memory) };
  }
  return loaded;
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
    // int4's scales and zero points get 16 bytes more: the decode step reads up to three groups past the last.
    const sizes = [Oe * rowBytes, scheme === 'int8' ? 4 * Oe : scheme === 'int4' ? 4 * Oe * groups + 16 : 4, scheme === 'int4' ? Oe * groups + 16 : 0, 4 * Oe];
    const [codes, scales, zeros, biasAt] = sizes.map((n) => m.heap.alloc(n));
    const buffer = m.exports.memory.buffer; // after the allocations: growing detaches earlier views
    // Codes: the packed words hold code i at field i % per of word i / per. The kernels want int8 codes as bytes in
    // order, and int4 / ternary code 8k + j of each 16-byte block at field k of 16-bit lane j (see quant.wat).
    const per = CODES_PER_WORD[scheme];
    const mask = (1 << bitsPerCode) - 1;
    const words = wordsPerRow(scheme, I);
    if (scheme === 'int8') {
      const bytes = new Int8Array(buffer, codes, Oe * rowBytes);
      bytes.fill(0);
      for (let o = 0; o < O; o++) {
        const src = new Int8Array(q.packed.buffer, q.packed.byteOffset + 4 * o * words, I); // little-endian words: the codes in order
        bytes.set(src, o * rowBytes);
      }
    } else {
      const lanes = new Uint16Array(buffer, codes, (Oe * rowBytes) / 2);
      lanes.fill(scheme === 'ternary' ? 0x5555 : 0); // padding: code 0 (ternary stores q + 1)
      for (let o = 0; o < O; o++) {
        const src = o * words;
        const dst = (o * rowBytes) / 2;
        for (let i = 0; i < I; i++) {
          const code = (q.packed[src + Math.floor(i / per)] >>> (bitsPerCode * (i % per))) & mask;
          const r = i % block;
          const lane = dst + 8 * Math.floor(i / block) + (r % 8);
          const shift = bitsPerCode * Math.floor(r / 8);
          lanes[lane] = (lanes[lane] & ~(mask << shift)) | (code << shift);
        }
      }
    }
    const s = new Float32Array(buffer, scales, sizes[1] / 4);
    s.fill(0);
    s.set(q.scales.subarray(0, scaleCount));
    if (scheme === 'int4') {
      const z = new Uint8Array(buffer, zeros, Oe * groups + 16);
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

  /**
   * `out [N, O] = x [N, I] · Ŵᵀ + bias`. A few finite rows (a decode step) take the integer kernels on fixed-point
   * inputs; more rows, or any non-finite input, the float tile (which also carries NaN and ±Infinity through).
   */
  matmul(x: Float32Array, N: number, out: Float32Array): void {
    if (this.freed) throw new Error('ResidentQuantWeight: used after free()');
    const { Ip, inFeatures: I, outFeatures: O, groupSize: G } = this;
    if (N === 0 || O === 0) return;
    const { exports: e, heap } = this.m;
    const groups = this.scheme === 'int4' ? Math.ceil(I / G) : 0;
    const fits = this.scheme === 'int8' || (this.scheme === 'int4' ? G <= INT4_GEMV_MAX_GROUP : Ip <= TERNARY_GEMV_MAX_IN);
    const exps = N < GEMM_MIN_ROWS[this.scheme] && fits ? fixedPointExponents(x, N, I) : null;
    const outAt = heap.alloc(4 * N * O);
    const blocks: number[] = [outAt];
    try {
      if (exps !== null) {
        const xh = heap.alloc(2 * N * Ip);
        blocks.push(xh);
        const xl = heap.alloc(2 * N * Ip);
        blocks.push(xl);
        const xscale = heap.alloc(4 * N);
        blocks.push(xscale);
        const groups4 = Math.ceil(groups / 4) * 4;
        const xs = heap.alloc(4 * N * groups4); // int4: the rows' group sums, zero past the last group
        blocks.push(xs);
        const buffer = e.memory.buffer; // after the allocations
        const h = new Int16Array(buffer, xh, N * Ip);
        const l = new Int16Array(buffer, xl, N * Ip);
        const sc = new Float32Array(buffer, xscale, N);
        const sums = new Float32Array(buffer, xs, N * groups4);
        sums.fill(0);
        for (let n = 0; n < N; n++) {
          const up = 2 ** exps[n];
          sc[n] = 2 ** -exps[n];
          const from = n * I;
          const to = n * Ip;
          for (let g = 0; g < Math.max(groups, 1); g++) {
            // One group at a time (the whole row for int8 and ternary), summing the fixed-point inputs for int4.
            const stop = groups > 0 ? Math.min(I, (g + 1) * G) : I;
            let sum = 0;
            for (let i = g * G; i < stop; i++) {
              const v = Math.round(x[from + i] * up);
              h[to + i] = v >> 14;
              l[to + i] = v & 0x3fff;
              sum += v;
            }
            if (groups > 0) sums[n * groups4 + g] = sum;
          }
          h.fill(0, to + I, to + Ip);
          l.fill(0, to + I, to + Ip);
        }
        if (this.scheme === 'int8') e.gemv_int8(xh, xl, xscale, this.codes, this.scales, this.bias, outAt, N, Ip, O);
        else if (this.scheme === 'int4') e.gemv_int4(xh, xl, xs, xscale, this.codes, this.scales, this.zeros, this.bias, outAt, N, Ip, O, G, groups);
        else e.gemv_ternary(xh, xl, xscale, this.codes, this.scales, this.bias, outAt, N, Ip, O);
      } else {
        const xAt = heap.alloc(4 * N * Ip);
        blocks.push(xAt);
        const scratch = heap.alloc(8 * Ip); // two decoded rows
        blocks.push(scratch);
        const f32 = new Float32Array(e.memory.buffer); // after the allocations
        const x0 = xAt / 4;
        if (Ip === I) f32.set(x.subarray(0, N * I), x0);
        else {
          for (let n = 0; n < N; n++) {
            f32.set(x.subarray(n * I, (n + 1) * I), x0 + n * Ip);
            f32.fill(0, x0 + n * Ip + I, x0 + (n + 1) * Ip);
          }
        }
        if (this.scheme === 'int8') e.gemm_int8(xAt, this.codes, this.scales, this.bias, outAt, scratch, N, Ip, O);
        else if (this.scheme === 'int4') e.gemm_int4(xAt, this.codes, this.scales, this.zeros, this.bias, outAt, scratch, N, Ip, O, G, groups);
        else e.gemm_ternary(xAt, this.codes, this.scales, this.bias, outAt, scratch, N, Ip, O);
      }
      out.set(new Float32Array(e.memory.buffer, outAt, N * O));
    } finally {
      for (let k = blocks.length - 1; k >= 0; k--) heap.free(blocks[k]);
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
 * Per input row, the exponent e that puts the row in the decode-step kernels' fixed point: `x · 2^e` rounds to an
 * integer under 2^28 in magnitude (0 for a row of zeros). `null` when a value is not finite or a row's largest
 * magnitude is under about 2^−73 (those take the float path).
 */
function fixedPointExponents(x: Float32Array, N: number, I: number): number[] | null {
  const exps: number[] = [];
  for (let n = 0; n < N; n++) {
    let max = 0;
    for (let i = n * I; i < (n + 1) * I; i++) {
      const a = Math.abs(x[i]);
      if (!(a <= max)) {
        if (!Number.isFinite(a)) return null;
        max = a;
      }
    }
    if (max === 0) {
      exps.push(0);
      continue;
    }
    // max · 2^e < 2^(FIXED_BITS) − 1, so that rounding stays below 2^FIXED_BITS.
    let e = FIXED_BITS - 1 - Math.floor(Math.log2(max));
    while (max * 2 ** e >= 2 ** FIXED_BITS - 1) e--;
    if (e > 100) return null; // values so small that 2^−e would leave float32's normal range: the float path
    exps.push(e);
  }
  return exps;
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
