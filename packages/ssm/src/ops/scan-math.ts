/**
 * The selective scan over typed arrays: the forward recurrence and its backward pass, shared by the `cpu` and
 * `wasm` kernels (and by every single-step decode, which is a scan of length 1 from a given state). The forward
 * runs on WebAssembly SIMD (`wasm/scan-simd.ts`) where the engine has it; the loop here is the fallback.
 *
 * Layouts are row-major: `u, delta, z, y: [Bt, D, L]`, `A: [D, N]`, `B, C: [Bt, G, N, L]` (G = 1 when not grouped),
 * `state: [Bt, D, N]`. Channel `d` reads group `floor(d / (D / G))`. Arithmetic is float64 inside, float32 at the
 * edges.
 *
 * @module
 */
import { scanForwardSimd } from './wasm/scan-simd.js';

/** The typed-array inputs of one scan; optional ones are `undefined` (or empty). */
export interface ScanArrays {
  u: Float32Array;
  delta: Float32Array;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D?: Float32Array;
  z?: Float32Array;
  deltaBias?: Float32Array;
  initialState?: Float32Array;
}

/** The sizes of one scan. */
export interface ScanDims {
  batch: number;
  channels: number;
  length: number;
  stateSize: number;
  groups: number;
  deltaSoftplus: boolean;
}

// exp(x) for the x ≤ 0 the scan needs (dt·A with dt ≥ 0 and A < 0; any x works): x = k·ln2 + r with |r| ≤ ln2/2,
// exp(r) by a degree-7 Taylor polynomial (relative error < 5e-9, far below float32's 6e-8), 2^k from a table.
// About 3x faster than Math.exp in V8, which is most of the forward's time.
const POW2 = new Float64Array(2100);
for (let i = 0; i < POW2.length; i++) POW2[i] = Math.pow(2, i - 1075);
const LOG2E = Math.LOG2E;
const LN2 = Math.LN2;
const C3 = 1 / 6;
const C4 = 1 / 24;
const C5 = 1 / 120;
const C6 = 1 / 720;
const C7 = 1 / 5040;
const LN2_HI = 0.6931471803691238;
const LN2_LO = 1.9082149292705877e-10;

/** `e^x` to about 1e-8 relative; 0 below −745, Infinity above 709. */
export function fastExp(x: number): number {
  if (!(x > -745)) return x !== x ? x : 0;
  if (x > 709) return Infinity;
  const k = Math.round(x * LOG2E);
  const r = x - k * LN2_HI - k * LN2_LO;
  const p = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (1 / 5040)))))));
  return p * POW2[k + 1075];
}

/** `log(1 + e^x)` as `torch.nn.functional.softplus` computes it (the identity above 20). */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** `[Bt, G, N, L]` to `[Bt, G, L, N]`, so the inner loop over the state reads contiguous memory. */
function timeMajor(x: Float32Array, outer: number, N: number, L: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let o = 0; o < outer; o++) {
    const base = o * N * L;
    for (let n = 0; n < N; n++) for (let t = 0; t < L; t++) out[base + t * N + n] = x[base + n * L + t];
  }
  return out;
}

const present = (x: Float32Array | undefined): x is Float32Array => x != null && x.length > 0;

/**
 * The forward scan. Writes `y` `[Bt, D, L]` (gated by `silu(z)` when `z` is given) into `out`; with `packState`,
 * `out` is `[Bt, D, L + N]` and each row ends with that channel's state after the last step.
 */
export function scanForward(x: ScanArrays, dims: ScanDims, out: Float32Array, packState: boolean): void {
  if (scanForwardSimd(x, dims, out, packState)) return;
  const { batch: Bt, channels: Dc, length: L, stateSize: N, groups: G, deltaSoftplus } = dims;
  const perGroup = Dc / G;
  const Bt_ = timeMajor(x.B, Bt * G, N, L);
  const Ct = timeMajor(x.C, Bt * G, N, L);
  const u = x.u;
  const delta = x.delta;
  const A = x.A;
  const Dv = present(x.D) ? x.D : null;
  const z = present(x.z) ? x.z : null;
  const bias = present(x.deltaBias) ? x.deltaBias : null;
  const init = present(x.initialState) ? x.initialState : null;
  const pow2 = POW2;
  const h = new Float64Array(N);
  const a = new Float64Array(N);
  const rowStride = packState ? L + N : L;
  for (let b = 0; b < Bt; b++) {
    for (let d = 0; d < Dc; d++) {
      const row = (b * Dc + d) * L;
      const bc = (b * G + ((d / perGroup) | 0)) * L * N;
      for (let n = 0; n < N; n++) {
        h[n] = init !== null ? init[(b * Dc + d) * N + n] : 0;
        a[n] = A[d * N + n] * LOG2E; // exp(dt·A) = 2^(dt·A·log2 e)
      }
      const db = bias !== null ? bias[d] : 0;
      const dskip = Dv !== null ? Dv[d] : 0;
      const yRow = (b * Dc + d) * rowStride;
      for (let t = 0; t < L; t++) {
        let dt = delta[row + t] + db;
        if (deltaSoftplus) dt = dt > 20 ? dt : Math.log1p(Math.exp(dt));
        const ut = u[row + t];
        const dtu = dt * ut;
        const off = bc + t * N;
        let acc = 0;
        for (let n = 0; n < N; n++) {
          // 2^v = 2^k · 2^f, k = round(v), |f| ≤ 1/2; 2^f = e^(f ln 2) by a degree-7 polynomial (rel. error < 5e-9).
          let v = dt * a[n];
          if (v < -1000) v = -1000;
          const k = Math.floor(v + 0.5);
          const r = (v - k) * LN2;
          const p = 1 + r * (1 + r * (0.5 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * C7))))));
          const hn = p * pow2[k + 1075] * h[n] + dtu * Bt_[off + n];
          h[n] = hn;
          acc += hn * Ct[off + n];
        }
        let yt = acc + dskip * ut;
        if (z !== null) {
          const zt = z[row + t];
          yt *= zt / (1 + Math.exp(-zt));
        }
        out[yRow + t] = yt;
      }
      if (packState) for (let n = 0; n < N; n++) out[yRow + L + n] = h[n];
    }
  }
}

/** Gradients of every input of {@link scanForward}; absent inputs get empty arrays. */
export interface ScanGrads {
  u: Float32Array;
  delta: Float32Array;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D: Float32Array;
  z: Float32Array;
  deltaBias: Float32Array;
  initialState: Float32Array;
}

/**
 * The backward scan: given the gradient of `y` `[Bt, D, L]` and, optionally, of the last state `[Bt, D, N]`,
 * returns the gradient of every input. States are recomputed one channel at a time (an `L × N` buffer reused for
 * every channel), so memory stays O(L·N) beyond the inputs, never O(Bt·D·L·N).
 */
export function scanBackward(x: ScanArrays, dims: ScanDims, dy: Float32Array, dLastState?: Float32Array): ScanGrads {
  const { batch: Bt, channels: Dc, length: L, stateSize: N, groups: G, deltaSoftplus } = dims;
  const perGroup = Dc / G;
  const Bt_ = timeMajor(x.B, Bt * G, N, L);
  const Ct = timeMajor(x.C, Bt * G, N, L);
  const hasD = present(x.D);
  const hasZ = present(x.z);
  const hasBias = present(x.deltaBias);
  const hasInit = present(x.initialState);
  const du = new Float32Array(Bt * Dc * L);
  const ddelta = new Float32Array(Bt * Dc * L);
  const dA = new Float64Array(Dc * N);
  const dBt = new Float64Array(Bt * G * L * N); // time-major, transposed back at the end
  const dCt = new Float64Array(Bt * G * L * N);
  const dD = new Float64Array(hasD ? Dc : 0);
  const dz = new Float32Array(hasZ ? Bt * Dc * L : 0);
  const dBias = new Float64Array(hasBias ? Dc : 0);
  const dInit = new Float32Array(hasInit ? Bt * Dc * N : 0);
  const hist = new Float64Array((L + 1) * N); // h_{-1} … h_{L-1} of one channel
  const dts = new Float64Array(L);
  const gh = new Float64Array(N);
  for (let b = 0; b < Bt; b++) {
    for (let d = 0; d < Dc; d++) {
      const row = (b * Dc + d) * L;
      const g = (d / perGroup) | 0;
      const bc = (b * G + g) * L * N;
      const bias = hasBias ? x.deltaBias![d] : 0;
      const dskip = hasD ? x.D![d] : 0;
      // Recompute this channel's states.
      for (let n = 0; n < N; n++) hist[n] = hasInit ? x.initialState![(b * Dc + d) * N + n] : 0;
      for (let t = 0; t < L; t++) {
        let dt = x.delta[row + t] + bias;
        if (deltaSoftplus) dt = softplus(dt);
        dts[t] = dt;
        const dtu = dt * x.u[row + t];
        const off = bc + t * N;
        const prev = t * N;
        const cur = prev + N;
        for (let n = 0; n < N; n++) {
          hist[cur + n] = Math.exp(dt * x.A[d * N + n]) * hist[prev + n] + dtu * Bt_[off + n];
        }
      }
      for (let n = 0; n < N; n++) gh[n] = dLastState != null && dLastState.length > 0 ? dLastState[(b * Dc + d) * N + n] : 0;
      let gD = 0;
      let gBias = 0;
      for (let t = L - 1; t >= 0; t--) {
        const ut = x.u[row + t];
        const dt = dts[t];
        const off = bc + t * N;
        const cur = (t + 1) * N;
        const prev = t * N;
        let gy = dy[row + t];
        if (hasZ) {
          // out = y · silu(z): recompute y_t = C·h + D·u.
          let yt = dskip * ut;
          for (let n = 0; n < N; n++) yt += hist[cur + n] * Ct[off + n];
          const zt = x.z![row + t];
          const s = sigmoid(zt);
          dz[row + t] = gy * yt * s * (1 + zt * (1 - s));
          gy *= zt * s;
        }
        let gu = gy * dskip;
        gD += gy * ut;
        let gdt = 0;
        for (let n = 0; n < N; n++) {
          const an = x.A[d * N + n];
          const hn = hist[cur + n];
          dCt[off + n] += gy * hn;
          const g_ = gh[n] + gy * Ct[off + n]; // dL/dh_t
          const e = Math.exp(dt * an);
          const gdA = g_ * hist[prev + n] * e; // through dA = exp(dt·a)
          gdt += gdA * an + g_ * Bt_[off + n] * ut;
          dA[d * N + n] += gdA * dt;
          dBt[off + n] += g_ * dt * ut;
          gu += g_ * dt * Bt_[off + n];
          gh[n] = g_ * e; // to h_{t-1}
        }
        du[row + t] = gu;
        if (deltaSoftplus) {
          const raw = x.delta[row + t] + bias;
          gdt *= raw > 20 ? 1 : sigmoid(raw);
        }
        ddelta[row + t] = gdt;
        gBias += gdt;
      }
      if (hasD) dD[d] += gD;
      if (hasBias) dBias[d] += gBias;
      if (hasInit) for (let n = 0; n < N; n++) dInit[(b * Dc + d) * N + n] = gh[n];
    }
  }
  const back = (t: Float64Array): Float32Array => {
    const out = new Float32Array(t.length);
    for (let o = 0; o < Bt * G; o++) {
      const base = o * N * L;
      for (let n = 0; n < N; n++) for (let s = 0; s < L; s++) out[base + n * L + s] = t[base + s * N + n];
    }
    return out;
  };
  return {
    u: du,
    delta: ddelta,
    A: Float32Array.from(dA),
    B: back(dBt),
    C: back(dCt),
    D: Float32Array.from(dD),
    z: dz,
    deltaBias: Float32Array.from(dBias),
    initialState: dInit,
  };
}
