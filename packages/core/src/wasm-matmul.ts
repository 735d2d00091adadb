/**
 * A faster `BatchMatMul` for tfjs's `wasm` backend when an operand is transposed.
 *
 * tfjs-backend-wasm runs `a · b` through XNNPACK only when neither operand is transposed; `aᵀ · b` and `a · bᵀ` go to
 * a plain scalar loop, 10 to 30 times slower (576 × 1536 weights at 128 rows: 11 ms plain, 210 ms with `bᵀ`, 300 ms
 * with `aᵀ`). Those are exactly the products of every matmul's gradient (`dx = dy · Wᵀ`, `dW = xᵀ · dy`), so
 * training on `wasm` spent most of its time there. The kernel installed here rewrites a transposed product of two
 * matrices as plain ones for tfjs's own kernel: `Aᵀ · B` with `Aᵀ` copied (tfjs's own Transpose kernel), and
 * `A · Bᵀ` as `(B · Aᵀ)ᵀ`, so that the big operand streams through XNNPACK instead of being copied and re-packed
 * on every call.
 *
 * tfjs's kernel also runs every batched product (rank > 2) through its scalar loop: `[3, 384, 64] · [3, 64, 128]`
 * takes 11 ms there against under 2 ms as three matrix products through XNNPACK. Batched products with the same
 * leading dimensions on both sides (no broadcasting) are run here one matrix at a time, through the rewrite above
 * when an operand is transposed, and a batch of one as its matrices. Small products keep tfjs's path.
 *
 * The plain products themselves (`x · W` of every projection, and the rewrites above) run through slmkit's own
 * WebAssembly GEMM (`wasm-gemm.ts`) on the backend's heap, in place: 1.3 to 1.5 times XNNPACK's speed on one core,
 * because it broadcasts from memory instead of shuffling (see `wasm/gemm.wat`). It keeps each weight packed, as
 * XNNPACK did, so a weight is held twice as before, not three times. Batched products need no copies either. On
 * several threads the GEMM splits its work over workers of its own (Node); where it has none (a browser's threaded
 * build), XNNPACK keeps every product.
 *
 * In Node's environment, `SLMKIT_WASM_TFJS_MATMUL=1` leaves tfjs's kernel in place, and `SLMKIT_WASM_XNNPACK=1`
 * keeps plain products on XNNPACK (the benchmarks' "before" series).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { gemm, gemmAvailable, gemmScratchFloats, packB, packedFloats, packedWeight } from './wasm-gemm.js';
import { wasmHeapMemory } from './wasm.js';

/** What this file (and the gated-product kernel, wasm-gated.ts) needs of the wasm backend. Internal. */
export interface WasmBackendLike {
  disposeData(dataId: object): boolean;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

/**
 * Multiply-adds below which tfjs's own loop is left to do a transposed product: for small matrices the copies and
 * XNNPACK's per-call weight packing cost more than they save (measured: even at 128 × 64 × 128).
 */
const MIN_WORK = 1 << 18;

/** Products run through gemm.wat so far (tests check the path they meant to exercise was taken). Internal. */
export const gemmProducts = { count: 0 };

let installed = false;

/** The running backend's thread count, once {@link installWasmMatMul} has routed plain products to gemm.wat. */
let gemmThreads: (() => number) | null = null;

/**
 * The heap of `backend` (a kernel's) when gemm.wat runs its plain products now (the wasm backend, its matmul
 * installed here, SIMD, and workers for its thread count), else `null`. Internal.
 */
export function gemmMemory(backend: unknown): WebAssembly.Memory | null {
  const memory = gemmThreads == null ? null : wasmHeapMemory(backend);
  return memory != null && gemmAvailable(memory, gemmThreads!()) ? memory : null;
}

const env = (name: string): string | undefined => (typeof process !== 'undefined' ? process.env?.[name] : undefined);

/**
 * Replaces the wasm backend's `BatchMatMul` kernel by one that transposes a transposed operand explicitly, runs
 * batched products one matrix at a time, and runs plain products through gemm.wat (on one thread, or split over
 * its workers; else tfjs's own kernel, XNNPACK). Same results up to float32 rounding (gemm.wat sums over k in
 * order); once per process, after `@tensorflow/tfjs-backend-wasm` has registered its kernels.
 *
 * @param threads - the running backend's thread count (tfjs-backend-wasm's `getThreadsCount`).
 */
export function installWasmMatMul(threads: () => number): void {
  if (installed) return;
  if (env('SLMKIT_WASM_TFJS_MATMUL') === '1') return;
  // Plain products go to gemm.wat unless `SLMKIT_WASM_XNNPACK=1` keeps them on XNNPACK.
  const gemmEnabled = env('SLMKIT_WASM_XNNPACK') !== '1';
  const original = tf.getKernel('BatchMatMul', 'wasm');
  if (original == null) return;
  installed = true;
  if (gemmEnabled) gemmThreads = threads;
  const plain = original.kernelFunc;
  const transpose = tf.getKernel('Transpose', 'wasm')!.kernelFunc;
  /** A matrix transposed by tfjs's own kernel, as a new tensor of the backend (the caller disposes it). */
  const swapLastTwo = (x: tf.TensorInfo, backend: unknown): tf.TensorInfo =>
    transpose({ inputs: { x }, backend: backend as tf.KernelBackend, attrs: { perm: [1, 0] } }) as tf.TensorInfo;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    // tfjs's kernel binds its wasm function in its setup, which runs when the backend starts.
    ...(original.setupFunc != null ? { setupFunc: original.setupFunc } : {}),
    ...(original.disposeFunc != null ? { disposeFunc: original.disposeFunc } : {}),
    kernelFunc: (args) => (batchedProduct(args) ?? matrixProduct(args)) as tf.TensorInfo,
  });

  /**
   * `batch` plain products `a[i] · b[i]` (`[m, k] · [k, n]` each, laid out one after the other) into a new
   * `[...shape]` tensor, through gemm.wat in place; `null` (nothing allocated) where it does not take them.
   */
  function gemmProduct(args: Parameters<tf.KernelFunc>[0], shape: number[], batch: number, m: number, k: number, n: number): tf.TensorInfo | null {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (m < 1 || k < 1 || n < 1 || a.dtype !== 'float32' || b.dtype !== 'float32') return null;
    const memory = gemmMemory(args.backend);
    if (memory == null) return null;
    const backend = args.backend as unknown as WasmBackendLike;
    // One matrix: B is a weight (or treated as one), packed once and kept. Several: each packed into scratch.
    const kept = batch === 1 ? packedWeight(backend, memory, b as tf.TensorInfo & { dtype: 'float32' }, k, n) : null;
    const aFloats = gemmScratchFloats(m, k);
    const scratchFloats = aFloats + (kept == null ? packedFloats(k, n) : 0); // packed A, then B (a batch's)
    const out = backend.makeOutput(shape, 'float32'); // [..., m, n]
    const scratch = scratchFloats > 0 ? backend.makeOutput([scratchFloats], 'float32') : null;
    // Byte offsets on the heap, read after the allocations (which may grow it).
    const [pa, pb, pc] = [a, b, out].map((t) => backend.typedArrayFromHeap(t).byteOffset);
    const ps = scratch == null ? 0 : backend.typedArrayFromHeap(scratch).byteOffset;
    try {
      for (let i = 0; i < batch; i++) {
        const bp = kept ?? ps + 4 * aFloats;
        if (kept == null) packB(memory, pb + 4 * i * k * n, bp, k, n);
        gemm(memory, pa + 4 * i * m * k, bp, pc + 4 * i * m * n, m, k, n, ps);
      }
    } finally {
      if (scratch != null) backend.disposeData(scratch.dataId);
    }
    gemmProducts.count++;
    return out;
  }

  /** A plain product of two matrices (no transposes): gemm.wat where it takes it, else tfjs's kernel. */
  function plainProduct(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo | tf.TensorInfo[] {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.shape.length === 2 && b.shape.length === 2 && a.shape[1] === b.shape[0]) {
      const [m, k] = a.shape;
      const n = b.shape[1];
      const out = gemmProduct(args, [m, n], 1, m, k, n);
      if (out != null) return out;
    }
    return plain(args);
  }

  /** A product of two matrices: a transposed operand rewritten as above, then {@link plainProduct}. */
  function matrixProduct(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo | tf.TensorInfo[] {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if (!transposeA && !transposeB) return plainProduct(args);
    if (a.shape.length !== 2 || b.shape.length !== 2 || a.dtype !== 'float32' || b.dtype !== 'float32') return plain(args);
    const [m, k] = transposeA ? [a.shape[1], a.shape[0]] : a.shape;
    const [kB, n] = transposeB ? [b.shape[1], b.shape[0]] : b.shape;
    // Mismatched shapes: tfjs's kernel reports them in the caller's terms.
    if (k !== kB || m * n * k < MIN_WORK) return plain(args);
    const backend = args.backend as unknown as WasmBackendLike;
    const product = (x: tf.TensorInfo, y: tf.TensorInfo): tf.TensorInfo =>
      plainProduct({ ...args, inputs: { a: x, b: y }, attrs: { ...args.attrs, transposeA: false, transposeB: false } }) as tf.TensorInfo;
    const temporaries: tf.TensorInfo[] = [];
    const keep = <T extends tf.TensorInfo>(t: T): T => (temporaries.push(t), t);
    try {
      if (!transposeB) return product(keep(swapLastTwo(a, backend)), b); // Aᵀ·B, Aᵀ copied
      // op(A)·Bᵀ = (B·op(A)ᵀ)ᵀ: B streams through XNNPACK as the rows, and only op(A)ᵀ (the small side in a
      // gradient or a decode step) is packed, instead of a new copy of the weight each call.
      const opAT = transposeA ? a : keep(swapLastTwo(a, backend)); // [k, m]
      return swapLastTwo(keep(product(b, opAT)), backend); // ([n, k]·[k, m])ᵀ = [m, n]
    } finally {
      for (const t of temporaries) backend.disposeData(t.dataId);
    }
  }

  /**
   * A batched product `[..., m, k] · [..., k, n]` with the same leading dimensions on both sides, one matrix product
   * per batch entry: in place through gemm.wat when neither operand is transposed and it takes them, else each copied
   * out of the batch, multiplied by {@link matrixProduct} and copied into the output; a batch of one is its matrices
   * (no copies); `null` for anything else (broadcast batches, small products, other dtypes), which tfjs's kernel
   * handles.
   */
  function batchedProduct(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo | null {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const rank = a.shape.length;
    if (rank < 3 || b.shape.length !== rank || a.dtype !== 'float32' || b.dtype !== 'float32') return null;
    const lead = a.shape.slice(0, -2);
    if (lead.some((d, i) => d !== b.shape[i])) return null;
    const batch = lead.reduce((x, y) => x * y, 1);
    const aMatrix = a.shape.slice(-2); // [m, k], or [k, m] with transposeA
    const bMatrix = b.shape.slice(-2); // [k, n], or [n, k] with transposeB
    const [m, k] = transposeA ? [aMatrix[1], aMatrix[0]] : aMatrix;
    const [kB, n] = transposeB ? [bMatrix[1], bMatrix[0]] : bMatrix;
    if (k !== kB) return null; // tfjs's kernel reports mismatched shapes in the caller's terms
    if (batch === 1) {
      // Leading dimensions of 1: the matrices themselves, as views of the same data (as a reshape is on wasm), and
      // the product's data seen with the leading dimensions back.
      const view = (t: tf.TensorInfo, shape: number[]): tf.TensorInfo => ({ dataId: t.dataId, shape, dtype: t.dtype });
      const out = matrixProduct({ ...args, inputs: { a: view(a, aMatrix), b: view(b, bMatrix) } }) as tf.TensorInfo; // [m, n]
      return view(out, [...lead, m, n]); // [1, ..., m, n]
    }
    if (m * n * k < MIN_WORK) return null;
    if (!transposeA && !transposeB) {
      const out = gemmProduct(args, [...lead, m, n], batch, m, k, n);
      if (out != null) return out;
    }
    const backend = args.backend as unknown as WasmBackendLike;
    const aSize = aMatrix[0] * aMatrix[1];
    const bSize = bMatrix[0] * bMatrix[1];
    const out = backend.makeOutput([...lead, m, n], 'float32'); // [..., m, n]
    for (let i = 0; i < batch; i++) {
      const ai = backend.makeOutput(aMatrix, 'float32');
      const bi = backend.makeOutput(bMatrix, 'float32');
      // Views after the allocations (growing the heap detaches earlier ones).
      backend.typedArrayFromHeap(ai).set(backend.typedArrayFromHeap(a).subarray(i * aSize, (i + 1) * aSize));
      backend.typedArrayFromHeap(bi).set(backend.typedArrayFromHeap(b).subarray(i * bSize, (i + 1) * bSize));
      const ri = matrixProduct({ ...args, inputs: { a: ai, b: bi } }) as tf.TensorInfo; // [m, n]
      backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(ri), i * m * n);
      for (const t of [ai, bi, ri]) backend.disposeData(t.dataId);
    }
    return out;
  }
}
