/**
 * The int8 and int4 quantised matmul on WebAssembly SIMD (`quant.wat`): lays out the inputs in the module's memory
 * (rows zero-padded to a multiple of 32 input features), runs it, and reads the result back. Each output channel's
 * row is decoded four lanes at a time and dotted with every input row.
 *
 * @module
 */
import { instantiateWasm } from '../../wasm.js';
import { QUANT_WASM_BASE64 } from './quant-wasm.js';
import { wordsPerRow, type PackedWeight } from '../formats.js';

interface QuantExports {
  memory: WebAssembly.Memory;
  matmul_int8(x: number, codes: number, scales: number, bias: number, out: number, row: number, N: number, Ip: number, O: number): void;
  matmul_int4(x: number, codes: number, gscale: number, gzero: number, bias: number, out: number, row: number, N: number, Ip: number, O: number, G: number, groups: number): void;
}

let instance: QuantExports | null | undefined;
let enabled = true;

/** The module, instantiated on first use; `null` where WebAssembly SIMD is missing. */
function quantModule(): QuantExports | null {
  if (instance === undefined) instance = instantiateWasm<QuantExports>(QUANT_WASM_BASE64);
  return instance;
}

/** Turns the SIMD path off or on (tests use it to run the typed-array loops). Internal. */
export function setQuantSimd(on: boolean): void {
  enabled = on;
}

/**
 * `out [N, O] = x [N, I] · Ŵᵀ + bias` for an int8 weight, or an int4 one whose group size is a multiple of 32.
 * Returns `false`, touching nothing, for other weights or without WebAssembly SIMD.
 */
export function quantMatMulSimd(x: Float32Array, N: number, q: PackedWeight, bias: Float32Array, out: Float32Array): boolean {
  if (!enabled || (q.scheme !== 'int8' && !(q.scheme === 'int4' && q.groupSize % 32 === 0))) return false;
  const m = quantModule();
  if (m === null) return false;
  const { inFeatures: I, outFeatures: O } = q;
  const Ip = Math.ceil(I / 32) * 32;
  const groups = q.scheme === 'int4' ? Math.ceil(I / q.groupSize) : 1;
  const codeBytes = q.scheme === 'int8' ? Ip : Ip / 2; // per row
  const scaleCount = q.scheme === 'int8' ? O : O * groups;
  // Layout (bytes, 16-aligned): x [N, Ip] f32 | row [Ip] f32 | out [N, O] f32 | bias [O] | scales | zeros | codes
  const align = (n: number): number => Math.ceil(n / 16) * 16;
  const oX = 0;
  const oRow = align(oX + 4 * N * Ip);
  const oOut = align(oRow + 4 * Ip);
  const oBias = align(oOut + 4 * N * O);
  const oScale = align(oBias + 4 * O);
  const oZero = align(oScale + 4 * scaleCount);
  const oCodes = align(oZero + (q.scheme === 'int4' ? 4 * scaleCount : 0));
  const bytes = oCodes + O * codeBytes;
  const have = m.memory.buffer.byteLength;
  if (bytes > have) m.memory.grow(Math.ceil((bytes - have) / 65536));
  const buffer = m.memory.buffer; // after any growth: growing detaches earlier views
  const f32 = new Float32Array(buffer);
  const u8 = new Uint8Array(buffer);

  f32.fill(0, oX / 4, oX / 4 + N * Ip);
  for (let n = 0; n < N; n++) f32.set(x.subarray(n * I, (n + 1) * I), oX / 4 + n * Ip);
  if (bias.length > 0) f32.set(bias.subarray(0, O), oBias / 4);
  else f32.fill(0, oBias / 4, oBias / 4 + O);
  f32.set(q.scales.subarray(0, scaleCount), oScale / 4);
  if (q.scheme === 'int4') {
    for (let f = 0; f < scaleCount; f++) f32[oZero / 4 + f] = (q.zeros[f >> 3] >>> (4 * (f & 7))) & 15;
  }
  // The packed words' little-endian bytes are the codes in order: int8 one per byte, int4 two (low nibble first).
  const words = wordsPerRow(q.scheme, I);
  const packedBytes = new Uint8Array(q.packed.buffer, q.packed.byteOffset, q.packed.byteLength);
  u8.fill(0, oCodes, oCodes + O * codeBytes);
  for (let o = 0; o < O; o++) u8.set(packedBytes.subarray(4 * o * words, 4 * (o + 1) * words), oCodes + o * codeBytes);

  if (q.scheme === 'int8') m.matmul_int8(oX, oCodes, oScale, oBias, oOut, oRow, N, Ip, O);
  else m.matmul_int4(oX, oCodes, oScale, oZero, oBias, oOut, oRow, N, Ip, O, q.groupSize, groups);
  out.set(f32.subarray(oOut / 4, oOut / 4 + N * O));
  return true;
}
