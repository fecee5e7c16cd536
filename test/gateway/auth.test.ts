/**
 * Caller authentication and per-method scopes on a real gateway (port 0): static tokens and JWTs against a JWKS
 * file; health stays open; reflection is off by default; a non-loopback listener without auth is refused.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { defaultConfig } from '../../src/gateway/config.js';
import { startGateway } from '../../src/gateway/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { RecommenderClient } from '../../src/client/recommender-client.js';
import { client, healthClient, healthStatus, recommend, startStack, tempDir, type Stack } from './helpers.js';

const RECOMMEND_TOKEN = 'tok-recommend-0123456789abcdef';
const ADMIN_TOKEN = 'tok-admin-0123456789abcdef0123';
let dir: string;
let staticStack: Stack;
let jwtStack: Stack;
let signingKey: CryptoKey;

before(async () => {
  dir = tempDir('automr-auth-');
  const tokens = path.join(dir, 'tokens');
  writeFileSync(
    tokens,
    `# test tokens\n${RECOMMEND_TOKEN} recommend\n${ADMIN_TOKEN} recommend,ingest,memory:read,memory:delete\n`,
  );
  staticStack = await startStack('automr-auth-static-', { auth: 'static', authTokensFile: tokens });

  const { publicKey, privateKey } = await generateKeyPair('ES256');
  signingKey = privateKey;
  const jwks = path.join(dir, 'jwks.json');
  writeFileSync(
    jwks,
    JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] }),
  );
  jwtStack = await startStack('automr-auth-jwt-', {
    auth: 'jwt',
    authJwksFile: jwks,
    authIssuer: 'https://issuer.test',
    authAudience: 'automr',
  });
});

after(async () => {
  await staticStack.close();
  await jwtStack.close();
});

const forget = async (c: RecommenderClient, userId: string) => ({ removed: await c.forgetUser(userId) });

async function refusal(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error('call was not refused');
}

void test('static tokens: no token → UNAUTHENTICATED, wrong scope → PERMISSION_DENIED, both without detail', async () => {
  const address = staticStack.gateway.address;
  const anonymous = client(address);
  const r = await recommend(anonymous, 'someone', 5);
  assert.equal(r.error?.code, status.UNAUTHENTICATED);
  assert.equal(r.error?.details, 'missing or invalid credentials');
  const noForget = await refusal(forget(anonymous, 'someone'));
  assert.equal(noForget.code, status.UNAUTHENTICATED);

  const guessed = client(address, { token: 'tok-recommend-0123456789abcdeX' });
  assert.equal((await recommend(guessed, 'someone', 5)).error?.code, status.UNAUTHENTICATED);

  const recommender = client(address, { token: RECOMMEND_TOKEN });
  const ok = await recommend(recommender, 'someone', 5);
  assert.equal(ok.error, undefined, 'a recommend-scoped token may Recommend');
  const denied = await refusal(forget(recommender, 'someone'));
  assert.equal(denied.code, status.PERMISSION_DENIED);
  assert.equal(denied.details, 'permission denied');

  const admin = client(address, { token: ADMIN_TOKEN });
  assert.equal((await forget(admin, 'someone')).removed, 0);

  // Health stays open to probes without credentials.
  const health = healthClient(address);
  assert.equal(await healthStatus(health), 'SERVING');
  for (const c of [anonymous, guessed, recommender, admin, health]) c.close();
});

void test('reflection is off unless AUTOMR_REFLECTION=true', async () => {
  const admin = client(staticStack.gateway.address, { token: ADMIN_TOKEN });
  const call = (
    admin.stub as unknown as {
      makeBidiStreamRequest(
        p: string,
        s: (x: unknown) => Buffer,
        d: (b: Buffer) => unknown,
      ): NodeJS.EventEmitter & {
        end(): void;
      };
    }
  ).makeBidiStreamRequest(
    '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
    () => Buffer.alloc(0),
    (b) => b,
  );
  const code = await new Promise<number>((resolve) => {
    call.on('error', (e: ServiceError) => resolve(e.code));
    call.on('data', () => undefined);
    call.end();
  });
  assert.equal(code, status.UNIMPLEMENTED);
  admin.close();
});

async function jwt(claims: Record<string, unknown>, options: { audience?: string; expiresIn?: string } = {}) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer('https://issuer.test')
    .setAudience(options.audience ?? 'automr')
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? '5m')
    .sign(signingKey);
}

void test('JWT: signature, issuer, audience and expiry checked; scopes from the scope claim', async () => {
  const address = jwtStack.gateway.address;
  const check = async (token: string) =>
    (await recommend(client(address, { token }), 'jwt-user', 3)).error?.code;
  assert.equal(await check(await jwt({ scope: 'recommend' })), undefined);
  assert.equal(await check(await jwt({ scope: 'ingest' })), status.PERMISSION_DENIED);
  assert.equal(await check(await jwt({ scope: 'recommend' }, { audience: 'other' })), status.UNAUTHENTICATED);
  assert.equal(await check(await jwt({ scope: 'recommend' }, { expiresIn: '-2m' })), status.UNAUTHENTICATED);
  const other = await generateKeyPair('ES256');
  const forged = await new SignJWT({ scope: 'recommend' })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer('https://issuer.test')
    .setAudience('automr')
    .setExpirationTime('5m')
    .sign(other.privateKey);
  assert.equal(await check(forged), status.UNAUTHENTICATED);
  const admin = client(address, { token: await jwt({ scp: ['memory:delete'] }) });
  assert.equal((await forget(admin, 'jwt-user')).removed, 0);
  admin.close();
});

void test('a non-loopback listener without auth needs an explicit AUTOMR_AUTH=none', async () => {
  await assert.rejects(
    startGateway(defaultConfig({ addr: '0.0.0.0:0', metricsPort: 0 }), { logger: silentLogger() }),
    (e: Error) => /AUTOMR_AUTH=none/.test(e.message),
  );
});
