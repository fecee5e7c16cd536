/**
 * Bundle ↔ model check: the model repository's configs record the bundle's model_version in `parameters` (the
 * local model server returns them through ModelConfig, as Triton does), and a gateway whose bundle is another
 * version stays NOT_SERVING with a log line that says why, instead of serving numbers that do not match.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { loadBundle } from '../../src/gateway/bundle.js';
import { defaultConfig } from '../../src/gateway/config.js';
import { startGateway } from '../../src/gateway/server.js';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import { TritonClient } from '../../src/triton/client.js';
import { BUNDLE_DIR, bundleWithVersion, healthClient, healthStatus, MODELS_DIR, tempDir } from './helpers.js';

let modelServer: RunningModelServer;
let otherBundle: string;

before(async () => {
  modelServer = await startModelServer({
    repository: MODELS_DIR,
    address: '127.0.0.1:0',
    logger: silentLogger(),
  });
  otherBundle = bundleWithVersion('not-the-served-version');
});

after(async () => {
  await modelServer.close();
  rmSync(otherBundle, { recursive: true, force: true });
});

void test('ModelConfig carries the bundle model_version in parameters, for every model', async () => {
  const bundle = await loadBundle(BUNDLE_DIR);
  const client = new TritonClient({ address: modelServer.address });
  try {
    for (const model of ['llm_lower', 'llm_upper', 'automr_recommend']) {
      const config = await client.modelConfig(model, '1');
      assert.equal(config.parameters?.model_version?.string_value, bundle.modelVersion, model);
    }
    const ensemble = await client.modelConfig('automr_recommend');
    assert.deepEqual(
      ensemble.ensemble_scheduling?.step.map((s) => Number(s.model_version)),
      [1, 1],
      'the ensemble pins the version, never latest',
    );
  } finally {
    client.close();
  }
});

async function gatewayOn(bundleDir: string) {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  const dataDir = tempDir('automr-mv-');
  const gateway = await startGateway(
    defaultConfig({
      addr: '127.0.0.1:0',
      dataDir,
      modelServer: modelServer.address,
      bundle: bundleDir,
      metricsPort: 0,
    }),
    { logger: pino({ level: 'info' }, sink), healthIntervalMs: 100 },
  );
  const health = healthClient(gateway.address);
  return {
    lines,
    status: () => healthStatus(health),
    async close() {
      health.close();
      await gateway.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

void test('a gateway whose bundle is not the served model version stays NOT_SERVING and says why', async () => {
  const matching = await gatewayOn(BUNDLE_DIR);
  try {
    assert.equal(await matching.status(), 'SERVING', 'control: the committed bundle matches its models');
  } finally {
    await matching.close();
  }
  const other = await gatewayOn(otherBundle);
  try {
    assert.equal(await other.status(), 'NOT_SERVING');
    await new Promise((r) => setTimeout(r, 400)); // several health polls
    assert.equal(await other.status(), 'NOT_SERVING');
    const errors = other.lines.filter((l) => l.level >= 50 && /model version mismatch/.test(l.msg));
    assert.equal(errors.length, 1, 'one clear error line, not one per poll');
    assert.match(errors[0]!.msg, /"not-the-served-version".*llm_lower has "[0-9a-f]{16}"/);
  } finally {
    await other.close();
  }
});
