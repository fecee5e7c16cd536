/** Memory-store URLs: credentials and TLS for Redis Cluster, and errors that never print a password. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/gateway/config.js';
import { parseClusterUrl } from '../../src/gateway/adapters/redis-url.js';

void test('cluster URLs carry user, password (percent-decoded) and TLS', () => {
  assert.deepEqual(parseClusterUrl('redis-cluster://h1:7000,10.0.0.2:7001'), {
    nodes: [
      { host: 'h1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
    ],
    tls: false,
  });
  assert.deepEqual(parseClusterUrl('rediss-cluster://gw:p%40ss%3Aw%2Cd@redis-0.redis:6379,[::1]:6380'), {
    nodes: [
      { host: 'redis-0.redis', port: 6379 },
      { host: '::1', port: 6380 },
    ],
    username: 'gw',
    password: 'p@ss:w,d',
    tls: true,
  });
  assert.deepEqual(parseClusterUrl('redis-cluster://:only-pass@h:1').password, 'only-pass');
  assert.equal(parseClusterUrl('redis-cluster://:only-pass@h:1').username, undefined);
});

void test('bad cluster URLs are refused at start-up, naming the problem but not the password', () => {
  for (const bad of [
    'redis-cluster://gw:hunter2@h1',
    'redis-cluster://gw:hunter2@h1:7000/0',
    'redis-cluster://gw:hunter2@h1:7000?tls=true',
    'redis-cluster://gw:hunter2@h1:99999',
  ]) {
    assert.throws(
      () => loadConfig([], { AUTOMR_MEMORY_STORE: bad }),
      (error: Error) => /AUTOMR_MEMORY_STORE/.test(error.message) && !error.message.includes('hunter2'),
      bad,
    );
  }
  assert.throws(
    () => loadConfig([], { AUTOMR_MEMORY_STORE: 'mongodb://admin:hunter2@x' }),
    (error: Error) => /expected "lmdb"/.test(error.message) && !error.message.includes('hunter2'),
  );
  assert.equal(
    loadConfig([], { AUTOMR_MEMORY_STORE: 'rediss-cluster://u:p@a:7000,b:7001' }).config?.memoryStore,
    'rediss-cluster://u:p@a:7000,b:7001',
  );
});
