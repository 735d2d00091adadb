/**
 * Mamba-2's scan over typed arrays: the forward recurrence and its backward pass, shared by the `cpu` and `wasm`
 * kernels (and by every single-step decode, a scan of length 1 from a given state).
 *
 * Layouts are row-major: `x, z: [B, L, H, P]`, `dt: [B, L, H]`, `A, D, dtBias: [H]`, `B, C: [B, L, G, N]`,
 * `state: [B, H, P, N]`. Head `h` reads group `⌊h / (H/G)⌋`. The output row of batch `b` is `y[b]` (`[L, H, P]`)
 * followed, when the state is packed, by the final state `[H, P, N]`. Arithmetic is float64 inside, float32 at
 * the edges.
 *
 * @module
 */
import type { SsdDims } from './ssd-naive.js';

/** The typed-array inputs of one scan; optional ones are empty. */
export interface SsdArrays {
  x: Float32Array;
  dt: Float32Array;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D: Float32Array;
  z: Float32Array;
  dtBias: Float32Array;
  initialState: Float32Array;
}

/** The sizes of one scan and how dt is processed. */
export interface SsdMathDims extends SsdDims {
  dtSoftplus: boolean;
  dtMin: number;
  dtMax: number;
}

/** Gradients of every input of {@link ssdForward}; absent inputs get empty arrays. */
export type SsdGrads = SsdArrays;

/** The processed step size: `clamp(softplus(raw), dtMin, dtMax)` (softplus the identity above 20, as torch's). */
function stepSize(raw: number, d: SsdMathDims): number {
  let v = d.dtSoftplus ? (raw > 20 ? raw : Math.log1p(Math.exp(raw))) : raw;
  if (v < d.dtMin) v = d.dtMin;
  else if (v > d.dtMax) v = d.dtMax;
  return v;
}

/** d stepSize / d raw (0 where the clamp is active, as torch.clamp's gradient). */
function stepSizeGrad(raw: number, d: SsdMathDims): number {
  const v = d.dtSoftplus ? (raw > 20 ? raw : Math.log1p(Math.exp(raw))) : raw;
  if (v < d.dtMin || v > d.dtMax) return 0;
  return d.dtSoftplus ? (raw > 20 ? 1 : 1 / (1 + Math.exp(-raw))) : 1;
}

/**
 * The forward scan. Writes `y` (gated by `silu(z)` when `z` is given) into `out`, row `b` at `b · rowStride`;
 * with `packState`, each row ends with that batch row's final state `[H, P, N]`.
 */
export function ssdForward(a: SsdArrays, d: SsdMathDims, out: Float32Array, packState: boolean): void {
  const { batch: Bt, length: L, heads: H, headDim: P, groups: G, stateSize: N } = d;
  const Hg = H / G;
  const PN = P * N;
  const rowStride = L * H * P + (packState ? H * PN : 0);
  const { x, dt, A, B, C } = a;
  const hasD = a.D.length > 0;
  const hasZ = a.z.length > 0;
  const hasBias = a.dtBias.length > 0;
  const hasInit = a.initialState.length > 0;
  const S = new Float64Array(PN);
  for (let b = 0; b < Bt; b++) {
    const row = b * rowStride;
    for (let h = 0; h < H; h++) {
      const g = (h / Hg) | 0;
      const Ah = A[h];
      const Dh = hasD ? a.D[h] : 0;
      const bias = hasBias ? a.dtBias[h] : 0;
      const s0 = (b * H + h) * PN;
      for (let i = 0; i < PN; i++) S[i] = hasInit ? a.initialState[s0 + i] : 0;
      for (let t = 0; t < L; t++) {
        const bt = b * L + t;
        const step = stepSize(dt[bt * H + h] + bias, d);
        const decay = Math.exp(step * Ah);
        const xo = (bt * H + h) * P;
        const bo = (bt * G + g) * N;
        const yo = row + (t * H + h) * P;
        for (let p = 0; p < P; p++) {
          const xv = x[xo + p];
          const xd = step * xv;
          const so = p * N;
          let acc = 0;
          for (let n = 0; n < N; n++) {
            const s = decay * S[so + n] + xd * B[bo + n];
            S[so + n] = s;
            acc += s * C[bo + n];
          }
          let y = acc + Dh * xv;
          if (hasZ) {
            const zv = a.z[xo + p];
            y *= zv / (1 + Math.exp(-zv));
          }
          out[yo + p] = y;
        }
      }
      if (packState) {
        const so = row + L * H * P + h * PN;
        for (let i = 0; i < PN; i++) out[so + i] = S[i];
      }
    }
  }
}

/**
 * The backward scan: given the gradient of the kernel's output (`dOut`, in the output's packed layout), returns
 * the gradient of every input. States are not stored for every step: the forward stores one every `segment` steps
 * (about √L) and each segment's states are recomputed as the backward walk reaches it, so memory beyond the inputs
 * is O(√L · P · N), never O(B · L · H · P · N).
 */
export function ssdBackward(a: SsdArrays, d: SsdMathDims, dOut: Float32Array, packState: boolean): SsdGrads {
  const { batch: Bt, length: L, heads: H, headDim: P, groups: G, stateSize: N } = d;
  const Hg = H / G;
  const PN = P * N;
  const rowStride = L * H * P + (packState ? H * PN : 0);
  const { x, dt, A, B, C } = a;
  const hasD = a.D.length > 0;
  const hasZ = a.z.length > 0;
  const hasBias = a.dtBias.length > 0;
  const hasInit = a.initialState.length > 0;
  const dx = new Float32Array(x.length);
  const ddt = new Float32Array(dt.length);
  const dA = new Float64Array(H);
  const dB = new Float64Array(B.length);
  const dC = new Float64Array(C.length);
  const dD = new Float64Array(hasD ? H : 0);
  const dz = new Float32Array(hasZ ? a.z.length : 0);
  const dBias = new Float64Array(hasBias ? H : 0);
  const dInit = new Float32Array(hasInit ? a.initialState.length : 0);
  const seg = Math.max(1, Math.ceil(Math.sqrt(L)));
  const nseg = Math.ceil(L / seg);
  const checkpoints = new Float64Array(nseg * PN);
  const hist = new Float64Array((seg + 1) * PN); // the states S_{t0−1} … S_{t1−1} of one segment
  const steps = new Float64Array(L);
  const decays = new Float64Array(L);
  const gS = new Float64Array(PN);
  for (let b = 0; b < Bt; b++) {
    const row = b * rowStride;
    for (let h = 0; h < H; h++) {
      const g = (h / Hg) | 0;
      const Ah = A[h];
      const Dh = hasD ? a.D[h] : 0;
      const bias = hasBias ? a.dtBias[h] : 0;
      const s0 = (b * H + h) * PN;
      // Forward, keeping the state at the start of each segment.
      for (let i = 0; i < PN; i++) hist[i] = hasInit ? a.initialState[s0 + i] : 0;
      for (let t = 0; t < L; t++) {
        if (t % seg === 0) checkpoints.set(hist.subarray(0, PN), (t / seg) * PN);
        const bt = b * L + t;
        const step = stepSize(dt[bt * H + h] + bias, d);
        const decay = Math.exp(step * Ah);
        steps[t] = step;
        decays[t] = decay;
        const xo = (bt * H + h) * P;
        const bo = (bt * G + g) * N;
        for (let p = 0; p < P; p++) {
          const xd = step * x[xo + p];
          for (let n = 0; n < N; n++) hist[p * N + n] = decay * hist[p * N + n] + xd * B[bo + n];
        }
      }
      for (let i = 0; i < PN; i++) gS[i] = packState ? dOut[row + L * H * P + h * PN + i] : 0;
      let gD = 0;
      let gBias = 0;
      let gA = 0;
      for (let k = nseg - 1; k >= 0; k--) {
        const t0 = k * seg;
        const t1 = Math.min(L, t0 + seg);
        hist.set(checkpoints.subarray(k * PN, (k + 1) * PN), 0);
        for (let t = t0; t < t1; t++) {
          const bt = b * L + t;
          const xo = (bt * H + h) * P;
          const bo = (bt * G + g) * N;
          const prev = (t - t0) * PN;
          const cur = prev + PN;
          for (let p = 0; p < P; p++) {
            const xd = steps[t] * x[xo + p];
            for (let n = 0; n < N; n++) hist[cur + p * N + n] = decays[t] * hist[prev + p * N + n] + xd * B[bo + n];
          }
        }
        for (let t = t1 - 1; t >= t0; t--) {
          const bt = b * L + t;
          const step = steps[t];
          const decay = decays[t];
          const xo = (bt * H + h) * P;
          const bo = (bt * G + g) * N;
          const yo = row + (t * H + h) * P;
          const prev = (t - t0) * PN;
          const cur = prev + PN;
          let gDecay = 0;
          let gStep = 0;
          for (let p = 0; p < P; p++) {
            const xv = x[xo + p];
            const so = p * N;
            let gy = dOut[yo + p];
            if (hasZ) {
              let y = Dh * xv;
              for (let n = 0; n < N; n++) y += hist[cur + so + n] * C[bo + n];
              const zv = a.z[xo + p];
              const sg = 1 / (1 + Math.exp(-zv));
              dz[xo + p] = gy * y * sg * (1 + zv * (1 - sg));
              gy *= zv * sg;
            }
            gD += gy * xv;
            let gxB = 0; // Σ_n dL/dS[p, n] · B[n]
            const xd = step * xv;
            for (let n = 0; n < N; n++) {
              dC[bo + n] += gy * hist[cur + so + n];
              const gs = gS[so + n] + gy * C[bo + n]; // dL/dS_t[p, n]
              gDecay += gs * hist[prev + so + n];
              dB[bo + n] += gs * xd;
              gxB += gs * B[bo + n];
              gS[so + n] = gs * decay; // to S_{t−1}
            }
            dx[xo + p] = gy * Dh + step * gxB;
            gStep += xv * gxB;
          }
          gStep += gDecay * decay * Ah;
          gA += gDecay * decay * step;
          const raw = dt[bt * H + h] + bias;
          const gRaw = gStep * stepSizeGrad(raw, d);
          ddt[bt * H + h] = gRaw;
          gBias += gRaw;
        }
      }
      dA[h] += gA;
      if (hasD) dD[h] += gD;
      if (hasBias) dBias[h] += gBias;
      if (hasInit) for (let i = 0; i < PN; i++) dInit[s0 + i] = gS[i];
    }
  }
  return {
    x: dx,
    dt: ddt,
    A: Float32Array.from(dA),
    B: Float32Array.from(dB),
    C: Float32Array.from(dC),
    D: Float32Array.from(dD),
    z: dz,
    dtBias: Float32Array.from(dBias),
    initialState: dInit,
  };
}
