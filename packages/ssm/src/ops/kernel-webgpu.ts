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
 * Its gradient is the shared one (see `kernels-cpu.ts`): on `webgpu` that recomputes through the naive scan, as
 * there is no WGSL backward kernel yet.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { registerFusedKernel } from '@slmkit/core';
import { SCAN_KERNEL, scanDims } from './kernels-cpu.js';
import { SCAN_INPUT_NAMES, type ScanKernelAttrs } from './naive.js';

// What the kernel needs of the webgpu backend.
interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: tf.TensorInfo[], outputDtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): boolean;
}

// The inputs packed into one buffer (`Par`), in this order: `D` [D], `deltaBias` [D], `initialState` [B, D, N].
const PACKED = ['D', 'deltaBias', 'initialState'] as const;
const PACK_NAMES = ['P0', 'P1', 'P2'];

/** Copies two or three tensors, end to end, into one flat buffer (each input is bound as 1-D, of its size). */
class PackProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [64, 1, 1];
  readonly size = true;

  constructor(count: number, total: number) {
    this.variableNames = PACK_NAMES.slice(0, count);
    this.outputShape = [total];
    this.dispatch = [Math.ceil(total / 64), 1, 1];
    this.shaderKey = `slmkit_selective_scan_pack_${count}`;
  }

  getUserCode(): string {
    const count = this.variableNames.length;
    const s1 = 'uniforms.p0Shape';
    const s2 = 'uniforms.p0Shape + uniforms.p1Shape';
    const body =
      count === 2
        ? `if (index < ${s1}) { v = P0[index]; } else { v = P1[index - ${s1}]; }`
        : `if (index < ${s1}) { v = P0[index]; } else if (index < ${s2}) { v = P1[index - ${s1}]; } else { v = P2[index - (${s2})]; }`;
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var v = 0.0;
          ${body}
          setOutputAtIndex(index, v);
        }
      }
    `;
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

function webgpuKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const gpu = backend as unknown as WebGPUBackendLike;
  const a = attrs as unknown as ScanKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = scanDims(named, a);
  const sizeOf = (t: tf.TensorInfo): number => t.shape.reduce((x, y) => x * y, 1);
  const present = SCAN_INPUT_NAMES.filter((name) => sizeOf(named[name]) > 0);
  const outputShape = [dims.batch, dims.channels, dims.length + (a.returnLastState ? dims.stateSize : 0)];
  const program = new ScanProgram(present, outputShape, dims.batch * dims.channels, dims.stateSize, dims.groups, a.deltaSoftplus, a.returnLastState);
  const bound: tf.TensorInfo[] = (['u', 'delta', 'A', 'B', 'C'] as const).map((name) => named[name]);
  // Pack D / deltaBias / initialState (those present) into one buffer; one alone is bound as it is.
  const toPack = PACKED.filter((name) => present.includes(name)).map((name) => named[name]);
  let packed: tf.TensorInfo | undefined;
  if (toPack.length === 1) {
    bound.push(toPack[0]);
  } else if (toPack.length > 1) {
    const flat = toPack.map((t) => ({ ...t, shape: [sizeOf(t)] }));
    const total = flat.reduce((x, t) => x + t.shape[0], 0);
    packed = gpu.runWebGPUProgram(new PackProgram(flat.length, total), flat, 'float32');
    bound.push(packed);
  }
  if (present.includes('z')) bound.push(named.z);
  const out = gpu.runWebGPUProgram(program, bound, 'float32');
  if (packed != null) gpu.disposeData(packed.dataId);
  return out;
}

/** Registers the WGSL kernel on `webgpu` (state sizes up to 256, a workgroup's lane limit). Idempotent. */
export function registerWebGPUKernel(): void {
  registerFusedKernel({ kernelName: SCAN_KERNEL, backendName: 'webgpu', kernelFunc: webgpuKernel as tf.KernelFunc });
}
