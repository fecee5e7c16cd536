/**
 * Where the .proto files live and how every loader in the project reads them. The options must stay in step
 * with scripts/gen-proto.sh so that the generated types describe exactly the objects grpc-js hands us.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Options } from '@grpc/proto-loader';

/** proto/ at the repository root; the same relative place from src/shared and dist/shared. */
export const PROTO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../proto');

export const PROTO_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};
