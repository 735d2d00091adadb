/**
 * The WGSL selective-scan kernel of the `webgpu` backend, through the backend's program API
 * (`runWebGPUProgram`). One workgroup lane per (batch, channel, state index), so the state `h[b, d, n]` lives in a
 * register; lanes of one channel meet in workgroup memory once per time step to sum `C_t · h_t`. Time is the
 * sequential loop.
 *
 * A shader stage may bind only `maxStorageBuffersPerShaderStage` storage buffers (8 by default, and tfjs asks for
 * no more): the output and nine inputs would be ten, and Dawn then rejects the pipeline and the output is left as
 * garbage. So the small per-channel inputs `D`, `deltaBias` and `initialState` are first packed into one buffer by
 * a copy program, and the scan binds at most eight: the output, `u`, `delta`, `A`, `B`, `C`, the packed buffer and
 * `z`.
 *
 * The backward kernel (`SlmkitSelectiveScanGrad`, which the shared gradient of `kernels-cpu.ts` runs) has the same
 * lanes: each recomputes its states forward into its stretch of the output, walks back through time and writes its
 * terms of every gradient; lanes of one channel meet in workgroup memory to sum `du` and `ddelta` over the state,
 * and the sums over channels and batch rows are the backend's `Sum` kernel. It binds `A` in the packed buffer and
 * `dy` in its place. Memory beyond the inputs and gradients: `B·D·N·(2L + 2) + B·D·(3L + 1)` floats, O(B·D·N·L).
 *
 * Both kernels take state sizes N ≤ 256 (one workgroup holds a channel's N lanes) and throw a `BackendError` above.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { BackendError, registerFusedKernel } from '@slmkit/core';
import { SCAN_GRAD_KERNEL, SCAN_KERNEL, scanDims } from './kernels-cpu.js';
import { SCAN_INPUT_NAMES, type ScanKernelAttrs } from './naive.js';

// What the kernel needs of the webgpu backend.
interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: tf.TensorInfo[], outputDtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): boolean;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
}

// The forward's inputs packed into one buffer (`Par`), in this order: `D` [D], `deltaBias` [D], `initialState`
// [B, D, N]. The backward packs `A` [D, N] in front of them (it binds `dy` too).
const PACKED = ['D', 'deltaBias', 'initialState'] as const;
const GRAD_PACKED = ['A', ...PACKED] as const;

/** The largest state size: the lanes of one channel share a workgroup, at most 256 lanes. */
const MAX_STATE = 256;

/** Copies two to four tensors, end to end, into one flat buffer (each input is bound as 1-D, of its size). */
class PackProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [64, 1, 1];
  readonly size = true;

  constructor(count: number, total: number) {
    this.variableNames = Array.from({ length: count }, (_, i) => `P${i}`);
    this.outputShape = [total];
    this.dispatch = [Math.ceil(total / 64), 1, 1];
    this.shaderKey = `slmkit_selective_scan_pack_${count}`;
  }

  getUserCode(): string {
    // Input i starts where inputs 0 … i − 1 end.
    const starts = this.variableNames.map((_, i) => (i === 0 ? '0' : Array.from({ length: i }, (_, k) => `uniforms.p${k}Shape`).join(' + ')));
    const branches = this.variableNames.map((name, i) => {
      const read = `v = ${name}[index - (${starts[i]})];`;
      if (i === this.variableNames.length - 1) return `{ ${read} }`;
      return `if (index < ${starts[i + 1]}) { ${read} }`;
    });
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var v = 0.0;
          ${branches.join(' else ')}
          setOutputAtIndex(index, v);
        }
      }
    `;
  }
}

const sizeOf = (t: tf.TensorInfo): number => t.shape.reduce((x, y) => x * y, 1);

/**
 * The named inputs present (non-empty) packed into one buffer, or the one present as it is; `temp` is the packed
 * buffer, to dispose after the scan.
 */
function packed(gpu: WebGPUBackendLike, tensors: tf.TensorInfo[]): { bound?: tf.TensorInfo; temp?: tf.TensorInfo } {
  if (tensors.length === 0) return {};
  if (tensors.length === 1) return { bound: tensors[0] };
  const flat = tensors.map((t) => ({ ...t, shape: [sizeOf(t)] }));
  const total = flat.reduce((x, t) => x + t.shape[0], 0);
  const temp = gpu.runWebGPUProgram(new PackProgram(flat.length, total), flat, 'float32');
  return { bound: temp, temp };
}

function checkStateSize(N: number): void {
  if (N > MAX_STATE) {
    throw new BackendError(`selectiveScan on webgpu: the state size N must be at most ${MAX_STATE} (one workgroup per channel), found ${N}`, {
      field: 'A',
      expected: `[D, N] with N ≤ ${MAX_STATE} on webgpu`,
      found: N,
    });
  }
}

/** The program object `runWebGPUProgram` takes (tfjs-backend-webgpu's `WebGPUProgram` interface). */
class ScanProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number];
  private readonly n: number;
  private readonly perGroup: number;
  private readonly has: Record<string, boolean>;
  private readonly softplus: boolean;
  private readonly pack: boolean;
  private readonly groups: number;

  constructor(present: string[], outputShape: number[], rows: number, N: number, groups: number, softplus: boolean, pack: boolean) {
    this.has = Object.fromEntries(SCAN_INPUT_NAMES.map((name) => [name, present.includes(name)]));
    // At most eight storage buffers: the output, five inputs, the packed D / deltaBias / initialState, z.
    this.variableNames = ['U', 'Delta', 'Amat', 'Bmat', 'Cmat'];
    if (PACKED.some((name) => this.has[name])) this.variableNames.push('Par');
    if (this.has.z) this.variableNames.push('Z');
    this.outputShape = outputShape;
    this.n = N;
    // Channels per workgroup: N lanes each, about 64 lanes in all.
    this.perGroup = Math.max(1, Math.floor(64 / N));
    this.workgroupSize = [N * this.perGroup, 1, 1];
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    this.dispatch = [Math.ceil(rows / this.perGroup), 1, 1];
    this.softplus = softplus;
    this.pack = pack;
    this.groups = groups;
    const flags = SCAN_INPUT_NAMES.map((name) => (this.has[name] ? '1' : '0')).join('');
    this.shaderKey = `slmkit_selective_scan_${N}_${groups}_${flags}_${softplus ? 1 : 0}_${pack ? 1 : 0}`;
  }

  getUserCode(): string {
    const N = this.n;
    const has = this.has;
    // Offsets in the packed buffer: D, then deltaBias, then initialState.
    const offBias = has.D ? 'D' : '0';
    const offH0 = `${offBias}${has.deltaBias ? ' + D' : ''}`;
    return `
      var<workgroup> partial : array<f32, ${N * this.perGroup}>;

      fn main(index : i32) {
        let lane = i32(localId.x);
        let n = lane % ${N};
        let slot = lane / ${N};
        let Bt = uniforms.uShape.x;
        let D = uniforms.uShape.y;
        let L = uniforms.uShape.z;
        let ch = i32(workgroupId.x) * ${this.perGroup} + slot; // b · D + d
        let live = ch < Bt * D;
        let c = select(0, ch, live);
        let b = c / D;
        let d = c % D;
        let g = d / (D / ${this.groups});
        let row = c * L;
        let bc = ((b * ${this.groups} + g) * ${N} + n) * L;
        let a = Amat[d * ${N} + n];
        var h = ${has.initialState ? `Par[${offH0} + c * ${N} + n]` : '0.0'};
        let bias = ${has.deltaBias ? `Par[${offBias} + d]` : '0.0'};
        let dskip = ${has.D ? 'Par[d]' : '0.0'};
        let stride = L${this.pack ? ` + ${N}` : ''};
        for (var t = 0; t < L; t++) {
          var dt = Delta[row + t] + bias;
          ${this.softplus ? 'dt = select(log(1.0 + exp(dt)), dt, dt > 20.0);' : ''}
          let ut = U[row + t];
          h = exp(dt * a) * h + dt * ut * Bmat[bc + t];
          partial[lane] = h * Cmat[bc + t];
          workgroupBarrier();
          if (n == 0 && live) {
            var acc = 0.0;
            for (var k = 0; k < ${N}; k++) {
              acc = acc + partial[slot * ${N} + k];
            }
            var y = acc + dskip * ut;
            ${has.z ? 'let zt = Z[row + t]; y = y * zt / (1.0 + exp(-zt));' : ''}
            result[c * stride + t] = y;
          }
          workgroupBarrier();
        }
        ${this.pack ? 'if (live) { result[c * stride + L + n] = h; }' : ''}
      }
    `;
  }
}

/**
 * The backward program. One lane per (batch, channel, state index), as in the forward, in workgroups of whole
 * channels. Each lane
 *
 * 1. recomputes its states `h_0 … h_{L−1}` forward and stores them in its own stretch of the output (the stretch
 *    that later holds its `dC` terms); with `z`, the channel's lanes meet once per step to sum `y_t = C_t · h_t +
 *    D·u_t` for `dz`;
 * 2. walks back through time with `g = dL/dh_t`, writing its terms of `dB` and `dC` for each step, accumulating its
 *    term of `dA`, and ending with `dL/dh_{−1}` (the `initialState` gradient); the channel's lanes meet once per
 *    step to sum their terms of `du_t` and `ddelta_t`.
 *
 * The output is one flat buffer: per lane `[dB (L), dC (L), dA, dh0]`, `[B·D·N, 2L + 2]`, then per channel
 * `[du (L), ddelta (L), dz (L), dD]`, `[B·D, 3L + 1]`. The sums over channels and batch rows (`dA`, `dB`, `dC`,
 * `dD`, `deltaBias`) are the backend's `Sum` kernel on slices of it (see {@link webgpuGradKernel}).
 */
class ScanGradProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number];
  private readonly n: number;
  private readonly perGroup: number;
  private readonly has: Record<string, boolean>;
  private readonly softplus: boolean;
  private readonly packDy: boolean;
  private readonly groups: number;

  constructor(present: string[], total: number, rows: number, N: number, groups: number, softplus: boolean, packDy: boolean) {
    this.has = Object.fromEntries(SCAN_INPUT_NAMES.map((name) => [name, present.includes(name)]));
    // At most eight storage buffers: the output, U, Delta, B, C, the packed A / D / deltaBias / initialState, Z, dy.
    this.variableNames = ['U', 'Delta', 'Bmat', 'Cmat', 'Par'];
    if (this.has.z) this.variableNames.push('Z');
    this.variableNames.push('Dy');
    this.outputShape = [total];
    this.n = N;
    this.perGroup = Math.max(1, Math.floor(64 / N));
    this.workgroupSize = [N * this.perGroup, 1, 1];
    this.dispatch = [Math.ceil(rows / this.perGroup), 1, 1];
    this.softplus = softplus;
    this.packDy = packDy;
    this.groups = groups;
    const flags = SCAN_INPUT_NAMES.map((name) => (this.has[name] ? '1' : '0')).join('');
    this.shaderKey = `slmkit_selective_scan_grad_${N}_${groups}_${flags}_${softplus ? 1 : 0}_${packDy ? 1 : 0}`;
  }

  getUserCode(): string {
    const N = this.n;
    const NP = N * this.perGroup;
    const has = this.has;
    // Offsets in the packed buffer: A, then D, deltaBias and initialState where present.
    const offD = `D * ${N}`;
    const offBias = `${offD}${has.D ? ' + D' : ''}`;
    const offH0 = `${offBias}${has.deltaBias ? ' + D' : ''}`;
    const step = this.softplus ? 'select(log(1.0 + exp(raw)), raw, raw > 20.0)' : 'raw';
    return `
      var<workgroup> partU : array<f32, ${NP}>;
      var<workgroup> partT : array<f32, ${NP}>;

      fn main(index : i32) {
        let lane = i32(localId.x);
        let n = lane % ${N};
        let slot = lane / ${N};
        let Bt = uniforms.uShape.x;
        let D = uniforms.uShape.y;
        let L = uniforms.uShape.z;
        let ch = i32(workgroupId.x) * ${this.perGroup} + slot; // b · D + d
        let live = ch < Bt * D;
        let c = select(0, ch, live);
        let b = c / D;
        let d = c % D;
        let g = d / (D / ${this.groups});
        let row = c * L;
        let bc = ((b * ${this.groups} + g) * ${N} + n) * L;
        let a = Par[d * ${N} + n];
        let h0 = ${has.initialState ? `Par[${offH0} + c * ${N} + n]` : '0.0'};
        let bias = ${has.deltaBias ? `Par[${offBias} + d]` : '0.0'};
        let dskip = ${has.D ? `Par[${offD} + d]` : '0.0'};
        let dyRow = c * (L${this.packDy ? ` + ${N}` : ''});
        let W = 2 * L + 2;
        let laneOut = (c * ${N} + n) * W; // [dB (L), dC (L), dA, dh0]
        let chanOut = Bt * D * ${N} * W + c * (3 * L + 1); // [du (L), ddelta (L), dz (L), dD]

        // 1. The states, forward, into this lane's dC stretch.
        var h = h0;
        for (var t = 0; t < L; t++) {
          let raw = Delta[row + t] + bias;
          let dt = ${step};
          let ut = U[row + t];
          h = exp(dt * a) * h + dt * ut * Bmat[bc + t];
          if (live) { result[laneOut + L + t] = h; }
          ${
            has.z
              ? `partU[lane] = h * Cmat[bc + t];
          workgroupBarrier();
          if (n == 0 && live) {
            var acc = 0.0;
            for (var k = 0; k < ${N}; k++) { acc = acc + partU[slot * ${N} + k]; }
            let y = acc + dskip * ut;
            let zt = Z[row + t];
            let s = 1.0 / (1.0 + exp(-zt));
            result[chanOut + 2 * L + t] = Dy[dyRow + t] * y * s * (1.0 + zt * (1.0 - s));
          }
          workgroupBarrier();`
              : ''
          }
        }

        // 2. Back through time: gh = dL/dh_t, hcur = h_t.
        var gh = ${this.packDy ? `Dy[dyRow + L + n]` : '0.0'};
        var hcur = h;
        var gA = 0.0;
        var gD = 0.0;
        for (var t = L - 1; t >= 0; t--) {
          let raw = Delta[row + t] + bias;
          let dt = ${step};
          let ut = U[row + t];
          var gy = Dy[dyRow + t];
          ${has.z ? 'let zt = Z[row + t]; gy = gy * zt / (1.0 + exp(-zt));' : ''}
          var hprev = h0;
          if (live && t > 0) { hprev = result[laneOut + L + t - 1]; }
          let bt = Bmat[bc + t];
          let gr = gh + gy * Cmat[bc + t];
          let e = exp(dt * a);
          let gdA = gr * hprev * e;
          gA = gA + gdA * dt;
          if (live) {
            result[laneOut + t] = gr * dt * ut;
            result[laneOut + L + t] = gy * hcur;
          }
          partU[lane] = gr * dt * bt;
          partT[lane] = gdA * a + gr * bt * ut;
          gh = gr * e;
          hcur = hprev;
          gD = gD + gy * ut;
          workgroupBarrier();
          if (n == 0 && live) {
            var su = gy * dskip;
            var st = 0.0;
            for (var k = 0; k < ${N}; k++) {
              su = su + partU[slot * ${N} + k];
              st = st + partT[slot * ${N} + k];
            }
            result[chanOut + t] = su;
            ${this.softplus ? 'st = st * select(1.0 / (1.0 + exp(-raw)), 1.0, raw > 20.0);' : ''}
            result[chanOut + L + t] = st;
          }
          workgroupBarrier();
        }
        if (live) {
          result[laneOut + 2 * L] = gA;
          result[laneOut + 2 * L + 1] = gh;
          if (n == 0) { result[chanOut + 3 * L] = gD; }
        }
      }
    `;
  }
}

/**
 * The backward kernel on `webgpu` (`SlmkitSelectiveScanGrad`): the {@link ScanGradProgram}, then the sums over
 * channels of a group and over batch rows with the backend's own `Slice`, `Reshape` and `Sum` kernels. Memory
 * beyond the inputs: the program's output, `B·D·N·(2L + 2) + B·D·(3L + 1)` floats, O(B·D·N·L).
 */
function webgpuGradKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const gpu = backend as unknown as WebGPUBackendLike;
  const a = attrs as unknown as ScanKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const { batch: Bt, channels: Dc, length: L, stateSize: N, groups: G } = scanDims(named, a);
  checkStateSize(N);
  const present = SCAN_INPUT_NAMES.filter((name) => sizeOf(named[name]) > 0);
  const rows = Bt * Dc;
  const W = 2 * L + 2;
  const laneSize = rows * N * W;
  const program = new ScanGradProgram(present, laneSize + rows * (3 * L + 1), rows, N, G, a.deltaSoftplus, a.returnLastState);
  const bound: tf.TensorInfo[] = (['u', 'delta', 'B', 'C'] as const).map((name) => named[name]);
  const par = packed(gpu, GRAD_PACKED.filter((name) => present.includes(name)).map((name) => named[name]));
  bound.push(par.bound!);
  if (present.includes('z')) bound.push(named.z);
  bound.push(named.dy);
  const flat = gpu.runWebGPUProgram(program, bound, 'float32'); // [B·D·N·W + B·D·(3L + 1)]
  if (par.temp != null) gpu.disposeData(par.temp.dataId);

  // The backend's kernels on TensorInfos; every intermediate is disposed at the end (outputs keep their data).
  const temps: tf.TensorInfo[] = [flat];
  const run = (kernel: string, x: tf.TensorInfo, kernelAttrs: object): tf.TensorInfo => {
    const out = tf.getKernel(kernel, 'webgpu')!.kernelFunc({ inputs: { x }, backend, attrs: kernelAttrs as tf.NamedAttrMap }) as tf.TensorInfo;
    temps.push(out);
    return out;
  };
  const slice = (x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo => run(tf.Slice, x, { begin, size });
  const reshape = (x: tf.TensorInfo, shape: number[]): tf.TensorInfo => run(tf.Reshape, x, { shape });
  const sum = (x: tf.TensorInfo, axis: number[]): tf.TensorInfo => run(tf.Sum, x, { axis, keepDims: false });

  const perLane = reshape(slice(flat, [0], [laneSize]), [Bt, G, Dc / G, N, W]); // [B, G, D/G, N, W]
  const perChannel = reshape(slice(flat, [laneSize], [rows * (3 * L + 1)]), [Bt, Dc, 3 * L + 1]); // [B, D, 3L + 1]
  const bcShape = named.B.shape;
  const grads: Record<string, () => tf.TensorInfo> = {
    u: () => slice(perChannel, [0, 0, 0], [Bt, Dc, L]), // [B, D, L]
    delta: () => slice(perChannel, [0, 0, L], [Bt, Dc, L]), // [B, D, L]
    z: () => slice(perChannel, [0, 0, 2 * L], [Bt, Dc, L]), // [B, D, L]
    D: () => sum(slice(perChannel, [0, 0, 3 * L], [Bt, Dc, 1]), [0, 2]), // [D]
    deltaBias: () => sum(slice(perChannel, [0, 0, L], [Bt, Dc, L]), [0, 2]), // [D]
    A: () => sum(reshape(slice(perLane, [0, 0, 0, 0, 2 * L], [Bt, G, Dc / G, N, 1]), [Bt, Dc, N]), [0]), // [D, N]
    B: () => reshape(sum(slice(perLane, [0, 0, 0, 0, 0], [Bt, G, Dc / G, N, L]), [2]), bcShape), // [B, (G,) N, L]
    C: () => reshape(sum(slice(perLane, [0, 0, 0, 0, L], [Bt, G, Dc / G, N, L]), [2]), bcShape), // [B, (G,) N, L]
    initialState: () => reshape(slice(perLane, [0, 0, 0, 0, 2 * L + 1], [Bt, G, Dc / G, N, 1]), [Bt, Dc, N]), // [B, D, N]
  };
  const outs = SCAN_INPUT_NAMES.map((name) => {
    // An absent input gets an empty gradient, as on cpu and wasm.
    if (!present.includes(name)) return gpu.makeTensorInfo(named[name].shape.slice(), 'float32', new Float32Array(0));
    const out = grads[name]();
    temps.splice(temps.indexOf(out), 1);
    return out;
  });
  for (const t of temps) gpu.disposeData(t.dataId);
  return outs;
}

function webgpuKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const gpu = backend as unknown as WebGPUBackendLike;
  const a = attrs as unknown as ScanKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = scanDims(named, a);
  checkStateSize(dims.stateSize);
  const present = SCAN_INPUT_NAMES.filter((name) => sizeOf(named[name]) > 0);
  const outputShape = [dims.batch, dims.channels, dims.length + (a.returnLastState ? dims.stateSize : 0)];
  const program = new ScanProgram(present, outputShape, dims.batch * dims.channels, dims.stateSize, dims.groups, a.deltaSoftplus, a.returnLastState);
  const bound: tf.TensorInfo[] = (['u', 'delta', 'A', 'B', 'C'] as const).map((name) => named[name]);
  // Pack D / deltaBias / initialState (those present) into one buffer; one alone is bound as it is.
  const par = packed(gpu, PACKED.filter((name) => present.includes(name)).map((name) => named[name]));
  if (par.bound != null) bound.push(par.bound);
  if (present.includes('z')) bound.push(named.z);
  const out = gpu.runWebGPUProgram(program, bound, 'float32');
  if (par.temp != null) gpu.disposeData(par.temp.dataId);
  return out;
}

/**
 * Registers the WGSL forward and backward kernels on `webgpu` (state sizes up to 256, a workgroup's lane limit;
 * larger ones throw a `BackendError`). Idempotent.
 */
export function registerWebGPUKernel(): void {
  registerFusedKernel({ kernelName: SCAN_KERNEL, backendName: 'webgpu', kernelFunc: webgpuKernel as tf.KernelFunc });
  registerFusedKernel({ kernelName: SCAN_GRAD_KERNEL, backendName: 'webgpu', kernelFunc: webgpuGradKernel as unknown as tf.KernelFunc });
}
