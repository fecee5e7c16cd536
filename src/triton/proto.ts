/** Loading of the Triton protocol definitions, shared by the client and the local model server. */
import { loadPackageDefinition, type GrpcObject } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../generated/grpc_service.js';
import { PROTO_DIR, PROTO_LOADER_OPTIONS } from '../shared/proto.js';

export { PROTO_DIR, PROTO_LOADER_OPTIONS };
export const INFERENCE_PROTO = 'inference/grpc_service.proto';

let cached: ProtoGrpcType | undefined;

/** The `inference` package as grpc-js constructors (service client class and definition). */
export function loadInferenceProto(): ProtoGrpcType {
  if (cached === undefined) {
    const definition = loadSync(INFERENCE_PROTO, PROTO_LOADER_OPTIONS);
    cached = loadPackageDefinition(definition) as unknown as ProtoGrpcType & GrpcObject;
  }
  return cached;
}
