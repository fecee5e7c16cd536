/**
 * A ModelConfig decoded by protobufjs (the decoder under proto-loader and grpc-js) keys a map with 64-bit keys
 * by the key's 8 bytes (protobufjs's "long bits hash"), not by the number the generated types promise, and
 * protobufjs's encoder reads such a key back as 0. ModelConfig has one such map, the dynamic batcher's
 * priority_queue_policy (uint64 priority level → queue policy). Both ends call this on a freshly decoded
 * config: the model server on what it parsed (so the ModelConfig RPC serves the right keys) and the client on
 * what it receives.
 */
import protobuf from 'protobufjs';
import type { ModelConfig__Output } from '../generated/inference/ModelConfig.js';

export function withDecimalMapKeys(config: ModelConfig__Output): ModelConfig__Output {
  const batching = config.dynamic_batching;
  if (batching != null) {
    batching.priority_queue_policy = Object.fromEntries(
      Object.entries(batching.priority_queue_policy).map(([hash, policy]) => [
        protobuf.util.LongBits.fromHash(hash).toNumber(true),
        policy,
      ]),
    );
  }
  return config;
}
