/**
 * The safetensors format: a reader that validates the whole header when a file is opened and reads each tensor
 * on demand, and a writer.
 *
 * Layout of a file: bytes `0..8` hold `N` (u64, little-endian); bytes `8..8+N` a UTF-8 JSON header mapping each
 * tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to byte `8+N`), plus an
 * optional `"__metadata__"` map of strings; then the raw row-major little-endian data, every byte of it covered
 * by exactly one tensor.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { CheckpointError, ConfigError, type CheckpointProblem, type ErrorDetails } from '../errors.js';
import type { WeightSource } from '../module.js';

/**
 * The element types this reader understands. Floats are read as `float32` tensors (F16 and BF16 widened, F64
 * narrowed); integers and BOOL as `int32` tensors (I64, U32 and U64 values must fit in int32).
 *
 * @example
 * ```ts
 * import type { SafetensorsDtype } from '@slmkit/core';
 * const half: SafetensorsDtype = 'F16';
 * ```
 */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

/** Bytes per element of each dtype. */
const DTYPE_SIZE: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/**
 * What a safetensors header says about one tensor.
 *
 * @example
 * ```ts
 * import { SafetensorsFile, type SafetensorsTensorInfo } from '@slmkit/core';
 * const file = await SafetensorsFile.fromFile('model.safetensors');
 * const info: SafetensorsTensorInfo = file.info('lm_head.weight');
 * console.log(info.dtype, info.shape, info.dataOffsets); // "F32" [128, 48] [0, 24576]
 * await file.close();
 * ```
 */
export interface SafetensorsTensorInfo {
  /** The element type stored in the file. */
  dtype: SafetensorsDtype;
  /** The shape (`[]` for a scalar). */
  shape: number[];
  /** `[begin, end)` byte range, relative to the start of the data section. */
  dataOffsets: [number, number];
}

/**
 * Options of {@link SafetensorsFile.fromBuffer}, {@link SafetensorsFile.fromFile} and
 * {@link SafetensorsFile.fromResponse}.
 *
 * @example
 * ```ts
 * import { SafetensorsFile, type SafetensorsOpenOptions } from '@slmkit/core';
 * const options: SafetensorsOpenOptions = { name: 'adapter weights' };
 * const file = SafetensorsFile.fromBuffer(new Uint8Array(await (await fetch('/a.safetensors')).arrayBuffer()), options);
 * ```
 */
export interface SafetensorsOpenOptions {
  /** How error messages refer to the file (default: its path or URL, or `safetensors buffer`). */
  name?: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** One format problem, with the expected and found values for the error's details. */
interface FormatIssue {
  name: string;
  message: string;
  expected?: unknown;
  found?: unknown;
}

/** One `CheckpointError` for every issue found in a file (kind `format`); details come from the first. */
function formatError(label: string, issues: FormatIssue[]): CheckpointError {
  const problems: CheckpointProblem[] = issues.map((i) => ({ kind: 'format', name: i.name, message: i.message }));
  const first = issues[0]!;
  const details: ErrorDetails = { field: first.name, expected: first.expected, found: first.found };
  if (issues.length === 1) return new CheckpointError(`invalid safetensors file ${label}: ${first.message}`, problems, details);
  const shown = issues.slice(0, 20).map((i) => `  - ${i.message}`);
  if (issues.length > 20) shown.push(`  ... and ${issues.length - 20} more (see .problems)`);
  return new CheckpointError(`invalid safetensors file ${label}: ${issues.length} problems:\n${shown.join('\n')}`, problems, details);
}

/** A short printable form of a JSON value, for messages. */
function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** `an object`, `an array`, `null`, `a string`...: the JSON kind of a value, for messages. */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Header parsing

/** A validated header: tensors in data order, and the metadata. */
interface ParsedHeader {
  tensors: Map<string, SafetensorsTensorInfo>;
  metadata: Record<string, string>;
}

/**
 * Reads the header length `N` from the first 8 bytes and checks that `8 + N` fits in a file of `fileLength`
 * bytes. Absurd values (even beyond 2^53) are rejected without allocating anything.
 */
function readHeaderLength(prefix: Uint8Array, fileLength: number, label: string): number {
  if (fileLength < 8) {
    throw formatError(label, [
      {
        name: 'header length',
        message: `file is ${fileLength} bytes, shorter than the 8-byte header length prefix`,
        expected: 'at least 8 bytes',
        found: fileLength,
      },
    ]);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  const room = fileLength - 8;
  if (n > BigInt(room)) {
    throw formatError(label, [
      {
        name: 'header length',
        message: `header length ${n} is larger than the ${room} bytes after the 8-byte prefix`,
        expected: `at most ${room}`,
        found: n.toString(),
      },
    ]);
  }
  return Number(n);
}

/** Decodes and checks the JSON header; `dataLength` is the size of the data section that follows it. */
function parseHeader(headerBytes: Uint8Array, dataLength: number, label: string): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw formatError(label, [{ name: 'header', message: 'header is not valid UTF-8', expected: 'UTF-8 JSON', found: 'invalid bytes' }]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw formatError(label, [
      { name: 'header', message: `header is not valid JSON (${(e as Error).message})`, expected: 'JSON', found: show(text) },
    ]);
  }
  if (!isPlainObject(json)) {
    throw formatError(label, [
      { name: 'header', message: `header must be a JSON object, found ${kindOf(json)}`, expected: 'an object', found: kindOf(json) },
    ]);
  }

  const issues: FormatIssue[] = [];
  let metadata: Record<string, string> = {};
  const tensors: [string, SafetensorsTensorInfo][] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      const checked = checkMetadata(entry, issues);
      if (checked != null) metadata = checked;
      continue;
    }
    const info = checkEntry(name, entry, dataLength, issues);
    if (info != null) tensors.push([name, info]);
  }
  if (issues.length === 0) checkCoverage(tensors, dataLength, issues);
  if (issues.length > 0) throw formatError(label, issues);

  tensors.sort(([a, x], [b, y]) => x.dataOffsets[0] - y.dataOffsets[0] || x.dataOffsets[1] - y.dataOffsets[1] || (a < b ? -1 : 1));
  return { tensors: new Map(tensors), metadata };
}

/** `__metadata__` must be a map of strings to strings (`null` counts as none). */
function checkMetadata(entry: unknown, issues: FormatIssue[]): Record<string, string> | undefined {
  if (entry === null) return {};
  const bad = isPlainObject(entry) ? Object.entries(entry).find(([, v]) => typeof v !== 'string') : undefined;
  if (!isPlainObject(entry) || bad != null) {
    const found = bad != null ? `key "${bad[0]}" holding ${kindOf(bad[1])}` : kindOf(entry);
    issues.push({
      name: '__metadata__',
      message: `__metadata__ must be a map of strings to strings, found ${found}`,
      expected: 'a map of strings to strings',
      found,
    });
    return undefined;
  }
  return entry as Record<string, string>;
}

/** Checks one tensor entry on its own; returns its info, or pushes issues and returns undefined. */
function checkEntry(name: string, entry: unknown, dataLength: number, issues: FormatIssue[]): SafetensorsTensorInfo | undefined {
  const where = `tensor "${name}"`;
  const fail = (message: string, expected: unknown, found: unknown): undefined => {
    issues.push({ name, message: `${where}: ${message}`, expected, found });
    return undefined;
  };
  if (!isPlainObject(entry)) {
    return fail(`entry must be an object with dtype, shape and data_offsets, found ${kindOf(entry)}`, 'an object', kindOf(entry));
  }
  for (const field of ['dtype', 'shape', 'data_offsets']) {
    if (!Object.hasOwn(entry, field)) return fail(`missing field "${field}"`, `a "${field}" field`, 'nothing');
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_SIZE, dtype)) {
    return fail(`unknown dtype ${show(dtype)} (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`, Object.keys(DTYPE_SIZE), dtype);
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    return fail(`shape must be an array of non-negative integers, found ${show(shape)}`, 'non-negative integers', shape);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger) || offsets[0] > offsets[1]) {
    return fail(
      `data_offsets must be two non-negative integers [begin, end] with begin <= end, found ${show(offsets)}`,
      '[begin, end]',
      offsets,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) {
    return fail(
      `data_offsets end ${end} is past the end of the data section (${dataLength} bytes)`,
      `at most ${dataLength}`,
      end,
    );
  }
  const size = DTYPE_SIZE[dtype as SafetensorsDtype];
  const needed = (shape as number[]).reduce((a, d) => a * d, 1) * size;
  if (end - begin !== needed) {
    return fail(
      `data_offsets [${begin}, ${end}] span ${end - begin} bytes, but shape [${shape.join(', ')}] of ${dtype} needs ${needed}`,
      needed,
      end - begin,
    );
  }
  return { dtype: dtype as SafetensorsDtype, shape: (shape as number[]).slice(), dataOffsets: [begin, end] };
}

/** The data section must be covered exactly once: no two tensors overlap, and no byte belongs to none. */
function checkCoverage(tensors: [string, SafetensorsTensorInfo][], dataLength: number, issues: FormatIssue[]): void {
  const ranges = tensors
    .filter(([, t]) => t.dataOffsets[1] > t.dataOffsets[0]) // empty tensors occupy no bytes
    .sort(([, x], [, y]) => x.dataOffsets[0] - y.dataOffsets[0] || x.dataOffsets[1] - y.dataOffsets[1]);
  let covered = 0; // every byte before this is covered
  let last: string | undefined; // the tensor that ends at `covered`
  for (const [name, t] of ranges) {
    const [begin, end] = t.dataOffsets;
    if (begin < covered) {
      issues.push({
        name,
        message: `tensors "${last}" and "${name}" overlap: "${name}" starts at byte ${begin}, before "${last}" ends at ${covered}`,
        expected: `begin >= ${covered}`,
        found: begin,
      });
    } else if (begin > covered) {
      issues.push({
        name,
        message: `hole in the data section: bytes [${covered}, ${begin}) before tensor "${name}" belong to no tensor`,
        expected: `begin = ${covered}`,
        found: begin,
      });
    }
    if (end > covered) {
      covered = end;
      last = name;
    }
  }
  if (covered < dataLength) {
    issues.push({
      name: last ?? 'data',
      message: `hole in the data section: bytes [${covered}, ${dataLength}) at its end belong to no tensor`,
      expected: `data section of ${covered} bytes`,
      found: dataLength,
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Element conversions

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverses the bytes of each `size`-byte element in place (only needed on big-endian hosts). */
function swapBytes(bytes: Uint8Array, size: number): void {
  if (LITTLE_ENDIAN || size === 1) return;
  for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
}

const scratch = new DataView(new ArrayBuffer(4));

/** The IEEE binary16 bits of a float32 value, rounded to nearest, ties to even; NaN stays NaN. */
function float32ToFloat16Bits(value: number): number {
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0);
  const e = exponent - 127 + 15; // the binary16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large: infinity
  if (e <= 0) {
    // A subnormal binary16 (or zero): value = m * 2^-24 with m = (1.mantissa) >> (14 - e).
    if (e < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - e;
    return sign | roundShift(full, shift); // a carry out makes the smallest normal: still right
  }
  return sign | ((e << 10) + roundShift(mantissa, 13)); // a carry out of the mantissa bumps the exponent
}

/** `value >> shift`, rounded to nearest, ties to even. */
function roundShift(value: number, shift: number): number {
  const kept = value >>> shift;
  const rest = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept;
}

/** The bfloat16 bits of a float32 value (its top 16 bits), rounded to nearest, ties to even; NaN stays NaN. */
function float32ToBfloat16Bits(value: number): number {
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40; // NaN: keep it a (quiet) NaN
  return roundShift(bits, 16); // a carry out of the mantissa bumps the exponent (to infinity past the max)
}

let float16Table: Float32Array | undefined;

/** The float32 value of every binary16 bit pattern (built once, 256 KiB). */
function float16Values(): Float32Array {
  if (float16Table != null) return float16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) table[h] = sign * mantissa * 2 ** -24;
    else if (exponent === 0x1f) table[h] = mantissa === 0 ? sign * Infinity : NaN;
    else table[h] = sign * (1024 + mantissa) * 2 ** (exponent - 25);
  }
  float16Table = table;
  return table;
}

/** A view of freshly read bytes (offset 0, so aligned) as little-endian elements. */
function view<T>(bytes: Uint8Array, Type: { new (b: ArrayBufferLike, o: number, n: number): T; BYTES_PER_ELEMENT: number }): T {
  swapBytes(bytes, Type.BYTES_PER_ELEMENT);
  return new Type(bytes.buffer, bytes.byteOffset, bytes.byteLength / Type.BYTES_PER_ELEMENT);
}

/** Integers of a 64-bit (or unsigned 32-bit) tensor as int32; throws naming the tensor if one does not fit. */
function toInt32Checked(bytes: Uint8Array, dtype: 'I64' | 'U64' | 'U32', name: string, label: string): Int32Array {
  const words = view(bytes, Int32Array);
  if (dtype === 'U32') {
    const bad = words.findIndex((w) => w < 0);
    if (bad >= 0) throw outOfRange(name, dtype, bad, String(words[bad]! >>> 0), label);
    return words;
  }
  const out = new Int32Array(words.length / 2);
  for (let i = 0; i < out.length; i++) {
    const low = words[2 * i]!;
    const high = words[2 * i + 1]!;
    const fits = dtype === 'I64' ? high === low >> 31 : high === 0 && low >= 0;
    if (!fits) {
      const value = (BigInt(dtype === 'I64' ? high : high >>> 0) << 32n) | BigInt(low >>> 0);
      throw outOfRange(name, dtype, i, value.toString(), label);
    }
    out[i] = low;
  }
  return out;
}

function outOfRange(name: string, dtype: SafetensorsDtype, index: number, value: string, label: string): CheckpointError {
  const message = `tensor "${name}" (${dtype}): value ${value} at flat index ${index} does not fit in int32`;
  return new CheckpointError(`cannot read ${label}: ${message}`, [{ kind: 'dtype', name, message }], {
    field: name,
    expected: 'values in [-2147483648, 2147483647]',
    found: value,
  });
}

/** Turns a tensor's raw bytes (a fresh, unshared buffer) into a tf tensor. */
function decode(bytes: Uint8Array, info: SafetensorsTensorInfo, name: string, label: string): tf.Tensor {
  const shape = info.shape;
  switch (info.dtype) {
    case 'F32':
      return tf.tensor(view(bytes, Float32Array), shape, 'float32');
    case 'F64':
      return tf.tensor(Float32Array.from(view(bytes, Float64Array)), shape, 'float32');
    case 'F16': {
      const table = float16Values();
      const halves = view(bytes, Uint16Array);
      const out = new Float32Array(halves.length);
      for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]!]!;
      return tf.tensor(out, shape, 'float32');
    }
    case 'BF16': {
      const halves = view(bytes, Uint16Array);
      const out = new Uint32Array(halves.length); // bfloat16 is the top half of a float32
      for (let i = 0; i < halves.length; i++) out[i] = halves[i]! << 16;
      return tf.tensor(new Float32Array(out.buffer), shape, 'float32');
    }
    case 'I32':
      return tf.tensor(view(bytes, Int32Array), shape, 'int32');
    case 'I64':
    case 'U64':
    case 'U32':
      return tf.tensor(toInt32Checked(bytes, info.dtype, name, label), shape, 'int32');
    case 'I16':
      return tf.tensor(Int32Array.from(view(bytes, Int16Array)), shape, 'int32');
    case 'U16':
      return tf.tensor(Int32Array.from(view(bytes, Uint16Array)), shape, 'int32');
    case 'I8':
      return tf.tensor(Int32Array.from(view(bytes, Int8Array)), shape, 'int32');
    case 'U8':
      return tf.tensor(Int32Array.from(bytes), shape, 'int32');
    case 'BOOL':
      return tf.tensor(Int32Array.from(bytes, (b) => (b !== 0 ? 1 : 0)), shape, 'int32');
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/** Where the bytes of an open file come from: memory, or a file read on demand. */
interface ByteSource {
  /** A fresh copy of `length` bytes at absolute `offset`. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** The minimal part of a Node `FileHandle` this module uses (kept local so browser builds need no Node types). */
interface FileHandleLike {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<{ size: number; isFile(): boolean }>;
  close(): Promise<void>;
}

/** Reads exactly `length` bytes at `position` (a file can return fewer per call). */
async function readFully(handle: FileHandleLike, length: number, position: number, label: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(out, done, length - done, position + done);
    if (bytesRead === 0) {
      const message = `file ended at byte ${position + done}, expected ${length} bytes at ${position} (was it truncated after opening?)`;
      throw formatError(label, [{ name: 'data', message, expected: position + length, found: position + done }]);
    }
    done += bytesRead;
  }
  return out;
}

/**
 * A safetensors file whose header has been read and fully validated; tensors are read one at a time, on
 * demand. Opened with {@link SafetensorsFile.fromFile} (Node: only the header is read up front, so multi-GB
 * checkpoints never sit in memory at once), {@link SafetensorsFile.fromBuffer}, or
 * {@link SafetensorsFile.fromUrl} / {@link SafetensorsFile.fromResponse} (browser).
 *
 * Every malformed file fails at open time with a {@link CheckpointError} whose `problems` (kind `format`) say
 * what is wrong and with which tensor.
 *
 * @example
 * ```ts
 * import { SafetensorsFile } from '@slmkit/core';
 * const file = await SafetensorsFile.fromFile('model.safetensors');
 * for (const name of file.names()) console.log(name, file.dtype(name), file.shape(name));
 * const w = await file.read('model.embed_tokens.weight'); // [vocab, hidden], float32
 * w.dispose();
 * await file.close();
 * ```
 */
export class SafetensorsFile implements WeightSource {
  /** The `__metadata__` map of the header (empty when the file has none). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Size of the whole file in bytes. */
  readonly byteLength: number;
  /** How error messages refer to this file (its path, URL, or the `name` option). */
  readonly label: string;

  private readonly tensors: Map<string, SafetensorsTensorInfo>;
  private readonly dataStart: number;
  private source: ByteSource | undefined;

  private constructor(label: string, byteLength: number, dataStart: number, header: ParsedHeader, source: ByteSource) {
    this.label = label;
    this.byteLength = byteLength;
    this.dataStart = dataStart;
    this.tensors = header.tensors;
    this.metadata = Object.freeze({ ...header.metadata });
    this.source = source;
  }

  /**
   * Opens a safetensors file held in memory (browser or Node). The header is validated now; the bytes are not
   * copied, so do not modify them while the file is in use.
   *
   * @throws {@link CheckpointError} (kind `format`) if the file is malformed.
   * @example
   * ```ts
   * import { SafetensorsFile } from '@slmkit/core';
   * const bytes = new Uint8Array(await (await fetch('/model.safetensors')).arrayBuffer());
   * const file = SafetensorsFile.fromBuffer(bytes);
   * console.log(file.names().length);
   * ```
   */
  static fromBuffer(data: ArrayBuffer | Uint8Array, options: SafetensorsOpenOptions = {}): SafetensorsFile {
    let bytes: Uint8Array;
    if (data instanceof Uint8Array) bytes = data;
    else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else {
      throw new ConfigError(`SafetensorsFile.fromBuffer: expected an ArrayBuffer or Uint8Array, found ${kindOf(data)}`, {
        field: 'data',
        expected: 'ArrayBuffer | Uint8Array',
        found: kindOf(data),
      });
    }
    const label = options.name ?? 'safetensors buffer';
    const n = readHeaderLength(bytes.subarray(0, 8), bytes.length, label);
    const header = parseHeader(bytes.subarray(8, 8 + n), bytes.length - 8 - n, label);
    const source: ByteSource = {
      // A copy (`new Uint8Array(view)`), not `bytes.slice`: on a Node Buffer, slice is a view into shared memory.
      read: async (offset, length) => new Uint8Array(bytes.subarray(offset, offset + length)),
      close: async () => {},
    };
    return new SafetensorsFile(label, bytes.length, 8 + n, header, source);
  }

  /**
   * Opens a safetensors file on disk (Node only). Reads and validates only the header now; each
   * {@link SafetensorsFile.read} reads that tensor's bytes at its offset. Call {@link SafetensorsFile.close}
   * when done to release the file handle.
   *
   * @throws {@link CheckpointError} if the file cannot be opened (kind `missing`) or is malformed (kind `format`).
   * @example
   * ```ts
   * import { SafetensorsFile } from '@slmkit/core';
   * const file = await SafetensorsFile.fromFile('/models/llama/model.safetensors');
   * try {
   *   const norm = await file.read('model.norm.weight'); // [hidden]
   *   norm.print();
   *   norm.dispose();
   * } finally {
   *   await file.close();
   * }
   * ```
   */
  static async fromFile(path: string, options: SafetensorsOpenOptions = {}): Promise<SafetensorsFile> {
    const fs = await import('node:fs/promises');
    const label = options.name ?? path;
    let handle: FileHandleLike;
    try {
      handle = await fs.open(path, 'r');
    } catch (e) {
      const message = `cannot open ${path}: ${(e as Error).message}`;
      throw new CheckpointError(message, [{ kind: 'missing', name: path, message }], {
        field: 'path',
        expected: 'a readable safetensors file',
        found: path,
      });
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) {
        const message = `${path} is not a file`;
        throw new CheckpointError(message, [{ kind: 'missing', name: path, message }], { field: 'path', expected: 'a file', found: path });
      }
      const size = stat.size;
      const prefix = size >= 8 ? await readFully(handle, 8, 0, label) : new Uint8Array(8);
      const n = readHeaderLength(prefix, size, label); // validated before the header buffer is allocated
      const header = parseHeader(await readFully(handle, n, 8, label), size - 8 - n, label);
      const file = handle;
      const source: ByteSource = {
        read: (offset, length) => readFully(file, length, offset, label),
        close: () => file.close(),
      };
      return new SafetensorsFile(label, size, 8 + n, header, source);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /**
   * Opens a safetensors file from a `fetch` response (browser or Node), reading its whole body.
   *
   * @throws {@link CheckpointError} if the response is not OK (kind `missing`) or the file is malformed.
   * @example
   * ```ts
   * import { SafetensorsFile } from '@slmkit/core';
   * const file = await SafetensorsFile.fromResponse(await fetch('/models/tiny/model.safetensors'));
   * console.log(file.metadata); // { format: "pt" }
   * ```
   */
  static async fromResponse(response: Response, options: SafetensorsOpenOptions = {}): Promise<SafetensorsFile> {
    const label = options.name ?? (response.url || 'safetensors response');
    if (!response.ok) {
      const message = `cannot fetch ${label}: HTTP ${response.status} ${response.statusText}`.trimEnd();
      throw new CheckpointError(message, [{ kind: 'missing', name: label, message }], {
        field: 'response.status',
        expected: '200-299',
        found: response.status,
      });
    }
    return SafetensorsFile.fromBuffer(await response.arrayBuffer(), { name: label });
  }

  /**
   * Fetches a safetensors file and opens it (the whole body is downloaded; see
   * {@link SafetensorsFile.fromResponse}). `fetchFn` replaces the global `fetch`, e.g. to add headers.
   *
   * @example
   * ```ts
   * import { SafetensorsFile } from '@slmkit/core';
   * const file = await SafetensorsFile.fromUrl('https://example.com/tiny/model.safetensors');
   * console.log(file.names());
   * ```
   */
  static async fromUrl(
    url: string | URL,
    options: SafetensorsOpenOptions & { fetch?: typeof fetch } = {},
  ): Promise<SafetensorsFile> {
    const fetchFn = options.fetch ?? fetch;
    let response: Response;
    try {
      response = await fetchFn(url);
    } catch (e) {
      const message = `cannot fetch ${url}: ${(e as Error).message}`;
      throw new CheckpointError(message, [{ kind: 'missing', name: String(url), message }], {
        field: 'url',
        expected: 'a reachable URL',
        found: String(url),
      });
    }
    return SafetensorsFile.fromResponse(response, { name: options.name ?? String(url) });
  }

  /** Every tensor name, in the order of their data in the file. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  /** Whether the file holds a tensor of this name. */
  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /**
   * The header entry of one tensor: dtype, shape and byte range.
   *
   * @throws {@link CheckpointError} (kind `missing`) if there is no such tensor.
   */
  info(name: string): SafetensorsTensorInfo {
    const info = this.tensors.get(name);
    if (info == null) {
      const message = `tensor "${name}" is not in ${this.label}`;
      throw new CheckpointError(message, [{ kind: 'missing', name, message }], { field: name, expected: 'a tensor name of the file', found: name });
    }
    return { dtype: info.dtype, shape: info.shape.slice(), dataOffsets: [info.dataOffsets[0], info.dataOffsets[1]] };
  }

  /** The shape of a tensor, without reading its data. */
  shape(name: string): number[] {
    return this.info(name).shape;
  }

  /** The dtype a tensor is stored in (its tf tensor is float32 or int32; see {@link SafetensorsDtype}). */
  dtype(name: string): SafetensorsDtype {
    return this.info(name).dtype;
  }

  /**
   * Reads one tensor: float dtypes as `float32`, integer dtypes and BOOL as `int32`. The caller owns (and
   * disposes) the result.
   *
   * @throws {@link CheckpointError} if there is no such tensor, the file is closed, or a 64-bit integer does not
   * fit in int32 (kind `dtype`).
   */
  async read(name: string): Promise<tf.Tensor> {
    const info = this.info(name);
    if (this.source == null) {
      throw new CheckpointError(`cannot read tensor "${name}": ${this.label} is closed`, [], {
        field: name,
        expected: 'an open file',
        found: 'closed',
      });
    }
    const [begin, end] = info.dataOffsets;
    const bytes = await this.source.read(this.dataStart + begin, end - begin);
    return decode(bytes, info, name, this.label);
  }

  /** Releases the file handle (or the buffer); later reads fail. Safe to call twice. */
  async close(): Promise<void> {
    const source = this.source;
    this.source = undefined;
    await source?.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

/**
 * Options of {@link serializeSafetensors} and {@link saveSafetensors}.
 *
 * @example
 * ```ts
 * import type { SafetensorsWriteOptions } from '@slmkit/core';
 * const options: SafetensorsWriteOptions = { dtype: 'BF16', metadata: { format: 'pt' } };
 * ```
 */
export interface SafetensorsWriteOptions {
  /** The `__metadata__` map written first in the header. */
  metadata?: Record<string, string>;
  /** How float32 tensors are stored (default `F32`); F16 and BF16 round to nearest, ties to even. */
  dtype?: 'F32' | 'F16' | 'BF16';
}

/** The order the Python library lays tensors out in: dtypes from widest to narrowest, then by name. */
const WRITE_ORDER: SafetensorsDtype[] = ['F32', 'I32', 'BF16', 'F16', 'BOOL'];

/** Which safetensors dtype a tf tensor is written as. */
function writeDtype(name: string, t: tf.Tensor, floatDtype: 'F32' | 'F16' | 'BF16'): SafetensorsDtype {
  if (t.dtype === 'float32') return floatDtype;
  if (t.dtype === 'int32') return 'I32';
  if (t.dtype === 'bool') return 'BOOL';
  throw new ConfigError(`tensor "${name}": cannot write dtype ${t.dtype} to safetensors`, {
    field: name,
    expected: 'float32, int32 or bool',
    found: t.dtype,
  });
}

/** The little-endian bytes of one tensor's values in `dtype`. */
function encode(values: ArrayLike<number>, dtype: SafetensorsDtype): Uint8Array {
  let typed: Float32Array | Int32Array | Uint16Array | Uint8Array;
  if (dtype === 'F32') typed = Float32Array.from(values);
  else if (dtype === 'I32') typed = Int32Array.from(values);
  else if (dtype === 'F16') typed = Uint16Array.from(values, float32ToFloat16Bits);
  else if (dtype === 'BF16') typed = Uint16Array.from(values, float32ToBfloat16Bits);
  else typed = Uint8Array.from(values, (v) => (v !== 0 ? 1 : 0));
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  swapBytes(bytes, typed.BYTES_PER_ELEMENT);
  return bytes;
}

/**
 * Writes tensors to the safetensors format in memory. The header lists `__metadata__` first, then the tensors
 * in data order (like the Python library: widest dtype first, then by name), padded with spaces to a multiple of
 * 8 bytes. float32 tensors are stored as `options.dtype` (default F32), int32 as I32, bool as BOOL. The tensors
 * are not disposed.
 *
 * @throws {@link ConfigError} for a tensor named `__metadata__`, a tensor of another dtype, bad metadata or a bad
 * `dtype` option.
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { serializeSafetensors, SafetensorsFile } from '@slmkit/core';
 * const w = tf.ones([2, 3]);
 * const bytes = await serializeSafetensors({ weight: w }, { dtype: 'F16', metadata: { format: 'pt' } });
 * const file = SafetensorsFile.fromBuffer(bytes);
 * console.log(file.dtype('weight'), file.shape('weight')); // "F16" [2, 3]
 * w.dispose();
 * ```
 */
export async function serializeSafetensors(
  tensors: Record<string, tf.Tensor> | Map<string, tf.Tensor>,
  options: SafetensorsWriteOptions = {},
): Promise<Uint8Array> {
  const floatDtype = options.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(floatDtype)) {
    throw new ConfigError(`serializeSafetensors: dtype must be F32, F16 or BF16, found ${show(floatDtype)}`, {
      field: 'dtype',
      expected: ['F32', 'F16', 'BF16'],
      found: floatDtype,
    });
  }
  if (options.metadata != null) {
    const issues: FormatIssue[] = [];
    checkMetadata(options.metadata, issues);
    if (issues.length > 0) {
      throw new ConfigError(`serializeSafetensors: ${issues[0]!.message}`, { field: 'metadata', expected: issues[0]!.expected, found: issues[0]!.found });
    }
  }
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const planned = entries.map(([name, tensor]) => {
    if (name === '__metadata__') {
      throw new ConfigError('serializeSafetensors: "__metadata__" is reserved and cannot name a tensor', {
        field: 'name',
        expected: 'any name but __metadata__',
        found: name,
      });
    }
    const dtype = writeDtype(name, tensor, floatDtype);
    return { name, tensor, dtype, byteLength: tensor.size * DTYPE_SIZE[dtype] };
  });
  planned.sort((a, b) => WRITE_ORDER.indexOf(a.dtype) - WRITE_ORDER.indexOf(b.dtype) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  // Built entry by entry: a JS object would move integer-like names ("0") to the front.
  const fields: string[] = [];
  if (options.metadata != null) fields.push(`"__metadata__":${JSON.stringify(options.metadata)}`);
  let offset = 0;
  for (const p of planned) {
    const entry = { dtype: p.dtype, shape: p.tensor.shape, data_offsets: [offset, offset + p.byteLength] };
    fields.push(`${JSON.stringify(p.name)}:${JSON.stringify(entry)}`);
    offset += p.byteLength;
  }
  const json = new TextEncoder().encode(`{${fields.join(',')}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.fill(0x20, 8, 8 + headerLength); // pad with spaces
  out.set(json, 8);
  let position = 8 + headerLength;
  for (const p of planned) {
    out.set(encode(await p.tensor.data(), p.dtype), position);
    position += p.byteLength;
  }
  return out;
}

/**
 * Writes tensors to a safetensors file (Node only); see {@link serializeSafetensors} for the layout and options.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { saveSafetensors } from '@slmkit/core';
 * const bias = tf.zeros([8]);
 * await saveSafetensors('/tmp/bias.safetensors', { 'layer.bias': bias }, { metadata: { format: 'pt' } });
 * bias.dispose();
 * ```
 */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, tf.Tensor> | Map<string, tf.Tensor>,
  options: SafetensorsWriteOptions = {},
): Promise<void> {
  const bytes = await serializeSafetensors(tensors, options);
  const fs = await import('node:fs/promises');
  await fs.writeFile(path, bytes);
}
