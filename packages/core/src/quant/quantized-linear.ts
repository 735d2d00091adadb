/**
 * `QuantizedLinear`: a linear layer whose weight stays packed in low-bit codes (int8, int4, ternary), and the
 * matmul that dequantises inside its loop: a typed-array kernel on `cpu` and `wasm`, a WGSL kernel on `webgpu`.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from '../errors.js';
import { defineFusedOp, registerFusedKernel, runTypedKernel } from '../kernels.js';
import { Module } from '../module.js';
import { Linear } from '../layers/linear.js';
import { CODES_PER_WORD, dequantizeWeight, quantizeWeight, wordsPerRow, type PackedWeight, type QuantScheme } from './formats.js';
import { ResidentQuantWeight, quantMatMulSimd, quantSimdSupports } from './wasm/quant-simd.js';

/** The fused op's kernel name. */
const KERNEL = 'SlmkitQuantMatMul';

interface QuantAttrs {
  scheme: QuantScheme;
  inFeatures: number;
  outFeatures: number;
  groupSize: number;
}

interface QuantInputs extends Record<string, tf.Tensor> {
  x: tf.Tensor2D; // [N, in]
  packed: tf.Tensor2D; // int32 [out, words]
  scales: tf.Tensor; // [out] | [out, groups] | [1]
  zeros: tf.Tensor; // int32 [ceil(out · groups / 8)] | [0]
  bias: tf.Tensor; // [out] | [0]
}

/** The packed weight a kernel sees, from its attrs and typed arrays. */
function packedOf(attrs: QuantAttrs, packed: Int32Array, scales: Float32Array, zeros: Int32Array): PackedWeight {
  return { ...attrs, packed, scales, zeros };
}

/**
 * `y = x Ŵᵀ + b` on typed arrays, one output channel at a time, never building `Ŵ`. int8, ternary, and int4 with
 * groups of a multiple of 32 run on WebAssembly SIMD (`wasm/quant.wat`, the weight copied in for this call: the path
 * of a weight without a resident copy); otherwise each word of the channel's row is read once and its codes are
 * multiplied into every input row as they are unpacked, one loop per scheme.
 */
function quantMatMulLoop(x: Float32Array, N: number, q: PackedWeight, bias: Float32Array, out: Float32Array): void {
  if (quantMatMulSimd(x, N, q, bias, out)) return;
  const { inFeatures: I, outFeatures: O } = q;
  const words = wordsPerRow(q.scheme, I);
  const acc = new Float64Array(N);
  const hasBias = bias.length > 0;
  const packed = q.packed;
  const scales = q.scales;
  for (let o = 0; o < O; o++) {
    acc.fill(0);
    const base = o * words;
    if (q.scheme === 'int8') {
      for (let w = 0; w < words; w++) {
        const word = packed[base + w];
        const c0 = (word << 24) >> 24;
        const c1 = (word << 16) >> 24;
        const c2 = (word << 8) >> 24;
        const c3 = word >> 24;
        const i = 4 * w;
        if (i + 4 <= I) {
          for (let n = 0; n < N; n++) {
            const xo = n * I + i;
            acc[n] += c0 * x[xo] + c1 * x[xo + 1] + c2 * x[xo + 2] + c3 * x[xo + 3];
          }
        } else {
          const codes = [c0, c1, c2, c3];
          for (let n = 0; n < N; n++) for (let k = 0; i + k < I; k++) acc[n] += codes[k] * x[n * I + i + k];
        }
      }
      const s = scales[o];
      for (let n = 0; n < N; n++) acc[n] *= s;
    } else if (q.scheme === 'int4') {
      // Σ_g s_g (Σ_{i∈g} q_i x_i − z_g Σ_{i∈g} x_i), group by group.
      const G = q.groupSize;
      const groups = Math.ceil(I / G);
      for (let g = 0; g < groups; g++) {
        const f = o * groups + g;
        const z = (q.zeros[f >> 3] >>> (4 * (f & 7))) & 15;
        const s = scales[f];
        const from = g * G;
        const to = Math.min(I, from + G);
        for (let n = 0; n < N; n++) {
          let dot = 0;
          let sum = 0;
          const xo = n * I;
          for (let i = from; i < to; i++) {
            const xi = x[xo + i];
            dot += ((packed[base + (i >> 3)] >>> ((i & 7) << 2)) & 15) * xi;
            sum += xi;
          }
          acc[n] += s * (dot - z * sum);
        }
      }
    } else {
      for (let n = 0; n < N; n++) {
        let dot = 0;
        const xo = n * I;
        for (let i = 0; i < I; i++) dot += (((packed[base + (i >> 4)] >>> ((i & 15) << 1)) & 3) - 1) * x[xo + i];
        acc[n] = scales[0] * dot;
      }
    }
    const b = hasBias ? bias[o] : 0;
    for (let n = 0; n < N; n++) out[n * O + o] = acc[n] + b;
  }
}

/**
 * The resident copies of the layers' weights in the SIMD module, by the data id of their packed tensor. A layer
 * registers its copy before it runs the op ({@link QuantizedLinear.forward}) and frees it when disposed.
 */
const residents = new WeakMap<object, ResidentQuantWeight>();

/** The data ids a resident copy is made from: packed, scales, zeros, bias (in the kernel's input order). */
function sourceIds(named: Record<string, { dataId: object }>): object[] {
  return [named.packed.dataId, named.scales.dataId, named.zeros.dataId, named.bias.dataId];
}

/** Whether `r` is a live resident copy made from the tensors of data ids `ids`. */
function isCopyOf(r: ResidentQuantWeight | undefined, ids: readonly object[]): r is ResidentQuantWeight {
  return r !== undefined && !r.isFreed && ids.every((id, k) => id === r.sources[k]);
}

/** The resident copy of these inputs' weight, if there is a live one made from these very tensors. */
function residentOf(named: Record<string, { dataId: object }>): ResidentQuantWeight | undefined {
  const r = residents.get(named.packed.dataId);
  return isCopyOf(r, sourceIds(named)) && quantSimdSupports(r) ? r : undefined;
}

function cpuKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const a = attrs as unknown as QuantAttrs;
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const N = named.x.shape[0];
  const resident = residentOf(named);
  const ins = [named.x, named.packed, named.scales, named.zeros, named.bias];
  const [out] = runTypedKernel<Float32Array | Int32Array>(backend, ins, [[N, a.outFeatures]], ([x, packed, scales, zeros, bias], [y]) => {
    if (resident !== undefined) {
      resident.matmul(x as Float32Array, N, y); // copies only x in and the output out
      return;
    }
    const q = packedOf(a, packed as Int32Array, scales as Float32Array, zeros as Int32Array);
    quantMatMulLoop(x as Float32Array, N, q, bias as Float32Array, y);
  });
  return out;
}

interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: tf.TensorInfo[], outputDtype: tf.DataType): tf.TensorInfo;
}

/**
 * One invocation per output value `(n, o)`: decodes row `o` word by word and dots it with input row `n`. Binds only
 * what the scheme reads (a shader's bind-group layout leaves unused bindings out).
 */
class QuantMatMulProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout = { x: [0, 1] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [64, 1, 1];
  readonly size = true;

  constructor(
    N: number,
    private readonly a: QuantAttrs,
    private readonly hasBias: boolean,
  ) {
    this.variableNames = ['X', 'P', 'S', ...(a.scheme === 'int4' ? ['Z'] : []), ...(hasBias ? ['Bias'] : [])];
    this.outputShape = [N, a.outFeatures];
    this.dispatch = [Math.ceil((N * a.outFeatures) / 64), 1, 1];
    this.shaderKey = `slmkit_quant_matmul_${a.scheme}_${a.inFeatures}_${a.outFeatures}_${a.groupSize}_${hasBias}`;
  }

  getUserCode(): string {
    const { scheme, inFeatures: I, outFeatures: O, groupSize: G } = this.a;
    const per = CODES_PER_WORD[scheme];
    const words = wordsPerRow(scheme, I);
    const groups = scheme === 'int4' ? Math.ceil(I / G) : 1;
    const decode = {
      int8: `f32((word << u32(24 - 8 * k)) >> 24u) * S[o]`,
      int4: `f32(i32((bitcast<u32>(word) >> u32(4 * k)) & 15u) - zeroAt(o * ${groups} + i / ${G})) * S[o * ${groups} + i / ${G}]`,
      ternary: `f32(i32((bitcast<u32>(word) >> u32(2 * k)) & 3u) - 1) * S[0]`,
    }[scheme];
    const zeroAt =
      scheme === 'int4'
        ? `fn zeroAt(f : i32) -> i32 {
        return i32((bitcast<u32>(Z[f / 8]) >> u32(4 * (f % 8))) & 15u);
      }`
        : '';
    return `
      ${zeroAt}
      fn main(index : i32) {
        if (index < uniforms.size) {
          let n = index / ${O};
          let o = index % ${O};
          var acc = 0.0;
          for (var w = 0; w < ${words}; w = w + 1) {
            let word = P[o * ${words} + w];
            for (var k = 0; k < ${per}; k = k + 1) {
              let i = w * ${per} + k;
              if (i < ${I}) {
                acc = acc + X[n * ${I} + i] * ${decode};
              }
            }
          }
          ${this.hasBias ? 'acc = acc + Bias[o];' : ''}
          setOutputAtIndex(index, acc);
        }
      }
    `;
  }
}

function webgpuKernel({ inputs, backend, attrs }: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const named = inputs as unknown as Record<string, tf.TensorInfo>;
  const a = attrs as unknown as QuantAttrs;
  const hasBias = named.bias.shape[0] > 0;
  const program = new QuantMatMulProgram(named.x.shape[0], a, hasBias);
  const bound = [named.x, named.packed, named.scales, ...(a.scheme === 'int4' ? [named.zeros] : []), ...(hasBias ? [named.bias] : [])];
  return (backend as unknown as WebGPUBackendLike).runWebGPUProgram(program, bound, 'float32');
}

/** Dequantises on the host and multiplies: the oracle, and the fallback of backends without a kernel. */
function naiveQuantMatMul(inputs: QuantInputs, attrs: QuantAttrs): tf.Tensor {
  const q = packedOf(attrs, inputs.packed.dataSync() as Int32Array, inputs.scales.dataSync() as Float32Array, inputs.zeros.dataSync() as Int32Array);
  return tf.tidy(() => {
    const w = tf.tensor2d(dequantizeWeight(q), [attrs.outFeatures, attrs.inFeatures]); // [out, in]
    const y = tf.matMul(inputs.x, w, false, true); // [N, out]
    return inputs.bias.size > 0 ? tf.add(y, inputs.bias) : y;
  });
}

const quantMatMul = defineFusedOp<QuantInputs, QuantAttrs>({ kernelName: KERNEL, naive: naiveQuantMatMul });
for (const backendName of ['cpu', 'wasm']) registerFusedKernel({ kernelName: KERNEL, backendName, kernelFunc: cpuKernel as tf.KernelFunc });
registerFusedKernel({ kernelName: KERNEL, backendName: 'webgpu', kernelFunc: webgpuKernel as tf.KernelFunc });

/**
 * Options of {@link QuantizedLinear.fromLinear} and {@link quantize}.
 *
 * @example
 * ```ts
 * import type { QuantizeOptions } from '@slmkit/core';
 * const int4: QuantizeOptions = { scheme: 'int4', groupSize: 128 };
 * ```
 */
export interface QuantizeOptions {
  /** The format; see {@link QuantScheme}. */
  scheme: QuantScheme;
  /** `int4` only: input features per scale and zero point (default 64). */
  groupSize?: number;
}

/**
 * A linear layer with a low-bit weight: `y = x Ŵᵀ + b`, where `Ŵ` is the dequantised weight of a
 * {@link QuantScheme}. The codes stay packed in an int32 tensor (int8: 4 per word, int4: 8, ternary: 16), with
 * float32 scales (and int4 zero points) beside them; the matmul decodes them inside its loop (a typed-array kernel
 * on `cpu` and `wasm`, WGSL on `webgpu`) and never builds a float32 copy of the weight. Other backends dequantise
 * on the host and warn once. Drops in wherever a `Linear` goes (it is a `Projection`); {@link quantize} converts a
 * whole model in place. Its tensors are not trainable.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { Linear, QuantizedLinear } from '@slmkit/core';
 * const linear = new Linear(64, 32);
 * const q = QuantizedLinear.fromLinear(linear, { scheme: 'int8' });
 * const x = tf.randomNormal([2, 64]);
 * const y = q.forward(x); // [2, 32], within int8 rounding of linear.forward(x)
 * console.log(y.shape, q.weightBytes); // [2, 32] 2176
 * tf.dispose([x, y]);
 * q.dispose();
 * linear.dispose();
 * ```
 */
export class QuantizedLinear extends Module {
  /** Input width. */
  readonly inFeatures: number;
  /** Output width. */
  readonly outFeatures: number;
  /** The format. */
  readonly scheme: QuantScheme;
  /** Input features per scale (see {@link PackedWeight.groupSize}). */
  readonly groupSize: number;
  /** The packed codes, int32 `[out, wordsPerRow]` (parameter `qweight`). */
  readonly packed: tf.Variable;
  /** The scales (parameter `scales`). */
  readonly scales: tf.Variable;
  /** The int4 zero points, packed eight per int32 (parameter `zeros`); undefined for the other schemes. */
  readonly zeros: tf.Variable | undefined;
  /** The bias `[out]` (parameter `bias`), float32 as in the layer it came from. */
  readonly bias: tf.Variable | undefined;
  private readonly empty: tf.Tensor;
  /** The weight's copy in the SIMD module's memory (cpu / wasm), made on the first forward there. */
  private resident: ResidentQuantWeight | undefined;
  private isDisposed = false;

  /**
   * @param weight - a packed weight (from {@link quantizeWeight}).
   * @param bias - float32 `[outFeatures]`, or undefined; the layer takes ownership of it.
   */
  constructor(weight: PackedWeight, bias?: tf.Tensor) {
    super();
    if (bias != null && (bias.rank !== 1 || bias.shape[0] !== weight.outFeatures)) {
      throw new ShapeError(`QuantizedLinear: bias must be [${weight.outFeatures}], found [${bias.shape.join(', ')}]`, {
        field: 'bias',
        expected: [weight.outFeatures],
        found: bias.shape.slice(),
      });
    }
    this.inFeatures = weight.inFeatures;
    this.outFeatures = weight.outFeatures;
    this.scheme = weight.scheme;
    this.groupSize = weight.groupSize;
    const words = wordsPerRow(weight.scheme, weight.inFeatures);
    this.packed = this.registerParameter('qweight', tf.tensor2d(weight.packed, [weight.outFeatures, words], 'int32'), { trainable: false });
    const groups = weight.scheme === 'int4' ? Math.ceil(weight.inFeatures / weight.groupSize) : 1;
    const scaleShape = weight.scheme === 'int8' ? [weight.outFeatures] : weight.scheme === 'int4' ? [weight.outFeatures, groups] : [1];
    this.scales = this.registerParameter('scales', tf.tensor(weight.scales, scaleShape, 'float32'), { trainable: false });
    this.zeros = weight.scheme === 'int4' ? this.registerParameter('zeros', tf.tensor1d(weight.zeros, 'int32'), { trainable: false }) : undefined;
    this.bias = bias == null ? undefined : this.registerParameter('bias', bias, { trainable: false });
    this.empty = tf.zeros([0]);
  }

  /**
   * Quantises a {@link Linear}'s weight (the layer itself is left as it is).
   *
   * @throws {@link ConfigError} for an unknown scheme or a bad group size.
   *
   * @example
   * ```ts
   * import { Linear, QuantizedLinear } from '@slmkit/core';
   * const q = QuantizedLinear.fromLinear(new Linear(256, 64, { bias: false }), { scheme: 'int4', groupSize: 32 });
   * console.log(q.packed.shape, q.scales.shape, q.zeros?.shape); // [64, 32] [64, 8] [64]
   * q.dispose();
   * ```
   */
  static fromLinear(linear: Linear, options: QuantizeOptions): QuantizedLinear {
    // Stored [in, out]; quantizeWeight takes [out, in]. Transposed here: tf.transpose of a large matrix takes
    // seconds on tfjs-backend-wasm 4.22.
    const I = linear.inFeatures;
    const O = linear.outFeatures;
    const wt = linear.weight.dataSync() as Float32Array; // [in, out]
    const w = new Float32Array(O * I); // [out, in]
    for (let i = 0; i < I; i++) for (let o = 0; o < O; o++) w[o * I + i] = wt[i * O + o];
    const packed = quantizeWeight(w, O, I, options.scheme, options.groupSize ?? 64);
    return new QuantizedLinear(packed, linear.bias == null ? undefined : tf.clone(linear.bias));
  }

  /** Bytes of the packed weight and its scales and zero points (the bias not included). */
  get weightBytes(): number {
    return 4 * (this.packed.size + this.scales.size + (this.zeros?.size ?? 0));
  }

  /**
   * Bytes this layer holds in the WebAssembly SIMD module's memory, outside `tf.memory()`: on `cpu` and `wasm` the
   * first {@link QuantizedLinear.forward} copies the codes, scales, zero points and bias there in the kernel's
   * layout (about {@link QuantizedLinear.weightBytes} again), so that later calls copy only activations; 0 before
   * that, on other backends, and after {@link QuantizedLinear.dispose}, which gives them back.
   */
  get residentBytes(): number {
    return this.resident === undefined || this.resident.isFreed ? 0 : this.resident.bytes;
  }

  /** The weight as typed arrays (a host copy; for inspection and tests). */
  packedWeight(): PackedWeight {
    this.checkLive();
    return {
      scheme: this.scheme,
      inFeatures: this.inFeatures,
      outFeatures: this.outFeatures,
      groupSize: this.groupSize,
      packed: this.packed.dataSync() as Int32Array,
      scales: this.scales.dataSync() as Float32Array,
      zeros: this.zeros == null ? new Int32Array(0) : (this.zeros.dataSync() as Int32Array),
    };
  }

  /**
   * `x Ŵᵀ + b` over the last dimension.
   *
   * @param x - float32 `[..., inFeatures]`.
   * @returns `[..., outFeatures]`; the caller owns it.
   * @throws {@link ShapeError} when `x` is not float32 or its last dimension is not `inFeatures`.
   * @throws {@link ConfigError} when the layer was disposed.
   */
  forward(x: tf.Tensor, options: { implementation?: 'auto' | 'fused' | 'naive' } = {}): tf.Tensor {
    this.checkLive();
    if (!(x instanceof tf.Tensor) || x.rank < 1 || x.dtype !== 'float32' || x.shape[x.rank - 1] !== this.inFeatures) {
      const found = x instanceof tf.Tensor ? `${x.dtype} [${x.shape.join(', ')}]` : typeof x;
      throw new ShapeError(`QuantizedLinear: x must be float32 [..., ${this.inFeatures}], found ${found}`, {
        field: 'x',
        expected: `[..., ${this.inFeatures}]`,
        found,
      });
    }
    if (options.implementation !== 'naive') this.keepResident();
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const rows = lead.reduce((a, b) => a * b, 1);
      const y = quantMatMul(
        {
          x: tf.reshape(x, [rows, this.inFeatures]) as tf.Tensor2D, // [N, in]
          packed: this.packed as unknown as tf.Tensor2D,
          scales: this.scales,
          zeros: this.zeros ?? this.empty,
          bias: this.bias ?? this.empty,
        },
        { scheme: this.scheme, inFeatures: this.inFeatures, outFeatures: this.outFeatures, groupSize: this.groupSize },
        { implementation: options.implementation },
      ); // [N, out]
      return tf.reshape(y, [...lead, this.outFeatures]); // [..., out]
    });
  }

  /** Which implementation the last {@link QuantizedLinear.forward} of any layer ran. */
  static get lastRun(): { op: string; backend: string; implementation: 'fused' | 'naive' } | undefined {
    return quantMatMul.lastRun;
  }

  /**
   * Frees the parameters and the copy in the SIMD module's memory (see {@link QuantizedLinear.residentBytes}).
   * Using the layer afterwards throws a {@link ConfigError}.
   */
  override dispose(): void {
    if (this.isDisposed) return;
    this.isDisposed = true;
    this.releaseResident();
    super.dispose();
    this.empty.dispose();
  }

  private checkLive(): void {
    if (this.isDisposed) {
      throw new ConfigError('QuantizedLinear: used after dispose()', { field: 'layer', expected: 'a live layer', found: 'disposed' });
    }
  }

  /**
   * On `cpu` and `wasm`, makes sure the SIMD module holds a copy of the current weight for the kernel: made once,
   * made again only when a parameter was replaced (its data id changed, as after `loadWeights`).
   */
  private keepResident(): void {
    const backend = tf.getBackend();
    if (backend !== 'cpu' && backend !== 'wasm') return;
    const ids = sourceIds({ packed: this.packed, scales: this.scales, zeros: this.zeros ?? this.empty, bias: this.bias ?? this.empty });
    if (isCopyOf(this.resident, ids)) return;
    this.releaseResident();
    if (!quantSimdSupports(this)) return;
    const made = ResidentQuantWeight.create(this.packedWeight(), this.bias == null ? new Float32Array(0) : (this.bias.dataSync() as Float32Array));
    if (made === null) return;
    made.sources = ids;
    residents.set(this.packed.dataId, made);
    this.resident = made;
  }

  private releaseResident(): void {
    if (this.resident === undefined) return;
    this.resident.free();
    this.resident = undefined;
  }
}

/**
 * Throws the {@link ConfigError} of an unknown scheme (for callers that take a scheme from JSON).
 *
 * @example
 * ```ts
 * import { checkScheme } from '@slmkit/core';
 * const scheme: unknown = JSON.parse('"int8"');
 * checkScheme(scheme); // scheme is now a QuantScheme
 * ```
 */
export function checkScheme(scheme: unknown): asserts scheme is QuantScheme {
  if (scheme !== 'int8' && scheme !== 'int4' && scheme !== 'ternary') {
    throw new ConfigError(`quantize: scheme must be "int8", "int4" or "ternary", found ${JSON.stringify(scheme)}`, {
      field: 'scheme',
      expected: ['int8', 'int4', 'ternary'],
      found: scheme,
    });
  }
}
