/**
 * The fused attention kernel of the `webgpu` backend: flash-style WGSL through the backend's program API
 * (`runWebGPUProgram`). The `G = H / KV` query heads that share a key/value head are one block of `G·T` query rows
 * (q `[B, H, T, Dh]` read as `[B, KV, G·T, Dh]`, the same memory, as the naive kernel views it), so a key tile is
 * loaded once for the whole group. One workgroup of 64 lanes per (batch, key/value head, tile of `BQ` of those
 * rows); the keys and values of one key tile at a time sit in workgroup memory, and each query row keeps a running
 * max, normaliser and output accumulator across the tiles (the online softmax), so no `[T, S]` score tensor ever
 * exists: workgroup memory holds a `[BQ, BK]` tile of scores, that is all.
 *
 * Per key tile, five steps separated by barriers:
 *
 * 0. each lane marks which of its (query, key) pairs the position rules and the padding mask show; a tile that
 *    shows none to any row of the tile is skipped whole (causal prefill skips about half the tiles, a sliding
 *    window all but a band);
 * 1. the lanes copy the tile's keys `[BK, Dh]` and values `[BK, Dv]` (of the group's key/value head, read in place:
 *    no repeated K/V) into workgroup memory;
 * 2. each lane scores its query row (held in private memory) against its share of the tile's keys: `scale · q·k`
 *    and the soft cap (a hidden key gets a sentinel, its dot product is skipped);
 * 3. one lane per query row takes the tile's max, rescales its normaliser, and turns the row's scores into
 *    `exp(s − m)` (0 for hidden keys);
 * 4. each lane rescales and adds into its share of the `[BQ, Dv]` accumulator.
 *
 * Bound storage buffers: the output, q, k, v, the positions (queries then keys, int32) and the padding mask when
 * there is one: six at most, under WebGPU's default limit of eight.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendError } from '@slmkit/core';
import type { FusedAttrs } from './fused.js';

// What the kernel needs of the webgpu backend.
interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: tf.TensorInfo[], outputDtype: tf.DataType, uniforms?: { type: string; data: number[] }[]): tf.TensorInfo;
  disposeData(dataId: object): boolean;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Int32Array | Float32Array): tf.TensorInfo;
}

/** Lanes per workgroup. */
const LANES = 64;
/** Query rows per tile, at most: a power of two dividing {@link LANES}. */
const MAX_QUERY_TILE = 16;
/** Keys per tile, at most. */
const MAX_KEY_TILE = 64;
/** Workgroup memory the tiles may take, in floats: WebGPU's default `maxComputeWorkgroupStorageSize`, 16 KiB. */
const SHARED_FLOATS = 16384 / 4;

/**
 * The tile sizes for `rows = G·T` query rows per key/value head and head dims `Dh`, `Dv`: `BQ` rows (the next power
 * of two ≥ rows, at most 16, so a decode step does not idle most of a tile) and as many keys `BK` (at most 64) as let
 * keys, values, scores and three per-row numbers fit in 16 KiB of workgroup memory.
 */
export function flashTiles(rows: number, Dh: number, Dv: number): { BQ: number; BK: number } {
  let BQ = 1;
  while (BQ < Math.min(rows, MAX_QUERY_TILE)) BQ *= 2;
  const BK = Math.min(MAX_KEY_TILE, Math.floor((SHARED_FLOATS - 3 * BQ) / (Dh + Dv + BQ)));
  if (BK < 1) {
    throw new BackendError(`fusedAttention on webgpu: head dims Dh ${Dh} + Dv ${Dv} leave no room for a key tile in 16 KiB of workgroup memory`, {
      field: 'q',
      expected: `Dh + Dv ≤ ${SHARED_FLOATS - 3 * BQ - BQ}`,
      found: Dh + Dv,
    });
  }
  return { BQ, BK };
}

/** The program object `runWebGPUProgram` takes (tfjs-backend-webgpu's `WebGPUProgram` interface). */
class FlashAttentionProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [LANES, 1, 1];
  readonly uniforms = 'seqQ : i32, seqK : i32, groupRows : i32, queryTiles : i32, groups : i32, ' +
    'kvHeads : i32, scale : f32, softcap : f32, causal : i32, window : i32, prefix : i32,';

  constructor(
    outputShape: number[],
    groups: number,
    private readonly Dh: number,
    private readonly Dv: number,
    private readonly BQ: number,
    private readonly BK: number,
    private readonly hasMask: boolean,
  ) {
    this.variableNames = ['Q', 'K', 'V', 'Pos'];
    if (hasMask) this.variableNames.push('KeyMask');
    this.outputShape = outputShape;
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    this.dispatch = [groups, 1, 1];
    this.shaderKey = `slmkit_flash_attention_${Dh}_${Dv}_${BQ}_${BK}_${hasMask ? 1 : 0}`;
  }

  getUserCode(): string {
    const { Dh, Dv, BQ, BK } = this;
    const cols = LANES / BQ; // lanes per query row
    const accPerLane = Math.ceil(Dv / cols);
    // A hidden key's score: finite, below any real score, so `exp(MASKED − m)` underflows to 0 without NaN.
    const MASKED = '-3.0e38';
    return `
      var<workgroup> Ksh : array<f32, ${BK * Dh}>;
      var<workgroup> Vsh : array<f32, ${BK * Dv}>;
      var<workgroup> Psh : array<f32, ${BQ * BK}>;
      var<workgroup> rowM : array<f32, ${BQ}>;
      var<workgroup> rowL : array<f32, ${BQ}>;
      var<workgroup> rowAlpha : array<f32, ${BQ}>;
      var<workgroup> anyVisible : atomic<u32>;
      var<workgroup> tileVisible : u32;

      // tanh as tfjs's webgpu Tanh computes it (finite for large |x|), so the cap matches the naive kernel's.
      fn stableTanh(x : f32) -> f32 {
        let e2x = exp(-2.0 * abs(x));
        return sign(x) * (1.0 - e2x) / (1.0 + e2x);
      }

      fn main(index : i32) {
        let lane = i32(localIndex);
        let T = uniforms.seqQ;
        let S = uniforms.seqK;
        // The workgroup's place; the backend may fold a long dispatch into two dimensions.
        let group = i32(workgroupId.z * numWorkgroups.x * numWorkgroups.y + workgroupId.y * numWorkgroups.x + workgroupId.x);
        let live = group < uniforms.groups;
        let gi = min(group, uniforms.groups - 1);
        let R = uniforms.groupRows; // G · T
        let qt = gi % uniforms.queryTiles;
        let bkv = gi / uniforms.queryTiles; // b · KV + key/value head
        let b = bkv / uniforms.kvHeads;
        let kvRow = bkv * S; // key 0 of this key/value head
        let r = lane % ${BQ}; // this lane's query row in the tile
        let col = lane / ${BQ}; // its first key (scores) and value column (accumulator)
        let rho = qt * ${BQ} + r; // row g · T + t of the group
        let rowLive = live && rho < R;
        let rc = min(rho, R - 1);
        let qOff = (bkv * R + rc) * ${Dh}; // q [B, KV, G·T, Dh]
        var qrow : array<f32, ${Dh}>;
        for (var i = 0; i < ${Dh}; i++) {
          qrow[i] = Q[qOff + i];
        }
        let qp = Pos[rc % T];
        var acc : array<f32, ${accPerLane}>;
        if (lane < ${BQ}) {
          rowM[lane] = ${MASKED};
          rowL[lane] = 0.0;
        }
        workgroupBarrier();

        let keyTiles = (S + ${BK - 1}) / ${BK};
        for (var kt = 0; kt < keyTiles; kt++) {
          let s0 = kt * ${BK};
          // 0. Which of this lane's (row, key) pairs the rules and the padding show: 1 or 0 in the score tile. A
          //    tile that shows no pair to any row is skipped whole (not loaded, not scored): causal prefill skips
          //    about half the tiles, a window all but a band.
          if (lane == 0) {
            atomicStore(&anyVisible, 0u);
          }
          workgroupBarrier();
          var mine = 0u;
          for (var j = col; j < ${BK}; j += ${cols}) {
            let s = s0 + j;
            var visible = rowLive && s < S;
            if (visible) {
              let kp = Pos[T + min(s, S - 1)];
              let d = qp - kp;
              visible = !(uniforms.causal != 0 && d < 0) && !(uniforms.window >= 0 && d >= uniforms.window && kp >= uniforms.prefix);
              ${this.hasMask ? 'visible = visible && KeyMask[b * S + min(s, S - 1)] != 0.0;' : ''}
            }
            Psh[r * ${BK} + j] = select(0.0, 1.0, visible);
            mine = mine | select(0u, 1u, visible);
          }
          if (mine != 0u) {
            atomicOr(&anyVisible, 1u);
          }
          workgroupBarrier();
          if (lane == 0) {
            tileVisible = atomicLoad(&anyVisible);
          }
          // The same value in every lane, as WGSL requires of a branch around barriers.
          if (workgroupUniformLoad(&tileVisible) != 0u) {
            // 1. The tile's keys and values into workgroup memory (zeros past the last key).
            for (var e = lane; e < ${BK * Dh}; e += ${LANES}) {
              let s = s0 + e / ${Dh};
              Ksh[e] = select(0.0, K[(kvRow + min(s, S - 1)) * ${Dh} + e % ${Dh}], s < S);
            }
            for (var e = lane; e < ${BK * Dv}; e += ${LANES}) {
              let s = s0 + e / ${Dv};
              Vsh[e] = select(0.0, V[(kvRow + min(s, S - 1)) * ${Dv} + e % ${Dv}], s < S);
            }
            workgroupBarrier();

            // 2. Scores of this lane's row against its visible keys j = col, col + ${cols}, …; hidden keys get the
            //    sentinel and no dot product.
            for (var j = col; j < ${BK}; j += ${cols}) {
              var sc = ${MASKED};
              if (Psh[r * ${BK} + j] != 0.0) {
                var dot = 0.0;
                for (var i = 0; i < ${Dh}; i++) {
                  dot = dot + qrow[i] * Ksh[j * ${Dh} + i];
                }
                sc = dot * uniforms.scale;
                if (uniforms.softcap > 0.0) {
                  sc = uniforms.softcap * stableTanh(sc / uniforms.softcap);
                }
              }
              Psh[r * ${BK} + j] = sc;
            }
            workgroupBarrier();

            // 3. One lane per row: the running max, the rescale factor, the weights exp(s − m) and the normaliser.
            if (lane < ${BQ}) {
              let row = lane * ${BK};
              var tileMax = ${MASKED};
              for (var j = 0; j < ${BK}; j++) {
                tileMax = max(tileMax, Psh[row + j]);
              }
              if (tileMax > -1.0e38) {
                let mOld = rowM[lane];
                let m = max(mOld, tileMax);
                let alpha = exp(mOld - m); // 0 on the row's first visible tile
                var sum = 0.0;
                for (var j = 0; j < ${BK}; j++) {
                  let sj = Psh[row + j];
                  let p = select(0.0, exp(sj - m), sj > -1.0e38);
                  Psh[row + j] = p;
                  sum = sum + p;
                }
                rowM[lane] = m;
                rowL[lane] = rowL[lane] * alpha + sum;
                rowAlpha[lane] = alpha;
              } else {
                for (var j = 0; j < ${BK}; j++) {
                  Psh[row + j] = 0.0;
                }
                rowAlpha[lane] = 1.0;
              }
            }
            workgroupBarrier();

            // 4. This lane's accumulator columns i = col, col + ${cols}, …: rescale, add the tile's weighted values.
            let alpha = rowAlpha[r];
            for (var c = 0; c < ${accPerLane}; c++) {
              let i = col + c * ${cols};
              if (i < ${Dv}) {
                var sum = acc[c] * alpha;
                for (var j = 0; j < ${BK}; j++) {
                  sum = sum + Psh[r * ${BK} + j] * Vsh[j * ${Dv} + i];
                }
                acc[c] = sum;
              }
            }
          }
          workgroupBarrier();
        }

        // A row that sees no key (l = 0) gets zeros, as the naive kernel gives.
        let l = rowL[r];
        let inv = select(0.0, 1.0 / l, l > 0.0);
        if (rowLive) {
          let oOff = (bkv * R + rho) * ${Dv}; // out [B, KV, G·T, Dv]
          for (var c = 0; c < ${accPerLane}; c++) {
            let i = col + c * ${cols};
            if (i < ${Dv}) {
              result[oOff + i] = acc[c] * inv;
            }
          }
        }
      }
    `;
  }
}

/**
 * The forward kernel on `webgpu` (`SlmkitFusedAttention`): q `[B, H, T, Dh]`, k `[B, KV, S, Dh]`, v `[B, KV, S, Dv]`
 * and the padding mask `[B, S]` (or `[0]`) to `[B, H, T, Dv]`. The absolute positions (plain numbers in the attrs)
 * go up as one small int32 buffer per call; everything else is a uniform.
 */
export function webgpuFusedAttentionKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const gpu = backend as unknown as WebGPUBackendLike;
  const a = attrs as unknown as FusedAttrs;
  const { q, k, v, keyMask } = inputs as unknown as Record<string, tf.TensorInfo>;
  const [B, H, T, Dh] = q.shape;
  const [, KV, S] = k.shape;
  if (a.keyPositions.length !== S) {
    throw new BackendError(`fused attention on webgpu: ${a.keyPositions.length} key positions for keys of length ${S} (cache buffers are cpu / wasm only)`, {
      field: 'keyPositions',
      expected: S,
      found: a.keyPositions.length,
    });
  }
  const Dv = v.shape[3];
  const hasMask = keyMask.shape.length === 2;
  const rows = (H / KV) * T; // G · T query rows per key/value head
  const { BQ, BK } = flashTiles(rows, Dh, Dv);
  const queryTiles = Math.ceil(rows / BQ);
  const groups = B * KV * queryTiles;
  const program = new FlashAttentionProgram([B, H, T, Dv], groups, Dh, Dv, BQ, BK, hasMask);
  const positions = gpu.makeTensorInfo([T + S], 'int32', Int32Array.from([...a.queryPositions, ...a.keyPositions])); // [T + S]
  const bound = [q, k, v, positions];
  if (hasMask) bound.push(keyMask);
  const int = (x: number) => ({ type: 'int32', data: [x] });
  const float = (x: number) => ({ type: 'float32', data: [x] });
  const uniforms = [
    int(T), int(S), int(rows), int(queryTiles), int(groups), int(KV),
    float(a.scale), float(a.softcap), int(a.causal ? 1 : 0), int(a.slidingWindow), int(a.prefixLength),
  ];
  const out = gpu.runWebGPUProgram(program, bound, 'float32', uniforms); // [B, H, T, Dv]
  gpu.disposeData(positions.dataId);
  return out;
}
