/** The status mapper: no address or path reaches a client; shapes and ids in messages are left alone. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../../src/shared/errors.js';
import { scrubbed, toGrpcStatus } from '../../src/shared/grpc-status.js';

void test('addresses and absolute paths are cut from client-bound messages', () => {
  assert.equal(scrubbed('connect ECONNREFUSED 127.0.0.1:8001'), 'connect ECONNREFUSED <address>');
  assert.equal(scrubbed('remote_addr=[::1]:50051 closed'), 'remote_addr=<address> closed');
  assert.equal(scrubbed('no route to redis-0.redis-headless:6379'), 'no route to <address>');
  assert.equal(scrubbed("cannot open '/var/lib/automr/data.mdb'"), "cannot open '<path>'");
  const st = toGrpcStatus(new AppError('UNAVAILABLE', 'dial tcp 10.1.2.3:8001: refused'));
  assert.equal(st.details, 'dial tcp <address>: refused');
});

void test('tensor shapes, field names and ordinary ids stay as they are', () => {
  for (const message of [
    "unexpected shape for input 'input_ids' for model 'llm_lower'. Expected [-1,-1], got [4]",
    'user_id is 300 bytes; at most 256 are allowed',
    'automr.v1.RecommenderService/Recommend needs the recommend scope',
  ])
    assert.equal(scrubbed(message), message);
});
