/** Loads the recommender and health protos (options in step with scripts/gen-proto.sh). */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject } from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import type { ProtoGrpcType } from '../../generated/recommender.js';

export const PROTO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../proto');
export const RECOMMENDER_PROTO = 'automr/v1/recommender.proto';
export const SERVICE_NAME = 'automr.v1.Recommender';

export const LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

let cached: { definition: PackageDefinition; grpc: ProtoGrpcType } | undefined;

export function loadRecommenderProto(): { definition: PackageDefinition; grpc: ProtoGrpcType } {
  if (cached === undefined) {
    const definition = loadSync([RECOMMENDER_PROTO, healthProtoPath], LOADER_OPTIONS);
    cached = { definition, grpc: loadPackageDefinition(definition) as unknown as ProtoGrpcType & GrpcObject };
  }
  return cached;
}
