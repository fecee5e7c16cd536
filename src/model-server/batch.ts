/** Concatenation along the batch dimension and splitting back, for the dynamic batcher. */
import type { Tensor, TensorData } from '../triton/tensor.js';

type Fixed = Exclude<TensorData, Buffer[]>;

/** Joins same-named tensors of several requests along dim 0 (all other dims are equal by construction). */
export function concatBatch(parts: Tensor[]): Tensor {
  const first = parts[0]!;
  if (parts.length === 1) return first;
  const batch = parts.reduce((n, t) => n + (t.shape[0] ?? 0), 0);
  const shape = [batch, ...first.shape.slice(1)];
  if (Array.isArray(first.data)) {
    return { ...first, shape, data: parts.flatMap((t) => t.data as Buffer[]) };
  }
  const total = parts.reduce((n, t) => n + t.data.length, 0);
  const Ctor = first.data.constructor as new (n: number) => Fixed;
  const data = new Ctor(total);
  let offset = 0;
  for (const t of parts) {
    (data as Float32Array).set(t.data as Float32Array, offset);
    offset += t.data.length;
  }
  return { ...first, shape, data };
}

/** Rows [start, start + count) of a batched tensor, as a view (no copy). */
export function sliceBatch(t: Tensor, start: number, count: number): Tensor {
  const rows = t.shape[0] ?? 0;
  const perRow = rows === 0 ? 0 : t.data.length / rows;
  const shape = [count, ...t.shape.slice(1)];
  const from = start * perRow;
  const to = (start + count) * perRow;
  const data = Array.isArray(t.data) ? t.data.slice(from, to) : t.data.subarray(from, to);
  return { ...t, shape, data: data };
}
