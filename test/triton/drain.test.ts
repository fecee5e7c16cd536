/**
 * Drain: not ready at once (ServerReady false, new inference UNAVAILABLE), in-flight requests finish,
 * then the server stops; the CLI does this on SIGTERM and exits 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { startModelServer } from '../../src/model-server/server.js';
import { AppError } from '../../src/shared/errors.js';
import { TritonClient } from '../../src/triton/client.js';
import { D_MODEL, MODEL_REPOSITORY, prompt, REPO_ROOT } from './helpers.js';

const temps: string[] = [];
after(async () => {
  for (const dir of temps) await rm(dir, { recursive: true, force: true });
});

void test('drain: not ready at once, in-flight requests complete, new ones are refused', async () => {
  // A queue delay keeps a request in flight long enough to drain around it deterministically.
  const repo = await mkdtemp(join(tmpdir(), 'automr-drain-'));
  temps.push(repo);
  await cp(join(MODEL_REPOSITORY, 'llm_lower'), join(repo, 'llm_lower'), { recursive: true });
  const config = join(repo, 'llm_lower', 'config.pbtxt');
  await writeFile(
    config,
    (await readFile(config, 'utf8')).replace(
      'dynamic_batching { }',
      'dynamic_batching { max_queue_delay_microseconds: 1500000 }',
    ),
  );
  const server = await startModelServer({ repository: repo });
  const client = new TritonClient({ address: server.address, maxRetries: 0, defaultDeadlineMs: 20_000 });
  try {
    const { ids, mask } = prompt(1, 5, 9);
    await client.modelMetadata('llm_lower');
    const inflight = client.infer({ model: 'llm_lower', inputs: [ids, mask] });
    while (server.inflight() === 0) await new Promise((r) => setTimeout(r, 5));
    const drained = server.drain(10_000);
    assert.equal(server.ready(), false);
    assert.equal(await client.serverReady(), false);
    assert.equal(await client.modelReady('llm_lower'), false);
    const refused = await client.infer({ model: 'llm_lower', inputs: [ids, mask] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(refused instanceof AppError);
    assert.equal(refused.code, 'UNAVAILABLE');
    const result = await inflight;
    assert.deepEqual(result.outputs.get('query')!.shape, [1, D_MODEL]);
    await drained;
    assert.equal(server.inflight(), 0);
  } finally {
    client.close();
    await server.close();
  }
});

void test('the CLI serves the repository and exits 0 on SIGTERM', async () => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'src/cli/model-server.ts'), '--address', '127.0.0.1:0'],
    { cwd: REPO_ROOT, env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const m = /"address":"([^"]+)","models"/.exec(output);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`model server exited early (${code}): ${output}`)));
  });
  const client = new TritonClient({ address });
  try {
    assert.equal(await client.serverReady(), true);
  } finally {
    client.close();
  }
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  assert.equal(code, 0);
  assert.match(output, /model server stopped/);
});
