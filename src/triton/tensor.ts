/**
 * Tensor codec for the KServe v2 / Triton protocol: raw contents are the flattened, row-major elements,
 * little-endian, without padding; BYTES elements are each a 4-byte little-endian length followed by the
 * bytes; FP16/BF16 travel as raw 16-bit words (carried here as Uint16Array).
 */
import { endianness } from 'node:os';
import { AppError } from '../shared/errors.js';

export type TritonDatatype =
  | 'BOOL'
  | 'UINT8'
  | 'INT8'
  | 'INT16'
  | 'INT32'
  | 'INT64'
  | 'UINT16'
  | 'UINT32'
  | 'UINT64'
  | 'FP16'
  | 'BF16'
  | 'FP32'
  | 'FP64'
  | 'BYTES';

export type TensorData =
  | Float32Array
  | BigInt64Array
  | Int32Array
  | Uint8Array
  | Float64Array
  | Uint16Array
  | Uint32Array
  | Int16Array
  | Int8Array
  | BigUint64Array
  | Buffer[];

export interface Tensor {
  name: string;
  datatype: TritonDatatype;
  shape: number[];
  data: TensorData;
}

// Typed arrays use the platform's byte order; every platform Node and onnxruntime ship for is
// little-endian, so raw contents can be viewed without byte swapping. Refuse loudly anywhere else.
if (endianness() !== 'LE') throw new Error('the Triton tensor codec requires a little-endian platform');

type FixedCtor =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int8ArrayConstructor
  | Uint8ArrayConstructor;

const FIXED: Record<Exclude<TritonDatatype, 'BYTES'>, FixedCtor> = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  INT8: Int8Array,
  INT16: Int16Array,
  UINT16: Uint16Array,
  INT32: Int32Array,
  UINT32: Uint32Array,
  INT64: BigInt64Array,
  UINT64: BigUint64Array,
  FP16: Uint16Array,
  BF16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
};

export const DATATYPES: readonly TritonDatatype[] = [...Object.keys(FIXED), 'BYTES'] as TritonDatatype[];

export function isDatatype(value: string): value is TritonDatatype {
  return (DATATYPES as readonly string[]).includes(value);
}

/** Bytes per element, or undefined for BYTES (variable length). */
export function elementSize(datatype: TritonDatatype): number | undefined {
  return datatype === 'BYTES' ? undefined : FIXED[datatype].BYTES_PER_ELEMENT;
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function dataLength(data: TensorData): number {
  return data.length;
}

/** Checks that the data's element type and count agree with datatype and shape. */
export function checkTensor(t: Tensor): void {
  if (!isDatatype(t.datatype))
    throw new AppError('INVALID_ARGUMENT', `invalid datatype '${String(t.datatype)}'`);
  if (t.shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new AppError('INVALID_ARGUMENT', `invalid shape [${t.shape.join(',')}] for tensor '${t.name}'`);
  }
  const expected = elementCount(t.shape);
  if (dataLength(t.data) !== expected) {
    throw new AppError(
      'INVALID_ARGUMENT',
      `tensor '${t.name}' has ${dataLength(t.data)} elements, shape [${t.shape.join(',')}] needs ${expected}`,
    );
  }
  if (t.datatype === 'BYTES') {
    if (!Array.isArray(t.data))
      throw new AppError('INVALID_ARGUMENT', `BYTES tensor '${t.name}' needs Buffer[]`);
    return;
  }
  if (Array.isArray(t.data) || !(t.data instanceof FIXED[t.datatype])) {
    throw new AppError(
      'INVALID_ARGUMENT',
      `tensor '${t.name}' of datatype ${t.datatype} needs a ${FIXED[t.datatype].name}`,
    );
  }
}

/** Serializes a tensor to raw contents (a view on the data when possible, no copy). */
export function encodeRaw(t: Tensor): Buffer {
  checkTensor(t);
  if (Array.isArray(t.data)) {
    const parts: Buffer[] = [];
    for (const element of t.data) {
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32LE(element.length, 0);
      parts.push(len, element);
    }
    return Buffer.concat(parts);
  }
  const view = t.data;
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

/** Byte size raw contents must have for a fixed-size datatype and shape. */
export function rawByteSize(datatype: TritonDatatype, shape: readonly number[]): number | undefined {
  const size = elementSize(datatype);
  return size === undefined ? undefined : size * elementCount(shape);
}

function decodeBytes(name: string, shape: number[], raw: Buffer): Buffer[] {
  const count = elementCount(shape);
  const out: Buffer[] = [];
  let offset = 0;
  while (offset < raw.length) {
    if (offset + 4 > raw.length) break;
    const len = raw.readUInt32LE(offset);
    offset += 4;
    if (offset + len > raw.length) break;
    out.push(raw.subarray(offset, offset + len));
    offset += len;
  }
  if (out.length !== count || offset !== raw.length) {
    throw new AppError(
      'INVALID_ARGUMENT',
      `unexpected number of string elements ${out.length} for inference input '${name}', expecting ${count}`,
    );
  }
  return out;
}

/** Parses raw contents into a tensor; copies when the buffer is not aligned for the element type. */
export function decodeRaw(name: string, datatype: TritonDatatype, shape: number[], raw: Buffer): Tensor {
  if (datatype === 'BYTES') return { name, datatype, shape, data: decodeBytes(name, shape, raw) };
  const Ctor = FIXED[datatype];
  const expected = Ctor.BYTES_PER_ELEMENT * elementCount(shape);
  if (raw.byteLength !== expected) {
    throw new AppError(
      'INVALID_ARGUMENT',
      `unexpected total byte size ${raw.byteLength} for input '${name}', expecting ${expected}`,
    );
  }
  let buf: ArrayBufferLike = raw.buffer;
  let offset = raw.byteOffset;
  if (offset % Ctor.BYTES_PER_ELEMENT !== 0) {
    const copy = new Uint8Array(raw.byteLength);
    copy.set(raw);
    buf = copy.buffer;
    offset = 0;
  }
  const data = new Ctor(buf as ArrayBuffer, offset, expected / Ctor.BYTES_PER_ELEMENT);
  return { name, datatype, shape, data };
}

/** Typed `InferTensorContents` (the non-raw form) as plain arrays, as proto-loader decodes it. */
export interface TensorContents {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: (number | string)[];
  uint_contents?: number[];
  uint64_contents?: (number | string)[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Buffer[];
}

/** Builds a tensor from typed contents; the field used must match the datatype, as in Triton. */
export function fromContents(
  name: string,
  datatype: TritonDatatype,
  shape: number[],
  c: TensorContents,
): Tensor {
  const pick = (): { field: keyof TensorContents; values: unknown[] } => {
    switch (datatype) {
      case 'BOOL':
        return { field: 'bool_contents', values: c.bool_contents ?? [] };
      case 'INT8':
      case 'INT16':
      case 'INT32':
        return { field: 'int_contents', values: c.int_contents ?? [] };
      case 'UINT8':
      case 'UINT16':
      case 'UINT32':
        return { field: 'uint_contents', values: c.uint_contents ?? [] };
      case 'INT64':
        return { field: 'int64_contents', values: c.int64_contents ?? [] };
      case 'UINT64':
        return { field: 'uint64_contents', values: c.uint64_contents ?? [] };
      case 'FP32':
        return { field: 'fp32_contents', values: c.fp32_contents ?? [] };
      case 'FP64':
        return { field: 'fp64_contents', values: c.fp64_contents ?? [] };
      case 'BYTES':
        return { field: 'bytes_contents', values: c.bytes_contents ?? [] };
      case 'FP16':
      case 'BF16':
        throw new AppError(
          'INVALID_ARGUMENT',
          `${datatype} input '${name}' must be sent in raw_input_contents (no typed contents field exists)`,
        );
    }
  };
  const { values } = pick();
  const count = elementCount(shape);
  if (values.length !== count) {
    throw new AppError(
      'INVALID_ARGUMENT',
      `unexpected number of elements ${values.length} in contents for input '${name}', expecting ${count}`,
    );
  }
  if (datatype === 'BYTES') return { name, datatype, shape, data: values as Buffer[] };
  const Ctor = FIXED[datatype];
  if (Ctor === BigInt64Array || Ctor === BigUint64Array) {
    const data = new Ctor(count);
    values.forEach((v, i) => (data[i] = BigInt(v as number | string)));
    return { name, datatype, shape, data };
  }
  const data = new (Ctor as Float64ArrayConstructor)(count);
  values.forEach((v, i) => (data[i] = typeof v === 'boolean' ? Number(v) : (v as number)));
  return { name, datatype, shape, data: data };
}
