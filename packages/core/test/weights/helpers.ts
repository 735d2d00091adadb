// Test helpers for the weights tests: an independent, minimal safetensors parser and builder using plain Buffer
// operations (deliberately sharing no code with src/weights).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RawEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export interface RawFile {
  headerLength: number;
  entries: Record<string, RawEntry>;
  metadata: Record<string, string> | undefined;
}

/** Reads the header of a well-formed safetensors file. */
export function rawHeader(buf: Buffer): RawFile {
  const headerLength = Number(buf.readBigUInt64LE(0));
  const json = JSON.parse(buf.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, unknown>;
  const { __metadata__: metadata, ...entries } = json;
  return { headerLength, entries: entries as Record<string, RawEntry>, metadata: metadata as Record<string, string> | undefined };
}

/** The float64 sum of an F32 tensor's values, read straight from the bytes. */
export function rawF32Sum(buf: Buffer, file: RawFile, name: string): number {
  const [begin, end] = file.entries[name]!.data_offsets;
  const start = 8 + file.headerLength;
  let sum = 0;
  for (let p = start + begin; p < start + end; p += 4) sum += buf.readFloatLE(p);
  return sum;
}

/**
 * Builds a safetensors file from a header (an object, serialised as is, or a raw string) and data bytes. The
 * header length prefix can be overridden to make malformed files.
 */
export function buildFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLength ?? BigInt(json.length));
  return Buffer.concat([prefix, json, Buffer.from(data)]);
}

/** Little-endian bytes of 16-bit patterns. */
export function u16Bytes(values: number[]): Uint8Array {
  const buf = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => buf.writeUInt16LE(v, i * 2));
  return buf;
}

/** Little-endian bytes of float32 values. */
export function f32Bytes(values: number[]): Uint8Array {
  const buf = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf;
}

/** The 16-bit words of a byte range, little-endian. */
export function readU16(bytes: Uint8Array, begin: number, count: number): number[] {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: count }, (_, i) => buf.readUInt16LE(begin + 2 * i));
}

/** A float32 value from its bit pattern. */
export function fromBits(bits: number): number {
  const buf = Buffer.alloc(4);
  buf.writeUInt32LE(bits >>> 0);
  return buf.readFloatLE(0);
}

/** A fresh temporary folder. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'slmkit-weights-'));
}

/** Asserts that `fn` throws (or rejects with) an error, and returns it. */
export async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error, none was thrown');
}
