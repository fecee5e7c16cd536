/** Config: defaults, flags over environment, clear messages on bad values, --help lists every option. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configHelp, loadConfig } from '../../src/gateway/config.js';

void test('defaults', () => {
  const { config } = loadConfig([], {});
  assert.equal(config?.addr, '127.0.0.1:50051');
  assert.equal(config?.dataDir, './data');
  assert.equal(config?.memoryStore, 'lmdb');
  assert.equal(config?.modelServer, '127.0.0.1:8001');
  assert.equal(config?.bundle, './bundle');
  assert.equal(config?.memoryK, 'auto');
  assert.equal(config?.maxHistory, 100);
  assert.equal(config?.maxExcludeItems, 1000);
  assert.equal(config?.maxCandidateItems, 10_000);
});

void test('AUTOMR_MEMORY_K: auto (the bundle policy) or a number, 0 = serve without memory', () => {
  assert.equal(loadConfig([], { AUTOMR_MEMORY_K: 'auto' }).config?.memoryK, 'auto');
  assert.equal(loadConfig([], { AUTOMR_MEMORY_K: '0' }).config?.memoryK, 0);
  assert.throws(() => loadConfig([], { AUTOMR_MEMORY_K: 'some' }), /AUTOMR_MEMORY_K/);
  assert.throws(() => loadConfig([], { AUTOMR_MEMORY_K: '91' }), /AUTOMR_MEMORY_K/);
});

void test('flags win over AUTOMR_* environment', () => {
  const { config } = loadConfig(['--addr', '0.0.0.0:6000', '--memory-store', 'redis://10.0.0.1:6379'], {
    AUTOMR_ADDR: '127.0.0.1:7000',
    AUTOMR_DATA_DIR: '/var/lib/automr',
    AUTOMR_MEMORY_K: '3',
  });
  assert.equal(config?.addr, '0.0.0.0:6000');
  assert.equal(config?.memoryStore, 'redis://10.0.0.1:6379');
  assert.equal(config?.dataDir, '/var/lib/automr');
  assert.equal(config?.memoryK, 3);
  assert.equal(
    loadConfig([], { AUTOMR_MEMORY_STORE: 'redis-cluster://a:7000,b:7001' }).config?.memoryStore,
    'redis-cluster://a:7000,b:7001',
  );
});

void test('bad values name the option, its source and the reason', () => {
  assert.throws(
    () => loadConfig([], { AUTOMR_ADDR: 'localhost' }),
    /AUTOMR_ADDR .* \(from AUTOMR_ADDR\): expected host:port/,
  );
  assert.throws(
    () => loadConfig(['--max-history', 'lots'], {}),
    /--max-history = "lots" \(from --max-history\)/,
  );
  assert.throws(() => loadConfig([], { AUTOMR_MEMORY_STORE: 'mongodb://x' }), /expected "lmdb", redis:\/\//);
  assert.throws(() => loadConfig([], { AUTOMR_METRICS_PORT: '70000' }), /AUTOMR_METRICS_PORT/);
  assert.throws(() => loadConfig(['--no-such-flag'], {}), /no-such-flag.*see --help/);
});

void test('--help lists every option with its variable and default', () => {
  assert.deepEqual(loadConfig(['--help'], {}), { help: true });
  const help = configHelp();
  for (const v of [
    'AUTOMR_ADDR',
    'AUTOMR_DATA_DIR',
    'AUTOMR_MEMORY_STORE',
    'AUTOMR_MODEL_SERVER',
    'AUTOMR_BUNDLE',
    'AUTOMR_DRAIN_TIMEOUT_MS',
    'AUTOMR_METRICS_PORT',
  ]) {
    assert.match(help, new RegExp(v));
  }
  assert.match(help, /default 127\.0\.0\.1:50051/);
});
