/**
 * Loading of the Triton protocol definitions, shared by the client and the local model server. The
 * loader options must stay in step with scripts/gen-proto.sh so that the generated types describe
 * exactly the objects grpc-js hands us.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../generated/grpc_service.js';

/** proto/ at the repository root; the same relative place from src/triton and dist/triton. */
export const PROTO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../proto');
export const INFERENCE_PROTO = 'inference/grpc_service.proto';

export const PROTO_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

let cached: ProtoGrpcType | undefined;

/** The `inference` package as grpc-js constructors (service client class and definition). */
export function loadInferenceProto(): ProtoGrpcType {
  if (cached === undefined) {
    const definition = loadSync(INFERENCE_PROTO, PROTO_LOADER_OPTIONS);
    cached = loadPackageDefinition(definition) as unknown as ProtoGrpcType & GrpcObject;
  }
  return cached;
}
