/**
 * The two tfjs-ops forms of Mamba-2's state-space-duality scan: the sequential recurrence (`naive`, the oracle) and
 * the four-step chunked algorithm (`chunked`, the fallback where a backend has no fused kernel). Both follow the
 * recurrence of Dao & Gu 2024 ("Transformers are SSMs", arXiv 2405.21060); see `ssdScan` for the maths.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * The kernel-level inputs of the scan. Optional inputs that are absent are empty tensors (shape `[0]`), so the
 * kernel always has the same nine inputs and its gradient can save all of them.
 */
export interface SsdKernelInputs extends Record<string, tf.Tensor> {
  /** `[B, L, H, P]`. */
  x: tf.Tensor;
  /** `[B, L, H]`, before the bias, softplus and clamp. */
  dt: tf.Tensor;
  /** `[H]`. */
  A: tf.Tensor;
  /** `[B, L, G, N]`. */
  B: tf.Tensor;
  /** `[B, L, G, N]`. */
  C: tf.Tensor;
  /** `[H]` or empty. */
  D: tf.Tensor;
  /** `[B, L, H, P]` or empty. */
  z: tf.Tensor;
  /** `[H]` or empty. */
  dtBias: tf.Tensor;
  /** `[B, H, P, N]` or empty. */
  initialState: tf.Tensor;
}

/** The kernel-level attributes of the scan. */
export interface SsdKernelAttrs {
  /** `dt ← softplus(dt + dtBias)` (threshold 20, as torch's). */
  dtSoftplus: boolean;
  /** Lower clamp of the processed dt (−Infinity: none). */
  dtMin: number;
  /** Upper clamp of the processed dt (Infinity: none). */
  dtMax: number;
  /** Chunk length of the chunked form (the fused kernels ignore it). */
  chunkSize: number;
  /**
   * Pack the final state after `y`: the output is `[B, L·H·P + H·P·N]` (row b: `y[b]` flattened, then the state
   * `[H, P, N]` flattened) instead of `[B, L·H·P]`.
   */
  returnFinalState: boolean;
}

/** Names of the kernel's inputs, in the order its gradient saves them. */
export const SSD_INPUT_NAMES = ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'initialState'] as const;

/** The sizes of one scan, read off the kernel's input shapes. */
export interface SsdDims {
  batch: number;
  length: number;
  heads: number;
  headDim: number;
  groups: number;
  stateSize: number;
}

/** Reads the sizes off the input shapes (`x` `[B, L, H, P]`, `B` `[B, L, G, N]`). */
export function ssdDims(x: { shape: number[] }, B: { shape: number[] }): SsdDims {
  const [batch, length, heads, headDim] = x.shape;
  return { batch, length, heads, headDim, groups: B.shape[2], stateSize: B.shape[3] };
}

/** The step size as the scan uses it: `clamp(softplus(dt + dtBias), dtMin, dtMax)`, `[B, L, H]`. */
export function processDt(inputs: SsdKernelInputs, attrs: SsdKernelAttrs): tf.Tensor {
  return tf.tidy(() => {
    let dt: tf.Tensor = inputs.dt; // [B, L, H]
    if (inputs.dtBias.size > 0) dt = tf.add(dt, inputs.dtBias);
    if (attrs.dtSoftplus) dt = tf.softplus(dt);
    if (attrs.dtMin > -Infinity || attrs.dtMax < Infinity) dt = tf.clipByValue(dt, attrs.dtMin, attrs.dtMax);
    return dt;
  });
}

/** Adds `D ⊙ x`, gates by `silu(z)` and packs `y` (and the final state) into the kernel's output form. */
function finish(y: tf.Tensor, S: tf.Tensor, inputs: SsdKernelInputs, attrs: SsdKernelAttrs): tf.Tensor {
  const { x } = inputs;
  const [Bt, L, H, P] = x.shape;
  if (inputs.D.size > 0) y = tf.add(y, tf.mul(x, tf.reshape(inputs.D, [H, 1]))); // [B, L, H, P]
  if (inputs.z.size > 0) y = tf.mul(y, tf.mul(inputs.z, tf.sigmoid(inputs.z))); // [B, L, H, P]
  const flat = tf.reshape(y, [Bt, L * H * P]); // [B, L·H·P]
  if (!attrs.returnFinalState) return flat;
  return tf.concat([flat, tf.reshape(S, [Bt, H * P * S.shape[3]!])], 1); // [B, L·H·P + H·P·N]
}

/** `[B, L, G, N]` to `[B, L, H, N]`: head h reads group `⌊h / (H/G)⌋` (contiguous blocks of heads). */
function perHead(x: tf.Tensor, heads: number): tf.Tensor {
  const [Bt, L, G, N] = x.shape;
  if (G === heads) return x;
  // A rank-4 tile: tfjs has no gradient for a rank-5 one.
  const tiled = tf.tile(tf.reshape(x, [Bt * L, G, 1, N]), [1, 1, heads / G, 1]); // [B·L, G, H/G, N]
  return tf.reshape(tiled, [Bt, L, heads, N]); // [B, L, H, N]
}

/**
 * The naive scan: the recurrence `S_t = exp(dt_t·A)·S_{t−1} + dt_t·x_t ⊗ B_t`, `y_t = S_t·C_t`, one step of tfjs
 * ops per position. The oracle of the tests.
 */
export function naiveSsdScan(inputs: SsdKernelInputs, attrs: SsdKernelAttrs): tf.Tensor {
  return tf.tidy(() => {
    const { batch: Bt, length: L, heads: H, headDim: P, stateSize: N } = ssdDims(inputs.x, inputs.B);
    const dt = processDt(inputs, attrs); // [B, L, H]
    const decay = tf.exp(tf.mul(dt, inputs.A)); // [B, L, H]
    const xdt = tf.mul(inputs.x, tf.expandDims(dt, 3)); // [B, L, H, P]
    const Bh = perHead(inputs.B, H); // [B, L, H, N]
    const Ch = perHead(inputs.C, H); // [B, L, H, N]
    let S: tf.Tensor = inputs.initialState.size > 0 ? inputs.initialState : tf.zeros([Bt, H, P, N]); // [B, H, P, N]
    const ys: tf.Tensor[] = [];
    for (let t = 0; t < L; t++) {
      const dA = tf.reshape(tf.slice(decay, [0, t, 0], [Bt, 1, H]), [Bt, H, 1, 1]); // [B, H, 1, 1]
      const xt = tf.reshape(tf.slice(xdt, [0, t, 0, 0], [Bt, 1, H, P]), [Bt, H, P, 1]); // [B, H, P, 1]
      const bt = tf.reshape(tf.slice(Bh, [0, t, 0, 0], [Bt, 1, H, N]), [Bt, H, 1, N]); // [B, H, 1, N]
      const ct = tf.reshape(tf.slice(Ch, [0, t, 0, 0], [Bt, 1, H, N]), [Bt, H, 1, N]); // [B, H, 1, N]
      S = tf.add(tf.mul(dA, S), tf.mul(xt, bt)); // [B, H, P, N]
      ys.push(tf.reshape(tf.sum(tf.mul(S, ct), 3), [Bt, 1, H, P])); // [B, 1, H, P]
    }
    const y = ys.length === 1 ? ys[0] : tf.concat(ys, 1); // [B, L, H, P]
    return finish(y, S, inputs, attrs);
  });
}

/**
 * Pads axis 1 of `x` with zeros up to `length`. Slices and pads here stay at rank ≤ 3: the webgpu backend's
 * gradient of a rank-5 slice (a rank-5 pad) is wrong in tfjs 4.22.
 */
function padTime(x: tf.Tensor, length: number): tf.Tensor {
  const [Bt, L, ...rest] = x.shape;
  if (length === L) return x;
  const flat = tf.reshape(x, [Bt, L, rest.reduce((a, b) => a * b, 1)]); // [B, L, ·]
  return tf.reshape(tf.pad(flat, [[0, 0], [0, length - L], [0, 0]]), [Bt, length, ...rest]); // [B, length, …]
}

/**
 * The chunked scan (the SSD algorithm, four steps), in tfjs ops, for any chunk length Q (L is padded to a multiple
 * of it with steps of dt = 0, x = 0, which leave the state as it is):
 *
 * 1. inside each chunk, the quadratic "attention-like" form: `Y_diag = (C Bᵀ ⊙ Λ) (dt·x)`, with
 *    `Λ[t, s] = exp(Σ_{s<k≤t} dt_k·A)` for s ≤ t and 0 above the diagonal;
 * 2. the state each chunk produces on its own: `Σ_s exp(Σ_{s<k≤end} dt_k·A) dt_s·x_s ⊗ B_s`;
 * 3. the recurrence over chunks: `S_c = exp(Σ_chunk dt·A)·S_{c−1} + state_c` (a loop of ⌈L/Q⌉ steps), from the
 *    initial state;
 * 4. what the state before each chunk contributes to its outputs: `Y_off[t] = exp(Σ_{k≤t} dt_k·A)·S_{c−1}·C_t`.
 *
 * Work is O(L·Q·(N + P)·H), linear in L.
 */
export function chunkedSsdScan(inputs: SsdKernelInputs, attrs: SsdKernelAttrs): tf.Tensor {
  return tf.tidy(() => {
    const { batch: Bt, length: L, heads: H, headDim: P, groups: G, stateSize: N } = ssdDims(inputs.x, inputs.B);
    const Hg = H / G;
    const Q = Math.min(attrs.chunkSize, L);
    const nc = Math.ceil(L / Q);
    const Lp = nc * Q;
    const dt = processDt(inputs, attrs); // [B, L, H]
    const xdt = padTime(tf.mul(inputs.x, tf.expandDims(dt, 3)), Lp); // [B, Lp, H, P]
    const a = padTime(tf.mul(dt, inputs.A), Lp); // [B, Lp, H]: the log-decay of each step
    const byChunk = (t: tf.Tensor): tf.Tensor => tf.transpose(tf.reshape(padTime(t, Lp), [Bt, nc, Q, G, N]), [0, 3, 1, 2, 4]); // [B, G, nc, Q, N]
    const Bc = tf.reshape(byChunk(inputs.B), [Bt * G * nc, Q, N]); // [B·G·nc, Q, N]
    const Cc = tf.reshape(byChunk(inputs.C), [Bt * G * nc, Q, N]); // [B·G·nc, Q, N]

    // The cumulative sum over time as a product with a triangular matrix U (U[k, t] = 1 for k ≤ t), not
    // tf.cumsum: the webgpu backend's reverse cumsum (cumsum's gradient) caches one shader for every length
    // (tfjs 4.22), and cumsum's gradient along an inner axis is transposed wrongly.
    const M = Bt * H * nc;
    const upper = new Float32Array(Q * Q);
    const causal = new Float32Array(Q * Q);
    for (let i = 0; i < Q; i++) {
      for (let j = 0; j < Q; j++) {
        upper[i * Q + j] = i <= j ? 1 : 0; // [k, t]
        causal[i * Q + j] = i >= j ? 0 : -Infinity; // [t, s]
      }
    }
    const aC = tf.transpose(tf.reshape(a, [Bt, nc, Q, H]), [0, 3, 1, 2]); // [B, H, nc, Q]
    const aCumFlat = tf.matMul(tf.reshape(aC, [M, Q]), tf.tensor2d(upper, [Q, Q])); // [B·H·nc, Q]
    const aCum = tf.reshape(aCumFlat, [Bt, H, nc, Q]); // [B, H, nc, Q]
    const aLast = tf.reshape(tf.slice(aCumFlat, [0, Q - 1], [M, 1]), [Bt, H, nc, 1]); // [B, H, nc, 1]

    // 1. Intra-chunk: Λ[t, s] = exp(aCum[t] − aCum[s]) for s ≤ t (differences inside one chunk, as mamba_ssm's
    // kernels take them), 0 above the diagonal.
    const seg = tf.sub(tf.reshape(aCumFlat, [M, Q, 1]), tf.reshape(aCumFlat, [M, 1, Q])); // [B·H·nc, Q(t), Q(s)]
    const Lambda = tf.exp(tf.add(seg, tf.tensor2d(causal, [Q, Q]))); // [B·H·nc, Q, Q]
    const CB = tf.reshape(tf.matMul(Cc, Bc, false, true), [Bt, G, 1, nc, Q, Q]); // [B, G, 1, nc, Q, Q]
    const W = tf.mul(tf.reshape(Lambda, [Bt, G, Hg, nc, Q, Q]), CB); // [B, G, H/G, nc, Q, Q]
    const X = tf.transpose(tf.reshape(xdt, [Bt, nc, Q, G, Hg, P]), [0, 3, 4, 1, 2, 5]); // [B, G, H/G, nc, Q, P]
    const yDiag = tf.matMul(tf.reshape(W, [-1, Q, Q]), tf.reshape(X, [-1, Q, P])); // [B·G·H/G·nc, Q, P]

    // 2. The state each chunk produces from a zero start.
    const toEnd = tf.exp(tf.sub(aLast, aCum)); // [B, H, nc, Q]
    const Xd = tf.mul(X, tf.reshape(toEnd, [Bt, G, Hg, nc, Q, 1])); // [B, G, H/G, nc, Q, P]
    const Xs = tf.reshape(tf.transpose(Xd, [0, 1, 3, 4, 2, 5]), [Bt * G * nc, Q, Hg * P]); // [B·G·nc, Q, H/G·P]
    const own = tf.matMul(Xs, Bc, true, false); // [B·G·nc, H/G·P, N]
    const ownStates = tf.reshape(tf.transpose(tf.reshape(own, [Bt, G, nc, Hg, P, N]), [0, 2, 1, 3, 4, 5]), [Bt, nc, H * P * N]); // [B, nc, H·P·N]

    // 3. The recurrence over chunks.
    const chunkDecay = tf.exp(tf.reshape(aLast, [Bt, H, nc])); // [B, H, nc]
    let S: tf.Tensor = inputs.initialState.size > 0 ? inputs.initialState : tf.zeros([Bt, H, P, N]); // [B, H, P, N]
    const before: tf.Tensor[] = [];
    for (let c = 0; c < nc; c++) {
      before.push(S);
      const d = tf.reshape(tf.slice(chunkDecay, [0, 0, c], [Bt, H, 1]), [Bt, H, 1, 1]); // [B, H, 1, 1]
      S = tf.add(tf.mul(d, S), tf.reshape(tf.slice(ownStates, [0, c, 0], [Bt, 1, H * P * N]), [Bt, H, P, N])); // [B, H, P, N]
    }

    // 4. The state before each chunk, read by its outputs.
    const prev = nc === 1 ? tf.expandDims(before[0], 1) : tf.stack(before, 1); // [B, nc, H, P, N]
    const prevG = tf.reshape(tf.transpose(tf.reshape(prev, [Bt, nc, G, Hg, P, N]), [0, 2, 1, 3, 4, 5]), [Bt * G * nc, Hg * P, N]); // [B·G·nc, H/G·P, N]
    const CS = tf.matMul(Cc, prevG, false, true); // [B·G·nc, Q, H/G·P]
    const fromStart = tf.reshape(tf.exp(aCum), [Bt, G, Hg, nc, Q, 1]); // [B, G, H/G, nc, Q, 1]
    const yOff = tf.mul(tf.transpose(tf.reshape(CS, [Bt, G, nc, Q, Hg, P]), [0, 1, 4, 2, 3, 5]), fromStart); // [B, G, H/G, nc, Q, P]

    const yChunks = tf.add(tf.reshape(yDiag, [Bt, G, Hg, nc, Q, P]), yOff); // [B, G, H/G, nc, Q, P]
    let y = tf.reshape(tf.transpose(yChunks, [0, 3, 4, 1, 2, 5]), [Bt, Lp, H * P]); // [B, Lp, H·P]
    if (Lp !== L) y = tf.slice(y, [0, 0, 0], [Bt, L, H * P]); // [B, L, H·P]
    y = tf.reshape(y, [Bt, L, H, P]); // [B, L, H, P]
    return finish(y, S, inputs, attrs);
  });
}
