/**
 * config.pbtxt (protobuf text format) → ModelConfig.
 *
 * @bufbuild/protobuf parses the text against our model_config.proto (schema generated into src/generated/es
 * by scripts/gen-proto.sh) and refuses what protobuf's own text parsers refuse: unknown fields, values of the
 * wrong type, a non-repeated field given twice, two members of one oneof, broken syntax.
 *
 * The rest of the server, like the ModelConfig RPC that returns the config, works with proto-loader's plain
 * objects (ModelConfig__Output). The parsed message crosses over through the wire format, decoded the way
 * proto-loader decodes a message grpc-js receives, so the config a client reads back is exactly the one
 * the server acts on.
 */
import { resolve } from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { fromText } from '@bufbuild/protobuf/txtpb';
import protobuf from 'protobufjs';
import { ModelConfigSchema } from '../generated/es/inference/model_config_pb.js';
import type { ModelConfig__Output } from '../generated/inference/ModelConfig.js';
import { PROTO_DIR, PROTO_LOADER_OPTIONS } from '../shared/proto.js';
import { withDecimalMapKeys } from '../triton/model-config-keys.js';

let loaderType: protobuf.Type | undefined;

/** inference.ModelConfig as proto-loader reflects it (same file, same options). */
function modelConfigLoaderType(): protobuf.Type {
  if (loaderType === undefined) {
    const root = new protobuf.Root().loadSync(
      resolve(PROTO_DIR, 'inference/model_config.proto'),
      PROTO_LOADER_OPTIONS,
    );
    root.resolveAll();
    loaderType = root.lookupType('inference.ModelConfig');
  }
  return loaderType;
}

/**
 * Parses the text of a config.pbtxt. Throws an Error whose message says what is wrong in the text (the
 * parser's words, e.g. `unknown field "max_batch_sise" for message inference.ModelConfig`).
 */
export function parseModelConfig(text: string): ModelConfig__Output {
  const wire = toBinary(ModelConfigSchema, fromText(ModelConfigSchema, text));
  const type = modelConfigLoaderType();
  return withDecimalMapKeys(type.toObject(type.decode(wire), PROTO_LOADER_OPTIONS) as ModelConfig__Output);
}
