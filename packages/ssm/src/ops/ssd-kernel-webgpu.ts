/**
 * The WGSL Mamba-2 scan kernel of the `webgpu` backend, through the backend's program API (`runWebGPUProgram`).
 * One invocation per (batch, head, head-dim row p): it keeps that row of the state, `S[p, 0..N)`, in private
 * memory and walks time sequentially; the B·H·P rows run in parallel. With A a scalar per head, the decay
 * `exp(dt·A)` is one `exp` per step and row, not one per state element as in Mamba-1.
 *
 * A shader stage may bind only 8 storage buffers (tfjs asks for no more): the per-head vectors `A`, `D`, `dtBias`
 * and the initial state are first packed into one buffer by a copy program, so the scan binds at most seven: the
 * output, `x`, `dt`, `B`, `C`, the packed buffer and `z`.
 *
 * Its gradient is the shared one (see `ssd-kernels-cpu.ts`): on `webgpu` that recomputes through the chunked
 * tfjs-ops scan, as there is no WGSL backward kernel.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { registerFusedKernel } from '@slmkit/core';
import { SSD_KERNEL, ssdMathDims, ssdOutputShape } from './ssd-kernels-cpu.js';
import type { SsdKernelAttrs } from './ssd-naive.js';

// What the kernel needs of the webgpu backend.
interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: tf.TensorInfo[], outputDtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): boolean;
}

const WORKGROUP = 64;

/** Copies up to four tensors, end to end, into one flat buffer (each input bound as 1-D, of its size). */
class SsdPackProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  readonly size = true;

  constructor(count: number, total: number) {
    this.variableNames = Array.from({ length: count }, (_, i) => `Q${i}`);
    this.outputShape = [total];
    this.dispatch = [Math.ceil(total / WORKGROUP), 1, 1];
    this.shaderKey = `slmkit_ssd_pack_${count}`;
  }

  getUserCode(): string {
    let body = '';
    let offset = '0';
    this.variableNames.forEach((name, i) => {
      const end = `${offset} + uniforms.q${i}Shape`;
      body += `${i === 0 ? '' : ' else '}if (index < ${end}) { v = ${name}[index - (${offset})]; }`;
      offset = end;
    });
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

/** Formats a clamp bound as a WGSL f32 literal. */
const f32 = (v: number): string => `f32(${v.toExponential(9)})`;

/** The program object `runWebGPUProgram` takes (tfjs-backend-webgpu's `WebGPUProgram` interface). */
class SsdScanProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];

  constructor(
    outputShape: number[],
    rows: number,
    private readonly dims: { H: number; P: number; G: number; N: number },
    private readonly has: { D: boolean; z: boolean; dtBias: boolean; initialState: boolean },
    private readonly attrs: SsdKernelAttrs,
  ) {
    this.variableNames = ['X', 'Dt', 'Bm', 'Cm', 'Par'];
    if (has.z) this.variableNames.push('Z');
    this.outputShape = outputShape;
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    this.dispatch = [Math.ceil(rows / WORKGROUP), 1, 1];
    const flags = [has.D, has.z, has.dtBias, has.initialState, attrs.dtSoftplus, attrs.returnFinalState].map((f) => (f ? 1 : 0)).join('');
    this.shaderKey = `slmkit_ssd_scan_${dims.H}_${dims.P}_${dims.G}_${dims.N}_${flags}_${attrs.dtMin}_${attrs.dtMax}`;
  }

  getUserCode(): string {
    const { H, P, G, N } = this.dims;
    const has = this.has;
    const a = this.attrs;
    // Offsets in the packed buffer: A, then D, dtBias and the initial state, those present.
    const offD = H;
    const offBias = offD + (has.D ? H : 0);
    const offInit = offBias + (has.dtBias ? H : 0);
    const clampLo = a.dtMin > -Infinity ? `dt = max(dt, ${f32(a.dtMin)});` : '';
    const clampHi = a.dtMax < Infinity ? `dt = min(dt, ${f32(a.dtMax)});` : '';
    const statePart = a.returnFinalState ? ` + ${H * P * N}` : '';
    return `
      fn main(index : i32) {
        let lane = i32(workgroupId.x) * ${WORKGROUP} + i32(localId.x);
        let Bt = uniforms.xShape.x;
        let L = uniforms.xShape.y;
        if (lane >= Bt * ${H * P}) {
          return;
        }
        let p = lane % ${P};
        let bh = lane / ${P};
        let h = bh % ${H};
        let b = bh / ${H};
        let g = h / ${H / G};
        let Ah = Par[h];
        let Dh = ${has.D ? `Par[${offD} + h]` : '0.0'};
        let bias = ${has.dtBias ? `Par[${offBias} + h]` : '0.0'};
        var S : array<f32, ${N}>;
        for (var n = 0; n < ${N}; n++) {
          S[n] = ${has.initialState ? `Par[${offInit} + lane * ${N} + n]` : '0.0'};
        }
        let stride = L * ${H * P}${statePart};
        for (var t = 0; t < L; t++) {
          let bt = b * L + t;
          var dt = Dt[bt * ${H} + h] + bias;
          ${a.dtSoftplus ? 'dt = select(log(1.0 + exp(dt)), dt, dt > 20.0);' : ''}
          ${clampLo}
          ${clampHi}
          let decay = exp(dt * Ah);
          let xo = (bt * ${H} + h) * ${P} + p;
          let xv = X[xo];
          let xd = dt * xv;
          let bo = (bt * ${G} + g) * ${N};
          var acc = 0.0;
          for (var n = 0; n < ${N}; n++) {
            let s = decay * S[n] + xd * Bm[bo + n];
            S[n] = s;
            acc = acc + s * Cm[bo + n];
          }
          var y = acc + Dh * xv;
          ${has.z ? 'let zv = Z[xo]; y = y * zv / (1.0 + exp(-zv));' : ''}
          result[b * stride + (t * ${H} + h) * ${P} + p] = y;
        }
        ${
          a.returnFinalState
            ? `for (var n = 0; n < ${N}; n++) { result[b * stride + L * ${H * P} + (h * ${P} + p) * ${N} + n] = S[n]; }`
            : ''
        }
      }
    `;
  }
}

function webgpuKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const gpu = backend as unknown as WebGPUBackendLike;
  const a = attrs as unknown as SsdKernelAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const d = ssdMathDims(named, a);
  const sizeOf = (t: tf.TensorInfo): number => t.shape.reduce((x, y) => x * y, 1);
  const has = { D: sizeOf(named.D) > 0, z: sizeOf(named.z) > 0, dtBias: sizeOf(named.dtBias) > 0, initialState: sizeOf(named.initialState) > 0 };
  const program = new SsdScanProgram(ssdOutputShape(d, a.returnFinalState), d.batch * d.heads * d.headDim, { H: d.heads, P: d.headDim, G: d.groups, N: d.stateSize }, has, a);
  const toPack = [named.A, ...(['D', 'dtBias', 'initialState'] as const).filter((n) => has[n]).map((n) => named[n])];
  let par: tf.TensorInfo = named.A;
  let packed: tf.TensorInfo | undefined;
  if (toPack.length > 1) {
    const flat = toPack.map((t) => ({ ...t, shape: [sizeOf(t)] }));
    packed = gpu.runWebGPUProgram(new SsdPackProgram(flat.length, flat.reduce((s, t) => s + t.shape[0], 0)), flat, 'float32');
    par = packed;
  }
  const bound = [named.x, named.dt, named.B, named.C, par];
  if (has.z) bound.push(named.z);
  const out = gpu.runWebGPUProgram(program, bound, 'float32');
  if (packed != null) gpu.disposeData(packed.dataId);
  return out;
}

/** Registers the WGSL kernel on `webgpu`. Idempotent. */
export function registerSsdWebGPUKernel(): void {
  registerFusedKernel({ kernelName: SSD_KERNEL, backendName: 'webgpu', kernelFunc: webgpuKernel as tf.KernelFunc });
}
