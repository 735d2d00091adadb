/**
 * The WGSL selective-scan kernel of the `webgpu` backend, through the backend's program API
 * (`runWebGPUProgram`). One workgroup lane per (batch, channel, state index), so the state `h[b, d, n]` lives in a
 * register; lanes of one channel meet in workgroup memory once per time step to sum `C_t · h_t`. Time is the
 * sequential loop.
 *
 * Not registered yet: on SwiftShader its outputs still differ from the naive scan, so `webgpu` runs the naive scan
 * (with a one-time warning) until this is fixed.
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
}

// WGSL names of the inputs (the program declares one storage buffer per name).
const WGSL_NAMES: Record<(typeof SCAN_INPUT_NAMES)[number], string> = {
  u: 'U',
  delta: 'Delta',
  A: 'Amat',
  B: 'Bmat',
  C: 'Cmat',
  D: 'Dvec',
  z: 'Z',
  deltaBias: 'Bias',
  initialState: 'H0',
};

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
    this.variableNames = present.map((name) => WGSL_NAMES[name as keyof typeof WGSL_NAMES]);
    this.outputShape = outputShape;
    this.n = N;
    // Channels per workgroup: N lanes each, about 64 lanes in all.
    this.perGroup = Math.max(1, Math.floor(64 / N));
    this.workgroupSize = [N * this.perGroup, 1, 1];
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    this.dispatch = [Math.ceil(rows / this.perGroup), 1, 1];
    this.has = Object.fromEntries(SCAN_INPUT_NAMES.map((name) => [name, present.includes(name)]));
    this.softplus = softplus;
    this.pack = pack;
    this.groups = groups;
    const flags = SCAN_INPUT_NAMES.map((name) => (this.has[name] ? '1' : '0')).join('');
    this.shaderKey = `slmkit_selective_scan_${N}_${groups}_${flags}_${softplus ? 1 : 0}_${pack ? 1 : 0}`;
  }

  getUserCode(): string {
    const N = this.n;
    const has = this.has;
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
        var h = ${has.initialState ? `H0[c * ${N} + n]` : '0.0'};
        let bias = ${has.deltaBias ? 'Bias[d]' : '0.0'};
        let dskip = ${has.D ? 'Dvec[d]' : '0.0'};
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
  const a = attrs as unknown as ScanKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const dims = scanDims(named, a);
  const present = SCAN_INPUT_NAMES.filter((name) => named[name].shape.reduce((x, y) => x * y, 1) > 0);
  const outputShape = [dims.batch, dims.channels, dims.length + (a.returnLastState ? dims.stateSize : 0)];
  const program = new ScanProgram(present, outputShape, dims.batch * dims.channels, dims.stateSize, dims.groups, a.deltaSoftplus, a.returnLastState);
  return (backend as unknown as WebGPUBackendLike).runWebGPUProgram(program, present.map((name) => named[name]), 'float32');
}

/** Registers the WGSL kernel on `webgpu` (state sizes up to 256, a workgroup's lane limit). Idempotent. */
export function registerWebGPUKernel(): void {
  registerFusedKernel({ kernelName: SCAN_KERNEL, backendName: 'webgpu', kernelFunc: webgpuKernel as tf.KernelFunc });
}
