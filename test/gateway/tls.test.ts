/**
 * TLS on the gateway from certificate files made by openssl at test time: plain TLS, mTLS refusing a client
 * without a certificate, and a renewed certificate served without a restart.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { credentials, Server, type ChannelCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { defaultConfig } from '../../src/gateway/config.js';
import { startGateway } from '../../src/gateway/server.js';
import { startModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import { serverCredentials } from '../../src/shared/transport.js';
import { makeCa, makeCert, type Pem } from '../certs.js';
import {
  BUNDLE_DIR,
  healthClient,
  healthStatus,
  MODELS_DIR,
  startStack,
  tempDir,
  waitFor,
  type Stack,
} from './helpers.js';

let dir: string;
let ca: Pem;
let clientCert: Pem;
let stack: Stack;

before(async () => {
  dir = tempDir('automr-tls-');
  ca = makeCa(dir, 'ca');
  const server = makeCert(dir, ca, 'gateway', 'server');
  clientCert = makeCert(dir, ca, 'client', 'client');
  stack = await startStack('automr-tls-gw-', {
    tlsCert: server.cert,
    tlsKey: server.key,
    tlsClientCa: ca.cert,
  });
});

after(async () => {
  await stack.close();
  rmSync(dir, { recursive: true, force: true });
});

const status = async (address: string, creds: ChannelCredentials): Promise<string> => {
  const h = healthClient(address, { credentials: creds });
  try {
    return await healthStatus(h);
  } catch (error) {
    return `error ${(error as { code: number }).code}`;
  } finally {
    h.close();
  }
};

void test('mTLS: a client with a certificate from the CA is served; one without is refused', async () => {
  const address = stack.gateway.address;
  const caPem = readFileSync(ca.cert);
  const withCert = credentials.createSsl(caPem, readFileSync(clientCert.key), readFileSync(clientCert.cert));
  assert.equal(await status(address, withCert), 'SERVING');
  assert.equal(await status(address, credentials.createSsl(caPem)), 'error 14', 'no client certificate');
  assert.equal(await status(address, credentials.createInsecure()), 'error 14', 'plaintext');
  const otherCa = makeCa(dir, 'other-ca');
  const stranger = makeCert(dir, otherCa, 'stranger', 'client');
  const foreign = credentials.createSsl(caPem, readFileSync(stranger.key), readFileSync(stranger.cert));
  assert.equal(await status(address, foreign), 'error 14', 'client certificate from another CA');
});

void test('a renewed certificate is served to new connections without a restart', async () => {
  const caA = makeCa(dir, 'ca-a');
  const caB = makeCa(dir, 'ca-b');
  const a = makeCert(dir, caA, 'leaf-a', 'server');
  const b = makeCert(dir, caB, 'leaf-b', 'server');
  const live = { cert: path.join(dir, 'live.crt'), key: path.join(dir, 'live.key') };
  copyFileSync(a.cert, live.cert);
  copyFileSync(a.key, live.key);
  const server = new Server();
  new HealthImplementation({ '': 'SERVING' }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', serverCredentials(live, 100), (e, p) => (e ? reject(e) : resolve(p))),
  );
  try {
    const address = `127.0.0.1:${port}`;
    const trusting = (c: Pem) => credentials.createSsl(readFileSync(c.cert));
    // The certificate provider reads the files asynchronously: poll until the expected identity is served.
    const servedWithin = async (c: Pem, ms: number): Promise<string> => {
      const deadline = Date.now() + ms;
      let seen = '';
      while ((seen = await status(address, trusting(c))) !== 'SERVING' && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      return seen;
    };
    assert.equal(await servedWithin(caA, 5_000), 'SERVING');
    copyFileSync(b.key, live.key);
    copyFileSync(b.cert, live.cert);
    assert.equal(await servedWithin(caB, 5_000), 'SERVING', 'the new certificate (CA B) is served');
    assert.equal(await status(address, trusting(caA)), 'error 14', 'the old one is gone');
  } finally {
    server.forceShutdown();
  }
});

void test('gateway → model server over mTLS: SERVING with the client certificate, NOT_SERVING without', async () => {
  const msCert = makeCert(dir, ca, 'model-server', 'server');
  const gwClient = makeCert(dir, ca, 'gateway-client', 'client');
  const modelServer = await startModelServer({
    repository: MODELS_DIR,
    address: '127.0.0.1:0',
    logger: silentLogger(),
    tls: { cert: msCert.cert, key: msCert.key, clientCa: ca.cert },
  });
  const dataDirs = [tempDir('automr-tls-ms-a-'), tempDir('automr-tls-ms-b-')];
  const base = {
    addr: '127.0.0.1:0',
    modelServer: modelServer.address,
    bundle: BUNDLE_DIR,
    metricsPort: 0,
    modelServerCa: ca.cert,
  };
  const trusted = await startGateway(
    defaultConfig({
      ...base,
      dataDir: dataDirs[0]!,
      modelServerClientCert: gwClient.cert,
      modelServerClientKey: gwClient.key,
    }),
    { logger: silentLogger(), healthIntervalMs: 200 },
  );
  const anonymous = await startGateway(defaultConfig({ ...base, dataDir: dataDirs[1]! }), {
    logger: silentLogger(),
    healthIntervalMs: 200,
  });
  try {
    const h = healthClient(trusted.address);
    await waitFor(async () => (await healthStatus(h)) === 'SERVING', 10_000, 'SERVING over mTLS');
    h.close();
    const h2 = healthClient(anonymous.address);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(
      await healthStatus(h2),
      'NOT_SERVING',
      'the model server refuses a gateway without a certificate',
    );
    h2.close();
  } finally {
    await trusted.close();
    await anonymous.close();
    await modelServer.close();
    for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
  }
});
