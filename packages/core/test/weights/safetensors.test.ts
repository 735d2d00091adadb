import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { readFileSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { caseDir, listAdapterCases, listCases } from '@slmkit/fixtures';
import { CheckpointError, ConfigError } from '../../src/errors.js';
import { SafetensorsFile, saveSafetensors, serializeSafetensors } from '../../src/weights/safetensors.js';
import { buildFile, caught, f32Bytes, fromBits, rawF32Sum, rawHeader, readU16, tempDir, u16Bytes } from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const fixtureFiles = [
  ...listCases().map((c) => join(caseDir(c), 'model.safetensors')),
  ...listAdapterCases().map((c) => join(caseDir(c), 'adapter_model.safetensors')),
];

function float64Sum(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return s;
}

describe('SafetensorsFile on the fixtures', () => {
  it('finds every fixture file', () => {
    expect(fixtureFiles.length).toBe(listCases().length + listAdapterCases().length);
    expect(fixtureFiles.length).toBeGreaterThanOrEqual(20);
  });

  for (const path of fixtureFiles) {
    const short = path.split('/').slice(-2).join('/');
    for (const how of ['fromFile', 'fromBuffer'] as const) {
      it(`${short} opens via ${how} with the right names, shapes and data`, async () => {
        const buf = readFileSync(path);
        const raw = rawHeader(buf);
        const file = how === 'fromFile' ? await SafetensorsFile.fromFile(path) : SafetensorsFile.fromBuffer(buf);
        const before = tf.memory().numTensors;
        try {
          const rawNames = Object.keys(raw.entries);
          expect([...file.names()].sort()).toEqual([...rawNames].sort());
          for (const name of rawNames) {
            expect(file.shape(name)).toEqual(raw.entries[name]!.shape);
            expect(file.dtype(name)).toBe(raw.entries[name]!.dtype);
          }
          expect(file.metadata).toEqual(raw.metadata ?? {});
          expect(file.byteLength).toBe(buf.length);

          const picks = [rawNames[0]!, rawNames[Math.floor(rawNames.length / 2)]!, rawNames[rawNames.length - 1]!];
          for (const name of picks) {
            const t = await file.read(name);
            expect(t.dtype).toBe('float32');
            expect(t.shape).toEqual(raw.entries[name]!.shape);
            const values = await t.data();
            const got = float64Sum(values);
            const scale = float64Sum(Array.from(values, Math.abs));
            const want = rawF32Sum(buf, raw, name);
            expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-5 * Math.max(Math.abs(want), scale * 1e-3, 1e-12));
            t.dispose();
          }
        } finally {
          await file.close();
        }
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }

  it('leaves no tensors behind after reading and disposing every tensor', async () => {
    const file = await SafetensorsFile.fromFile(fixtureFiles[0]!);
    const before = tf.memory().numTensors;
    for (const name of file.names()) (await file.read(name)).dispose();
    expect(tf.memory().numTensors).toBe(before);
    await file.close();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Malformed files

/** A small valid file: two F32 tensors covering 16 data bytes. */
function validHeader(): Record<string, any> {
  return {
    __metadata__: { format: 'pt' },
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    b: { dtype: 'F32', shape: [1, 2], data_offsets: [8, 16] },
  };
}
const validData = f32Bytes([1, 2, 3, 4]);

function withHeader(mutate: (h: Record<string, any>) => void, data: Uint8Array = validData): Buffer {
  const h = validHeader();
  mutate(h);
  return buildFile(h, data);
}

function withLength(length: bigint): Buffer {
  const buf = buildFile(validHeader(), validData);
  buf.writeBigUInt64LE(length, 0);
  return buf;
}

interface MalformedCase {
  what: string;
  bytes: () => Uint8Array;
  message: RegExp;
  name: string;
}

const malformed: MalformedCase[] = [
  { what: 'file shorter than 8 bytes', bytes: () => buildFile(validHeader(), validData).subarray(0, 5), message: /5 bytes, shorter than the 8-byte header length prefix/, name: 'header length' },
  { what: 'empty file', bytes: () => new Uint8Array(0), message: /0 bytes, shorter than the 8-byte/, name: 'header length' },
  { what: 'header length past the end', bytes: () => withLength(10_000n), message: /header length 10000 is larger than the \d+ bytes after the 8-byte prefix/, name: 'header length' },
  { what: 'header length beyond 2^53', bytes: () => withLength(2n ** 53n + 1n), message: /header length 9007199254740993 is larger than/, name: 'header length' },
  { what: 'header length 2^64 - 1', bytes: () => withLength(2n ** 64n - 1n), message: /header length 18446744073709551615 is larger than/, name: 'header length' },
  { what: 'header not UTF-8', bytes: () => buildFile('{"a":"xyz"}', validData).fill(0xff, 14, 17), message: /header is not valid UTF-8/, name: 'header' },
  { what: 'header not JSON', bytes: () => buildFile('{"a": {"dtype": ', validData), message: /header is not valid JSON/, name: 'header' },
  { what: 'zero-length header', bytes: () => buildFile('', validData), message: /header is not valid JSON/, name: 'header' },
  { what: 'header an array', bytes: () => buildFile('[1, 2]', validData), message: /header must be a JSON object, found an array/, name: 'header' },
  { what: 'header null', bytes: () => buildFile('null', validData), message: /header must be a JSON object, found null/, name: 'header' },
  { what: 'entry not an object', bytes: () => withHeader((h) => (h.a = 5)), message: /tensor "a": entry must be an object with dtype, shape and data_offsets, found a number/, name: 'a' },
  { what: 'missing dtype', bytes: () => withHeader((h) => delete h.a.dtype), message: /tensor "a": missing field "dtype"/, name: 'a' },
  { what: 'missing shape', bytes: () => withHeader((h) => delete h.b.shape), message: /tensor "b": missing field "shape"/, name: 'b' },
  { what: 'missing data_offsets', bytes: () => withHeader((h) => delete h.a.data_offsets), message: /tensor "a": missing field "data_offsets"/, name: 'a' },
  { what: 'unknown dtype', bytes: () => withHeader((h) => (h.a.dtype = 'F7')), message: /tensor "a": unknown dtype "F7" \(supported: F64, F32/, name: 'a' },
  { what: 'dtype not a string', bytes: () => withHeader((h) => (h.a.dtype = 4)), message: /tensor "a": unknown dtype 4/, name: 'a' },
  { what: 'negative dimension', bytes: () => withHeader((h) => (h.a.shape = [-2])), message: /tensor "a": shape must be an array of non-negative integers, found \[-2\]/, name: 'a' },
  { what: 'fractional dimension', bytes: () => withHeader((h) => (h.a.shape = [1.5])), message: /tensor "a": shape must be .*found \[1.5\]/, name: 'a' },
  { what: 'shape not an array', bytes: () => withHeader((h) => (h.a.shape = '2')), message: /tensor "a": shape must be .*found "2"/, name: 'a' },
  { what: 'data_offsets reversed', bytes: () => withHeader((h) => (h.b.data_offsets = [16, 8])), message: /tensor "b": data_offsets must be two non-negative integers \[begin, end\] with begin <= end, found \[16,8\]/, name: 'b' },
  { what: 'data_offsets of three', bytes: () => withHeader((h) => (h.b.data_offsets = [8, 16, 24])), message: /tensor "b": data_offsets must be two/, name: 'b' },
  { what: 'data_offsets negative', bytes: () => withHeader((h) => (h.a.data_offsets = [-8, 0])), message: /tensor "a": data_offsets must be two/, name: 'a' },
  { what: 'end past the data', bytes: () => withHeader((h) => (h.b = { dtype: 'F32', shape: [4], data_offsets: [8, 24] })), message: /tensor "b": data_offsets end 24 is past the end of the data section \(16 bytes\)/, name: 'b' },
  { what: 'byte count mismatch', bytes: () => withHeader((h) => (h.a.shape = [3])), message: /tensor "a": data_offsets \[0, 8\] span 8 bytes, but shape \[3\] of F32 needs 12/, name: 'a' },
  { what: 'byte count mismatch (dtype)', bytes: () => withHeader((h) => (h.a.dtype = 'F16')), message: /tensor "a": .*span 8 bytes, but shape \[2\] of F16 needs 4/, name: 'a' },
  {
    what: 'overlapping tensors',
    bytes: () => withHeader((h) => (h.b = { dtype: 'F32', shape: [3], data_offsets: [4, 16] })),
    message: /tensors "a" and "b" overlap: "b" starts at byte 4, before "a" ends at 8/,
    name: 'b',
  },
  {
    what: 'hole between tensors',
    bytes: () => withHeader((h) => (h.a = { dtype: 'F32', shape: [1], data_offsets: [0, 4] })),
    message: /hole in the data section: bytes \[4, 8\) before tensor "b" belong to no tensor/,
    name: 'b',
  },
  {
    what: 'hole at the end',
    bytes: () => withHeader(() => {}, f32Bytes([1, 2, 3, 4, 5])),
    message: /hole in the data section: bytes \[16, 20\) at its end belong to no tensor/,
    name: 'b',
  },
  { what: 'metadata not strings', bytes: () => withHeader((h) => (h.__metadata__ = { format: 1 })), message: /__metadata__ must be a map of strings to strings, found key "format" holding a number/, name: '__metadata__' },
  { what: 'metadata an array', bytes: () => withHeader((h) => (h.__metadata__ = ['pt'])), message: /__metadata__ must be a map of strings to strings, found an array/, name: '__metadata__' },
];

describe('malformed safetensors', () => {
  it('the base file is valid', async () => {
    const file = SafetensorsFile.fromBuffer(buildFile(validHeader(), validData));
    expect(file.names()).toEqual(['a', 'b']);
    const b = await file.read('b');
    expect(Array.from(await b.data())).toEqual([3, 4]);
    b.dispose();
  });

  it.each(malformed)('$what', ({ bytes, message, name }) => {
    let error: unknown;
    try {
      SafetensorsFile.fromBuffer(bytes());
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CheckpointError);
    const e = error as CheckpointError;
    expect(e.message).toMatch(/^invalid safetensors file safetensors buffer: /);
    expect(e.message).toMatch(message);
    expect(e.problems[0]!.kind).toBe('format');
    expect(e.problems[0]!.name).toBe(name);
    expect(e.problems[0]!.message).toMatch(message);
    expect(e.details.field).toBe(name);
  });

  it('lists every broken tensor at once', () => {
    const bytes = withHeader((h) => {
      h.a.dtype = 'X';
      h.b.shape = [-1];
    });
    const e = (() => {
      try {
        SafetensorsFile.fromBuffer(bytes);
      } catch (err) {
        return err as CheckpointError;
      }
      throw new Error('no error');
    })();
    expect(e.problems.map((p) => p.name)).toEqual(['a', 'b']);
    expect(e.message).toMatch(/2 problems:\n {2}- tensor "a": unknown dtype "X".*\n {2}- tensor "b": shape/);
  });

  it('reports malformed files opened with fromFile, naming the path', async () => {
    const dir = tempDir();
    const cases: [string, Uint8Array, RegExp][] = [
      ['short.safetensors', new Uint8Array([1, 2, 3]), /3 bytes, shorter than the 8-byte/],
      ['absurd.safetensors', withLength(2n ** 64n - 1n), /header length 18446744073709551615 is larger than the \d+ bytes/],
      ['huge.safetensors', withLength(2n ** 40n), /header length 1099511627776 is larger than/],
      ['dtype.safetensors', withHeader((h) => (h.b.dtype = 'Q4')), /tensor "b": unknown dtype "Q4"/],
      ['hole.safetensors', withHeader(() => {}, f32Bytes([1, 2, 3, 4, 5])), /bytes \[16, 20\) at its end/],
    ];
    for (const [name, bytes, message] of cases) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      // The header length is checked against the file size before anything is allocated: an absurd length fails
      // with its own message (a huge allocation or a hang would fail the test by its error or its timeout instead).
      const e = await caught(() => SafetensorsFile.fromFile(path));
      expect(e).toBeInstanceOf(CheckpointError);
      expect((e as CheckpointError).message).toContain(path);
      expect((e as CheckpointError).message).toMatch(message);
      expect((e as CheckpointError).problems[0]!.kind).toBe('format');
    }
  });

  it('reports a missing file and a folder as kind missing', async () => {
    const dir = tempDir();
    for (const path of [join(dir, 'nope.safetensors'), dir]) {
      const e = (await caught(() => SafetensorsFile.fromFile(path))) as CheckpointError;
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e.message).toContain(path);
      expect(e.problems[0]!.kind).toBe('missing');
    }
  });

  it('fails a read of an unknown name or after close', async () => {
    const file = SafetensorsFile.fromBuffer(buildFile(validHeader(), validData));
    const unknown = (await caught(() => file.read('c'))) as CheckpointError;
    expect(unknown).toBeInstanceOf(CheckpointError);
    expect(unknown.message).toMatch(/tensor "c" is not in safetensors buffer/);
    expect(unknown.problems[0]!.kind).toBe('missing');
    expect(() => file.shape('c')).toThrow(CheckpointError);
    await file.close();
    await file.close();
    await expect(file.read('a')).rejects.toThrow(/is closed/);
  });

  it('rejects a non-buffer argument with a ConfigError', () => {
    expect(() => SafetensorsFile.fromBuffer('abc' as unknown as Uint8Array)).toThrow(ConfigError);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Reading dtypes

describe('reading dtypes', () => {
  function i64Bytes(values: bigint[]): Uint8Array {
    const buf = Buffer.alloc(values.length * 8);
    values.forEach((v, i) => buf.writeBigInt64LE(v, i * 8));
    return buf;
  }

  it('reads integers, bools and F64 with the right tf dtype and values', async () => {
    const parts: [string, string, number[], Uint8Array][] = [];
    const add = (name: string, dtype: string, shape: number[], bytes: Uint8Array) => parts.push([name, dtype, shape, bytes]);
    const f64 = Buffer.alloc(16);
    f64.writeDoubleLE(0.1, 0);
    f64.writeDoubleLE(-1e300, 8);
    add('f64', 'F64', [2], f64);
    add('i64', 'I64', [3], i64Bytes([0n, -5n, 2147483647n]));
    add('u64', 'U64', [1], i64Bytes([2147483647n]));
    const i32 = Buffer.alloc(8);
    i32.writeInt32LE(-2147483648, 0);
    i32.writeInt32LE(7, 4);
    add('i32', 'I32', [2], i32);
    const u32 = Buffer.alloc(4);
    u32.writeUInt32LE(123456);
    add('u32', 'U32', [1], u32);
    const i16 = Buffer.alloc(4);
    i16.writeInt16LE(-300, 0);
    i16.writeInt16LE(300, 2);
    add('i16', 'I16', [2], i16);
    add('u16', 'U16', [2], u16Bytes([65535, 1]));
    add('i8', 'I8', [2], new Uint8Array([0xff, 0x7f]));
    add('u8', 'U8', [2], new Uint8Array([0xff, 0x7f]));
    add('bool', 'BOOL', [3], new Uint8Array([1, 0, 1]));
    const header: Record<string, unknown> = {};
    let offset = 0;
    for (const [name, dtype, shape, bytes] of parts) {
      header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.length] };
      offset += bytes.length;
    }
    const file = SafetensorsFile.fromBuffer(buildFile(header, Buffer.concat(parts.map((p) => p[3]))));
    const want: Record<string, [string, number[]]> = {
      f64: ['float32', [Math.fround(0.1), -Infinity]],
      i64: ['int32', [0, -5, 2147483647]],
      u64: ['int32', [2147483647]],
      i32: ['int32', [-2147483648, 7]],
      u32: ['int32', [123456]],
      i16: ['int32', [-300, 300]],
      u16: ['int32', [65535, 1]],
      i8: ['int32', [-1, 127]],
      u8: ['int32', [255, 127]],
      bool: ['int32', [1, 0, 1]],
    };
    const before = tf.memory().numTensors;
    for (const [name, [dtype, values]] of Object.entries(want)) {
      const t = await file.read(name);
      expect(t.dtype, name).toBe(dtype);
      expect(Array.from(await t.data()), name).toEqual(values);
      t.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('fails reading 64-bit integers outside int32, naming the tensor and value', async () => {
    for (const [dtype, value] of [
      ['I64', 2147483648n],
      ['I64', -2147483649n],
      ['I64', -(2n ** 62n)],
      ['U64', 2n ** 63n + 5n],
    ] as const) {
      const bytes = dtype === 'U64' ? (() => { const b = Buffer.alloc(16); b.writeBigUInt64LE(value, 8); return b; })() : i64Bytes([1n, value]);
      const file = SafetensorsFile.fromBuffer(buildFile({ ids: { dtype, shape: [2], data_offsets: [0, 16] } }, bytes));
      const e = (await caught(() => file.read('ids'))) as CheckpointError;
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e.message).toContain(`tensor "ids" (${dtype}): value ${value} at flat index 1 does not fit in int32`);
      expect(e.problems[0]).toMatchObject({ kind: 'dtype', name: 'ids' });
    }
    const u32 = Buffer.alloc(4);
    u32.writeUInt32LE(4000000000);
    const file = SafetensorsFile.fromBuffer(buildFile({ n: { dtype: 'U32', shape: [], data_offsets: [0, 4] } }, u32));
    await expect(file.read('n')).rejects.toThrow(/value 4000000000 at flat index 0 does not fit in int32/);
  });

  it('decodes F16 and BF16 bit patterns exactly', async () => {
    const f16 = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x7e00, 0x0000, 0x8000, 0x3555];
    const bf16 = [0x3f80, 0xc000, 0x7f7f, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x4049];
    const file = SafetensorsFile.fromBuffer(
      buildFile(
        {
          h: { dtype: 'F16', shape: [f16.length], data_offsets: [0, 2 * f16.length] },
          b: { dtype: 'BF16', shape: [bf16.length], data_offsets: [2 * f16.length, 2 * (f16.length + bf16.length)] },
        },
        u16Bytes([...f16, ...bf16]),
      ),
    );
    const h = await file.read('h');
    expect(h.dtype).toBe('float32');
    expect(Array.from(await h.data())).toEqual([
      1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, Infinity, -Infinity, NaN, 0, -0, Math.fround(0.333251953125),
    ]);
    const b = await file.read('b');
    expect(Array.from(await b.data())).toEqual([
      1, -2, fromBits(0x7f7f0000), fromBits(0x00010000), Infinity, -Infinity, NaN, -0, fromBits(0x40490000),
    ]);
    tf.dispose([h, b]);
  });

  it('reads from any byte alignment (odd header length)', async () => {
    const header = JSON.stringify({ x: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, y: { dtype: 'F16', shape: [1], data_offsets: [16, 18] } });
    const odd = header.length % 2 === 1 ? header : `${header} `;
    const bytes = buildFile(odd, Buffer.concat([f32Bytes([1.5, -2.25, 3, 4]), u16Bytes([0x3c00])]));
    // Put the file at an odd offset inside a bigger buffer, too.
    const outer = new Uint8Array(bytes.length + 3);
    outer.set(bytes, 3);
    const file = SafetensorsFile.fromBuffer(outer.subarray(3));
    const x = await file.read('x');
    expect(x.shape).toEqual([2, 2]);
    expect(Array.from(await x.data())).toEqual([1.5, -2.25, 3, 4]);
    const y = await file.read('y');
    expect(Array.from(await y.data())).toEqual([1]);
    tf.dispose([x, y]);
  });

  it('fromFile reads only what it needs, at offsets past 4 GiB (sparse file)', async () => {
    const big = 5 * 2 ** 30; // 5 GiB of zeros the test never reads
    const header = { big: { dtype: 'U8', shape: [big], data_offsets: [0, big] }, tail: { dtype: 'F32', shape: [2], data_offsets: [big, big + 8] } };
    const head = buildFile(header);
    const path = join(tempDir(), 'sparse.safetensors');
    writeFileSync(path, head);
    truncateSync(path, head.length + big); // a hole: no disk used
    const tail = Buffer.from(f32Bytes([6.5, -7]));
    const fd = await import('node:fs/promises').then((fs) => fs.open(path, 'r+'));
    await fd.write(tail, 0, tail.length, head.length + big);
    await fd.close();
    try {
      const file = await SafetensorsFile.fromFile(path);
      expect(file.byteLength).toBe(head.length + big + 8);
      expect(file.shape('big')).toEqual([big]);
      const t = await file.read('tail');
      expect(Array.from(await t.data())).toEqual([6.5, -7]);
      t.dispose();
      await file.close();
    } finally {
      unlinkSync(path);
    }
  });

  it('copies bytes out of a Buffer, so later writes to it do not change read tensors', async () => {
    const bytes = buildFile(validHeader(), validData);
    const file = SafetensorsFile.fromBuffer(bytes);
    const a = await file.read('a');
    bytes.fill(0);
    expect(Array.from(await a.data())).toEqual([1, 2]);
    a.dispose();
  });

  it('opens from an ArrayBuffer and from a fetch Response', async () => {
    const bytes = buildFile(validHeader(), validData);
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    expect(SafetensorsFile.fromBuffer(ab).names()).toEqual(['a', 'b']);
    const fromResponse = await SafetensorsFile.fromResponse(new Response(new Uint8Array(bytes)), { name: 'remote' });
    expect(fromResponse.label).toBe('remote');
    expect(fromResponse.metadata).toEqual({ format: 'pt' });
    const fakeFetch = (async (input: RequestInfo | URL) =>
      String(input).endsWith('/ok.safetensors') ? new Response(new Uint8Array(bytes)) : new Response('nope', { status: 404 })) as typeof fetch;
    const ok = await SafetensorsFile.fromUrl('https://example.test/ok.safetensors', { fetch: fakeFetch });
    expect(ok.shape('b')).toEqual([1, 2]);
    const e = (await caught(() => SafetensorsFile.fromUrl('https://example.test/missing.safetensors', { fetch: fakeFetch }))) as CheckpointError;
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toMatch(/cannot fetch https:\/\/example.test\/missing.safetensors: HTTP 404/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Writing

describe('serializeSafetensors', () => {
  it('writes the layout of the Python library: sorted, metadata first, padded to 8 with spaces', async () => {
    const tensors = { 'z.weight': tf.ones([2, 3]), 'a.bias': tf.zeros([3]), ids: tf.tensor1d([1, 2], 'int32'), '10': tf.scalar(5) };
    const bytes = Buffer.from(await serializeSafetensors(tensors, { metadata: { format: 'pt', note: 'x' } }));
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = bytes.subarray(8, 8 + n).toString('utf8');
    expect(text).toMatch(/^\{"__metadata__":\{"format":"pt","note":"x"\},"10":/);
    expect(text.trimEnd().length).toBeGreaterThan(n - 8);
    expect(text.slice(text.trimEnd().length)).toMatch(/^ *$/);
    const raw = rawHeader(bytes);
    expect(Object.keys(raw.entries)).toEqual(['10', 'a.bias', 'z.weight', 'ids']); // F32 names sorted, then I32
    expect(raw.entries['a.bias']).toEqual({ dtype: 'F32', shape: [3], data_offsets: [4, 16] });
    expect(raw.entries.ids).toEqual({ dtype: 'I32', shape: [2], data_offsets: [40, 48] });
    expect(bytes.length).toBe(8 + n + 48);
    tf.dispose(Object.values(tensors));
  });

  it('round-trips F32 and I32 exactly, with metadata, empty tensors and scalars', async () => {
    const values = Array.from({ length: 60 }, (_, i) => Math.sin(i * 1.3) * 10 ** ((i % 9) - 4));
    const tensors = new Map<string, tf.Tensor>([
      ['w', tf.tensor(values, [3, 4, 5])],
      ['ids', tf.tensor([0, -1, 2147483647, -2147483648], [2, 2], 'int32')],
      ['empty', tf.zeros([0])],
      ['empty2', tf.zeros([2, 0, 3], 'int32')],
      ['scalar', tf.scalar(-3.5)],
      ['iscalar', tf.scalar(42, 'int32')],
      ['special', tf.tensor([Infinity, -Infinity, NaN, -0, 1e-45])],
    ]);
    const metadata = { format: 'pt', 'emoji ✓': 'ünïcode' };
    const bytes = await serializeSafetensors(tensors, { metadata });
    const file = SafetensorsFile.fromBuffer(bytes);
    expect(file.metadata).toEqual(metadata);
    expect(file.names().sort()).toEqual([...tensors.keys()].sort());
    const before = tf.memory().numTensors;
    for (const [name, t] of tensors) {
      const back = await file.read(name);
      expect(back.dtype, name).toBe(t.dtype);
      expect(back.shape, name).toEqual(t.shape);
      expect(Array.from(await back.data()), name).toEqual(Array.from(await t.data()));
      back.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(file.dtype('w')).toBe('F32');
    expect(file.dtype('ids')).toBe('I32');
    tf.dispose([...tensors.values()]);
  });

  it('round-trips F16 and BF16 to their precision', async () => {
    const values = Array.from({ length: 200 }, (_, i) => Math.cos(i * 0.77) * 2 ** ((i % 21) - 10));
    const t = tf.tensor(values);
    for (const [dtype, eps] of [['F16', 2 ** -11], ['BF16', 2 ** -8]] as const) {
      const file = SafetensorsFile.fromBuffer(await serializeSafetensors({ t }, { dtype }));
      expect(file.dtype('t')).toBe(dtype);
      const back = await file.read('t');
      const got = await back.data();
      values.forEach((v, i) => {
        expect(Math.abs(got[i]! - v), `${dtype} ${v}`).toBeLessThanOrEqual(Math.abs(v) * eps + 2 ** -25);
      });
      back.dispose();
    }
    t.dispose();
  });

  async function bitsOf(values: number[], dtype: 'F16' | 'BF16'): Promise<number[]> {
    const t = tf.tensor(values);
    const bytes = await serializeSafetensors({ t }, { dtype });
    t.dispose();
    const raw = rawHeader(Buffer.from(bytes));
    return readU16(bytes, 8 + raw.headerLength, values.length);
  }

  it('converts float32 to F16 bits with round-to-nearest-even', async () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [0, 0x0000],
      [-0, 0x8000],
      [65504, 0x7bff], // largest normal
      [65519, 0x7bff], // just below the halfway point to 65536
      [65520, 0x7c00], // halfway: ties to even, which is infinity
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway to the smallest subnormal: ties to even (0)
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // 1.5 subnormal units: ties to even (2)
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [2 ** -14 - 2 ** -25, 0x0400], // rounds up out of the subnormals
      [1 + 2 ** -11, 0x3c00], // tie between 0x3c00 and 0x3c01: even
      [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
      [Math.fround(1 / 3), 0x3555],
      [1e-8, 0x0000],
      [-1e-8, 0x8000],
    ];
    expect(await bitsOf(cases.map((c) => c[0]), 'F16')).toEqual(cases.map((c) => c[1]));
    const [nan] = await bitsOf([NaN], 'F16');
    expect(nan! & 0x7c00).toBe(0x7c00);
    expect(nan! & 0x03ff).not.toBe(0);
  });

  it('converts float32 to BF16 bits with round-to-nearest-even', async () => {
    const cases: [number, number][] = [
      [1, 0x3f80],
      [-2, 0xc000],
      [0, 0x0000],
      [-0, 0x8000],
      [fromBits(0x40490fdb), 0x4049], // pi: rounds down
      [fromBits(0x3f808000), 0x3f80], // tie, even is down
      [fromBits(0x3f818000), 0x3f82], // tie, even is up
      [fromBits(0x3f808001), 0x3f81], // just above the tie
      [fromBits(0x7f7fffff), 0x7f80], // float32 max rounds to infinity
      [fromBits(0x7f7f7fff), 0x7f7f],
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [fromBits(0x00000001), 0x0000], // float32 subnormal
      [fromBits(0x00018000), 0x0002], // subnormal tie, even is up
      [fromBits(0x80008000), 0x8000],
    ];
    expect(await bitsOf(cases.map((c) => c[0]), 'BF16')).toEqual(cases.map((c) => c[1]));
    const [nan] = await bitsOf([NaN], 'BF16');
    expect(nan! & 0x7f80).toBe(0x7f80);
    expect(nan! & 0x007f).not.toBe(0);
  });

  it('writes bool tensors as BOOL (read back as int32)', async () => {
    const t = tf.tensor([true, false, true], [3], 'bool');
    const file = SafetensorsFile.fromBuffer(await serializeSafetensors({ flags: t }));
    expect(file.dtype('flags')).toBe('BOOL');
    const back = await file.read('flags');
    expect(back.dtype).toBe('int32');
    expect(Array.from(await back.data())).toEqual([1, 0, 1]);
    tf.dispose([t, back]);
  });

  it('rejects bad input with ConfigErrors', async () => {
    const t = tf.ones([1]);
    await expect(serializeSafetensors({ __metadata__: t })).rejects.toThrow(/"__metadata__" is reserved/);
    await expect(serializeSafetensors({ t }, { dtype: 'F8' as 'F16' })).rejects.toThrow(ConfigError);
    await expect(serializeSafetensors({ t }, { metadata: { n: 1 as unknown as string } })).rejects.toThrow(
      /__metadata__ must be a map of strings to strings, found key "n" holding a number/,
    );
    const c = tf.complex([1], [2]);
    await expect(serializeSafetensors({ c })).rejects.toThrow(/tensor "c": cannot write dtype complex64/);
    tf.dispose([t, c]);
  });

  it('saveSafetensors writes a file fromFile reads back', async () => {
    const path = join(tempDir(), 'saved.safetensors');
    const w = tf.tensor([[1, 2], [3, 4]]);
    await saveSafetensors(path, { w }, { metadata: { format: 'pt' }, dtype: 'BF16' });
    const file = await SafetensorsFile.fromFile(path);
    expect(file.dtype('w')).toBe('BF16');
    const back = await file.read('w');
    expect(Array.from(await back.data())).toEqual([1, 2, 3, 4]);
    await file.close();
    tf.dispose([w, back]);
  });
});
