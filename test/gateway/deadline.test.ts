/**
 * A Recommend's deadline reaches its pipeline: when the caller's deadline passes while the model server hangs
 * (the real model-server CLI in a child process, stopped with SIGSTOP), the gateway aborts the call's work at once
 * instead of holding it until its own model-server deadline. Seen through the admission bound of one Recommend: the
 * next call is admitted right after the first one's deadline, not refused with RESOURCE_EXHAUSTED.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import type { RunningGateway } from '../../src/gateway/server.js';
import type { RecommenderClient } from '../../src/client/recommender-client.js';
import { freePort } from '../own-redis.js';
import { client, spawnModelServer, startGatewayOn, waitFor } from './helpers.js';

let child: ChildProcess;
let gateway: RunningGateway;
let c: RecommenderClient;
let dataDir: string;

before(async () => {
  const port = await freePort();
  child = await spawnModelServer(port);
  ({ gateway, dataDir } = await startGatewayOn(`127.0.0.1:${port}`, 'automr-deadline-', {
    maxInflightRecommends: 1,
    inferDeadlineMs: 20_000,
  }));
  c = client(gateway.address);
  await waitFor(
    async () => (await c.recommend({ user_id: 'warm', top_n: 3 }).catch(() => undefined)) !== undefined,
    20_000,
    'the gateway to serve',
  );
});

after(async () => {
  c.close();
  await gateway.close();
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
  rmSync(dataDir, { recursive: true, force: true });
});

const codeOf = (call: Promise<unknown>) =>
  call.then(
    () => status.OK,
    (e: unknown) => (e as { code: number }).code,
  );

void test("a Recommend past its deadline frees its place at once (the pipeline is aborted, not left to the model server's deadline)", async () => {
  child.kill('SIGSTOP');
  try {
    const first = await codeOf(c.recommend({ user_id: 'u1', top_n: 3 }, { deadlineMs: 300 }));
    assert.equal(first, status.DEADLINE_EXCEEDED);
    // Right after: the one admission slot must be free again (the gateway may answer DEADLINE_EXCEEDED or, once
    // its health probe has noticed the hung model server, UNAVAILABLE; never "still busy").
    const second = await codeOf(c.recommend({ user_id: 'u2', top_n: 3 }, { deadlineMs: 300 }));
    assert.notEqual(second, status.RESOURCE_EXHAUSTED, 'the first call still held its admission slot');
  } finally {
    child.kill('SIGCONT');
  }
});
