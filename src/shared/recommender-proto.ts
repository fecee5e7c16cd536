/** Loads the recommender and health protos (with the project's shared loader options): the gateway serves them, the client calls them. */
import { loadPackageDefinition, type GrpcObject } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import type { ProtoGrpcType } from '../generated/recommender.js';
import { PROTO_DIR, PROTO_LOADER_OPTIONS } from './proto.js';

export { PROTO_DIR };
export const RECOMMENDER_PROTO = 'automr/v1/recommender.proto';
export const SERVICE_NAME = 'automr.v1.RecommenderService';

let cached: { definition: PackageDefinition; grpc: ProtoGrpcType } | undefined;

export function loadRecommenderProto(): { definition: PackageDefinition; grpc: ProtoGrpcType } {
  if (cached === undefined) {
    const definition = loadSync([RECOMMENDER_PROTO, healthProtoPath], PROTO_LOADER_OPTIONS);
    cached = { definition, grpc: loadPackageDefinition(definition) as unknown as ProtoGrpcType & GrpcObject };
  }
  return cached;
}
