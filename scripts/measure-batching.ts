/**
 * What dynamic batching buys on this machine: closed-loop load on the ensemble (batch-1 requests,
 * `concurrency` outstanding) against the committed repository, then against a copy without
 * dynamic_batching. Prints requests/s and mean executed batch size of llm_upper.
 * Usage: node --import tsx scripts/measure-batching.ts [requests] [concurrency]
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startModelServer } from '../src/model-server/server.js';
import { TritonClient } from '../src/triton/client.js';
import type { Tensor } from '../src/triton/tensor.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../triton-models');
const total = Number(process.argv[2] ?? 300);
const concurrency = Number(process.argv[3] ?? 16);
const T = 11;
const K = 30;

async function run(label: string, repository: string): Promise<void> {
  const server = await startModelServer({ repository });
  const client = new TritonClient({ address: server.address, defaultDeadlineMs: 60_000 });
  const meta = await client.modelMetadata('llm_upper');
  const d = meta.inputs.find((i) => i.name === 'memory')!.shape[2]!;
  const maskBytes = meta.inputs.find((i) => i.name === 'exclude_mask')!.shape[1]!;
  const inputs = (seed: number): Tensor[] => [
    {
      name: 'input_ids',
      datatype: 'INT64',
      shape: [1, T],
      data: BigInt64Array.from({ length: T }, (_, i) => BigInt(i === 0 ? 1 : 3 + ((seed + i) % 200))),
    },
    { name: 'attention_mask', datatype: 'INT64', shape: [1, T], data: new BigInt64Array(T).fill(1n) },
    { name: 'memory', datatype: 'FP32', shape: [1, K, d], data: new Float32Array(K * d).fill(0.01) },
    { name: 'memory_mask', datatype: 'INT64', shape: [1, K], data: new BigInt64Array(K).fill(1n) },
    { name: 'exclude_mask', datatype: 'UINT8', shape: [1, maskBytes], data: new Uint8Array(maskBytes) },
  ];
  await client.infer({ model: 'automr_recommend', inputs: inputs(0) });
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        next += 1;
        await client.infer({ model: 'automr_recommend', inputs: inputs(next), outputs: ['top_ids'] });
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  const [s] = await client.modelStatistics('llm_upper');
  console.log(
    `${label.padEnd(22)} ${(total / secs).toFixed(1).padStart(7)} req/s   llm_upper mean batch ${(Number(s!.inference_count) / Number(s!.execution_count)).toFixed(2)}`,
  );
  client.close();
  await server.close();
}

console.log(
  `automr_recommend, batch-1 requests, T ${T}, memory ${K}, ${total} requests, ${concurrency} outstanding`,
);
await run('dynamic batching', repo);
const copy = await mkdtemp(join(tmpdir(), 'automr-nobatch-'));
try {
  for (const m of ['llm_lower', 'llm_upper', 'automr_recommend'])
    await cp(join(repo, m), join(copy, m), { recursive: true });
  for (const m of ['llm_lower', 'llm_upper']) {
    const path = join(copy, m, 'config.pbtxt');
    await writeFile(path, (await readFile(path, 'utf8')).replace(/dynamic_batching\s*\{[^}]*\}/, ''));
  }
  await run('no dynamic batching', copy);
} finally {
  await rm(copy, { recursive: true, force: true });
}
