/** The Redis store over TLS (rediss://, CA file) with an ACL user and a password file, on a redis-server of its own. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RedisMemoryStore } from '../../src/gateway/adapters/redis-store.js';
import { makeCa, makeCert, type Pem } from '../certs.js';
import { freePort, startOwnRedis, type OwnRedis } from '../own-redis.js';
import { tempDir } from './helpers.js';

let dir: string;
let ca: Pem;
let redis: OwnRedis;
let tlsPort: number;
let passwordFile: string;

before(async () => {
  dir = tempDir('automr-redis-tls-');
  ca = makeCa(dir, 'redis-ca');
  const server = makeCert(dir, ca, 'redis', 'server');
  passwordFile = path.join(dir, 'password');
  writeFileSync(passwordFile, 's3cret-for-tests\n');
  tlsPort = await freePort();
  redis = await startOwnRedis(dir, 0, [
    '--tls-port',
    String(tlsPort),
    '--tls-cert-file',
    server.cert,
    '--tls-key-file',
    server.key,
    '--tls-ca-cert-file',
    ca.cert,
    '--tls-auth-clients',
    'no',
    '--user',
    'default',
    'off',
    '--user',
    'automr',
    'on',
    '>s3cret-for-tests',
    '~*',
    '&*',
    '+@all',
  ]);
});

after(async () => {
  await redis.kill();
  rmSync(dir, { recursive: true, force: true });
});

void test('rediss:// with the CA, ACL user and password file: appends and reads', async () => {
  const store = new RedisMemoryStore({
    url: `rediss://127.0.0.1:${tlsPort}`,
    prefix: `tls-${process.pid}`,
    connection: { tlsCa: ca.cert, username: 'automr', passwordFile },
  });
  try {
    const deadline = Date.now() + 5_000;
    while (!(await store.ready()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await store.ready(), true);
    const r = await store.append(
      { userId: 'u', eventId: 'e1', itemId: '002', token: 5, timestampMs: 1 },
      100,
    );
    assert.equal(r.status, 'accepted');
    assert.deepEqual(
      (await store.read('u')).map((e) => e.eventId),
      ['e1'],
    );
  } finally {
    await store.close();
  }
});

void test('a wrong password is refused (the store is not ready)', async () => {
  const wrong = path.join(dir, 'wrong');
  writeFileSync(wrong, 'nope');
  const store = new RedisMemoryStore({
    url: `rediss://127.0.0.1:${tlsPort}`,
    prefix: `tls-${process.pid}`,
    connection: { tlsCa: ca.cert, username: 'automr', passwordFile: wrong },
  });
  try {
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await store.ready(), false);
  } finally {
    await store.close();
  }
});
