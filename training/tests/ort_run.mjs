// Runs an ONNX model with onnxruntime-node for the Python parity tests (no onnxruntime for Python here).
// stdin: {"model": path, "inputs": {name: {"type": "int64"|"float32"|"uint8", "dims": [...], "b64": little-endian bytes}}}
// stdout: {"outputs": {name: {"type", "dims", "b64"}}}
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', '..', 'package.json'));
const ort = require('onnxruntime-node');

const req = JSON.parse(readFileSync(0, 'utf8'));
const feeds = {};
for (const [name, t] of Object.entries(req.inputs)) {
  const buf = Buffer.from(t.b64, 'base64');
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const Ctor = { int64: BigInt64Array, float32: Float32Array, uint8: Uint8Array }[t.type];
  const data = new Ctor(ab);
  feeds[name] = new ort.Tensor(t.type, data, t.dims);
}
const session = await ort.InferenceSession.create(req.model, { intraOpNumThreads: 1 });
const result = await session.run(feeds);
const outputs = {};
for (const [name, t] of Object.entries(result)) {
  const d = t.data;
  outputs[name] = { type: t.type, dims: t.dims, b64: Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64') };
}
process.stdout.write(JSON.stringify({ outputs }));
