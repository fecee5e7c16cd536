/**
 * Client-side load balancing: a target that resolves to several model servers (as dns:/// of a headless Service
 * does for Triton pods) gets its calls spread over all of them by round_robin, not pinned to the first.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import { TritonClient } from '../../src/triton/client.js';
import { MODEL_REPOSITORY, prompt } from './helpers.js';

let servers: RunningModelServer[];

before(async () => {
  servers = await Promise.all(
    [0, 1].map(() =>
      startModelServer({ repository: MODEL_REPOSITORY, address: '127.0.0.1:0', logger: silentLogger() }),
    ),
  );
});

after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

void test('round_robin spreads calls over every address of the target', async () => {
  // The ipv4: scheme lists the addresses a dns:/// name would resolve to.
  const target = `ipv4:${servers.map((s) => s.address).join(',')}`;
  const client = new TritonClient({ address: target, channels: 1 });
  try {
    const { ids, mask } = prompt(1, 6, 7);
    for (let i = 0; i < 20; i++)
      await client.infer({ model: 'llm_lower', inputs: [ids, mask], outputs: ['query'] });
    const counts = await Promise.all(
      servers.map(async (s) => {
        const direct = new TritonClient({ address: s.address });
        try {
          const [stats] = await direct.modelStatistics('llm_lower');
          return Number(stats?.inference_count ?? 0);
        } finally {
          direct.close();
        }
      }),
    );
    assert.equal(counts[0]! + counts[1]!, 20);
    assert.ok(
      counts.every((n) => n >= 5),
      `both servers serve: ${counts.join(' / ')}`,
    );
  } finally {
    client.close();
  }
});
