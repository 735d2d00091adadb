/**
 * The forward selective scan on WebAssembly SIMD (`scan.wat`): this file lays the inputs out in the module's
 * memory, runs `scan_channel` once per batch row × channel, and applies the skip and the gate. The state update
 * runs in float32, four states per instruction, with the exponential evaluated in-lane (no `Math.exp` per state).
 *
 * @module
 */
import { instantiateWasm } from '@slmkit/core';
import { SCAN_WASM_BASE64 } from './scan-wasm.js';
import type { ScanArrays, ScanDims } from '../scan-math.js';

interface ScanExports {
  memory: WebAssembly.Memory;
  softplus(x: number, n: number): void;
  silu_gate(y: number, z: number, n: number): void;
  scan_channel(dt: number, u: number, a: number, b: number, c: number, h: number, acc: number, y: number, L: number, Np: number, skip: number): void;
}

let instance: ScanExports | null | undefined;
let enabled = true;

/** The module, instantiated on first use; `null` where WebAssembly SIMD is missing. */
function scanModule(): ScanExports | null {
  if (instance === undefined) instance = instantiateWasm<ScanExports>(SCAN_WASM_BASE64);
  return instance;
}

/** Turns the SIMD path off or on (tests use it to run the plain typed-array loop). Internal. */
export function setScanSimd(on: boolean): void {
  enabled = on;
}

/** Whether the SIMD scan will run. */
export function scanSimdAvailable(): boolean {
  return enabled && scanModule() !== null;
}

const LOG2E = Math.LOG2E;

/**
 * The forward scan of {@link ScanArrays} into `out` exactly as `scanForward` lays it out (`[Bt, D, L]`, or
 * `[Bt, D, L + N]` with each row's last state when `packState`). Returns `false`, touching nothing, when the SIMD
 * module is unavailable.
 */
export function scanForwardSimd(x: ScanArrays, dims: ScanDims, out: Float32Array, packState: boolean): boolean {
  if (!enabled) return false;
  const m = scanModule();
  if (m === null) return false;
  const { batch: Bt, channels: Dc, length: L, stateSize: N, groups: G, deltaSoftplus } = dims;
  const Np = (N + 7) & ~7; // states padded to pairs of vectors; padded lanes have a = b = c = 0 and stay 0
  const rows = Bt * Dc;
  const perGroup = Dc / G;
  const size = (rows * L + 3) & ~3; // dt, u, y, z padded to whole vectors for the elementwise passes
  const gated = x.z != null && x.z.length > 0;
  // Layout (float offsets): dt | u | y | z [rows·L, padded] | a [Dc, Np] | b, c [Bt·G, L, Np] | h [rows, Np] | acc [L, 4]
  const oDt = 0;
  const oU = oDt + size;
  const oY = oU + size;
  const oZ = oY + size;
  const oA = oZ + (gated ? size : 0);
  const oB = oA + Dc * Np;
  const oC = oB + Bt * G * L * Np;
  const oH = oC + Bt * G * L * Np;
  const oAcc = oH + rows * Np;
  const bytes = (oAcc + 4 * L) * 4;
  const have = m.memory.buffer.byteLength;
  if (bytes > have) m.memory.grow(Math.ceil((bytes - have) / 65536));
  const mem = new Float32Array(m.memory.buffer); // after any growth: growing detaches earlier views

  const { u, delta, A, B, C } = x;
  mem.set(delta.subarray(0, rows * L), oDt);
  const bias = x.deltaBias != null && x.deltaBias.length > 0 ? x.deltaBias : null;
  if (bias !== null) {
    for (let r = 0; r < rows; r++) {
      const db = bias[r % Dc];
      for (let i = oDt + r * L, end = i + L; i < end; i++) mem[i] += db;
    }
  }
  if (deltaSoftplus) m.softplus(4 * oDt, size);
  mem.set(u.subarray(0, rows * L), oU);
  if (gated) mem.set(x.z!.subarray(0, rows * L), oZ);
  mem.fill(0, oA, oAcc);
  for (let d = 0; d < Dc; d++) for (let n = 0; n < N; n++) mem[oA + d * Np + n] = A[d * N + n] * LOG2E;
  for (let o = 0; o < Bt * G; o++) {
    for (let n = 0; n < N; n++) {
      for (let t = 0; t < L; t++) {
        mem[oB + (o * L + t) * Np + n] = B[(o * N + n) * L + t];
        mem[oC + (o * L + t) * Np + n] = C[(o * N + n) * L + t];
      }
    }
  }
  const init = x.initialState != null && x.initialState.length > 0 ? x.initialState : null;
  if (init !== null) for (let r = 0; r < rows; r++) mem.set(init.subarray(r * N, (r + 1) * N), oH + r * Np);

  const Dv = x.D != null && x.D.length > 0 ? x.D : null;
  for (let b = 0; b < Bt; b++) {
    for (let d = 0; d < Dc; d++) {
      const r = b * Dc + d;
      const bc = (b * G + ((d / perGroup) | 0)) * L * Np;
      const skip = Dv !== null ? Dv[d] : 0;
      m.scan_channel(4 * (oDt + r * L), 4 * (oU + r * L), 4 * (oA + d * Np), 4 * (oB + bc), 4 * (oC + bc), 4 * (oH + r * Np), 4 * oAcc, 4 * (oY + r * L), L, Np, skip);
    }
  }
  if (gated) m.silu_gate(4 * oY, 4 * oZ, size);

  if (!packState) {
    out.set(mem.subarray(oY, oY + rows * L));
    return true;
  }
  for (let r = 0; r < rows; r++) {
    out.set(mem.subarray(oY + r * L, oY + (r + 1) * L), r * (L + N));
    out.set(mem.subarray(oH + r * Np, oH + r * Np + N), r * (L + N) + L);
  }
  return true;
}
