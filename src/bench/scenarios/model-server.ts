/** The model server alone, driven with the same `automr_recommend` ModelInfer the gateway sends: the ceiling. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROTO_DIR } from '../../shared/proto.js';
import type { TargetSpec } from '../grpc-target.js';
import type { ServerHost } from '../servers.js';
import { closedLoop, sweepPoint, type BenchContext } from './context.js';

export interface ManifestShape {
  d: number;
  window: number;
  ensemble: string;
  version: string;
  /** Bytes of the packed exclude_mask input (one bit per catalog item). */
  maskBytes: number;
}

export async function readManifestShape(bundleDir: string): Promise<ManifestShape> {
  const manifest = JSON.parse(await readFile(join(bundleDir, 'manifest.json'), 'utf8')) as {
    d_model: number;
    window: number;
    models: { ensemble: string; version: string };
    catalog: unknown[];
  };
  return {
    d: manifest.d_model,
    window: manifest.window,
    ensemble: manifest.models.ensemble,
    version: manifest.models.version,
    maskBytes: (manifest.catalog.length + 7) >> 3,
  };
}

/** One automr_recommend ModelInfer with a full prompt (bos + window items) and one memory slot, raw contents. */
export function modelServerTarget(address: string, shape: ManifestShape): TargetSpec {
  const t = shape.window + 1;
  const ids = new BigInt64Array(t).map((_, i) => BigInt(i === 0 ? 1 : 3 + ((i * 37) % 200)));
  const mask = new BigInt64Array(t).fill(1n);
  const memory = new Float32Array(shape.d).map((_, i) => Math.sin(i) * 0.1);
  const memoryMask = new BigInt64Array([1n]);
  const excludeMask = new Uint8Array(shape.maskBytes);
  const raw = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const request = {
    modelName: shape.ensemble,
    modelVersion: '',
    inputs: [
      { name: 'input_ids', datatype: 'INT64', shape: [1, t] },
      { name: 'attention_mask', datatype: 'INT64', shape: [1, t] },
      { name: 'memory', datatype: 'FP32', shape: [1, 1, shape.d] },
      { name: 'memory_mask', datatype: 'INT64', shape: [1, 1] },
      { name: 'exclude_mask', datatype: 'UINT8', shape: [1, shape.maskBytes] },
    ],
    outputs: [{ name: 'top_ids' }, { name: 'top_scores' }],
    rawInputContents: [raw(ids), raw(mask), raw(memory), raw(memoryMask), raw(excludeMask)],
  };
  return {
    kind: 'proto',
    address,
    protoPath: join(PROTO_DIR, 'inference/grpc_service.proto'),
    includeDirs: [PROTO_DIR],
    service: 'inference.GRPCInferenceService',
    method: 'ModelInfer',
    generator: { kind: 'cycle', requests: [request] },
  };
}

export async function benchModelServerAlone(ctx: BenchContext, modelServer: ServerHost): Promise<void> {
  const target = modelServerTarget(modelServer.address, await readManifestShape(ctx.options.bundleDir));
  for (const concurrency of [1, 64]) {
    try {
      const result = await ctx.runner.run(target, closedLoop(ctx.options, concurrency));
      ctx.report.sweep.model_server.push(sweepPoint(concurrency, result));
      if (result.errors > 0) ctx.note(`model server c=${concurrency}: ${result.errorSamples[0] ?? ''}`);
      ctx.log(`model server alone c=${concurrency}: ${result.rps.toFixed(0)} rps`);
    } catch (error) {
      ctx.note(`model server floor skipped: ${(error as Error).message}`);
      break;
    }
  }
}
