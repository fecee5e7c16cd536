/** Shared test helpers: a typed Recommender client and small stream utilities. */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  credentials,
  type ChannelCredentials,
  type Client,
  type ClientReadableStream,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  RecommenderClient,
  type RecommendRequest,
  type RecommendResult as ClientResult,
} from '../../src/client/recommender-client.js';
import { loadRecommenderProto } from '../../src/shared/recommender-proto.js';
import { defaultConfig, type GatewayConfig } from '../../src/gateway/config.js';
import { startGateway, type RunningGateway } from '../../src/gateway/server.js';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { IngestResponse__Output } from '../../src/generated/automr/v1/IngestResponse.js';
import type { IngestRequest } from '../../src/generated/automr/v1/IngestRequest.js';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const BUNDLE_DIR = path.join(REPO, 'bundle');
export const MODELS_DIR = path.join(REPO, 'triton-models');

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** The real local model server on the committed models plus a gateway on a fresh embedded store, both on port 0. */
export interface Stack {
  modelServer: RunningModelServer;
  gateway: RunningGateway;
  client: RecommenderClient;
  dataDir: string;
  close(): Promise<void>;
}

/** A gateway on port 0 over `modelServer`, on a fresh embedded store in a temp dir named by `prefix`. */
export async function startGatewayOn(
  modelServer: string,
  prefix: string,
  overrides: Partial<GatewayConfig> = {},
): Promise<{ gateway: RunningGateway; dataDir: string }> {
  const dataDir = tempDir(prefix);
  const gateway = await startGateway(
    defaultConfig({
      addr: '127.0.0.1:0',
      dataDir,
      modelServer,
      bundle: BUNDLE_DIR,
      metricsPort: 0,
      ...overrides,
    }),
    { logger: silentLogger() },
  );
  return { gateway, dataDir };
}

export async function startStack(prefix: string, overrides: Partial<GatewayConfig> = {}): Promise<Stack> {
  const modelServer = await startModelServer({
    repository: MODELS_DIR,
    address: '127.0.0.1:0',
    logger: silentLogger(),
  });
  const { gateway, dataDir } = await startGatewayOn(modelServer.address, prefix, overrides);
  const c = client(gateway.address);
  return {
    modelServer,
    gateway,
    client: c,
    dataDir,
    async close() {
      c.close();
      await gateway.close();
      await modelServer.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ClientOptions {
  /** Bearer token sent on every call. */
  token?: string;
  /** Channel credentials (default plaintext). */
  credentials?: ChannelCredentials;
}

export function client(address: string, options: ClientOptions = {}): RecommenderClient {
  return new RecommenderClient(address, {
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(options.token !== undefined ? { metadata: { authorization: `Bearer ${options.token}` } } : {}),
  });
}

/** Sends events on one Ingest stream and collects one ack per event, or the error that ended the stream. */
export function ingest(
  c: RecommenderClient,
  events: IngestRequest[],
): Promise<{ acks: IngestResponse__Output[]; error?: ServiceError }> {
  return new Promise((resolve) => {
    const acks: IngestResponse__Output[] = [];
    const call = c.ingestStream();
    call.on('data', (ack: IngestResponse__Output) => acks.push(ack));
    call.on('error', (error: ServiceError) => resolve({ acks, error }));
    call.on('end', () => resolve({ acks }));
    for (const e of events) call.write(e);
    call.end();
  });
}

/** The client's Recommend result, or the error that ended the call (so tests can assert on either). */
export type RecommendResult = Partial<ClientResult> & { items: ClientResult['items']; error?: ServiceError };

export async function recommend(
  c: RecommenderClient,
  userId: string,
  topN: number,
  memoryK = 0,
  extra: Omit<RecommendRequest, 'user_id' | 'top_n' | 'memory_k'> = {},
): Promise<RecommendResult> {
  try {
    return await c.recommend({ user_id: userId, top_n: topN, memory_k: memoryK, ...extra });
  } catch (error) {
    return { items: [], error: error as ServiceError };
  }
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface GatewayChild {
  child: ChildProcess;
  address: string;
  exited: Promise<number | null>;
}

/** Starts the real gateway CLI (`src/cli/gateway.ts` through tsx) and resolves once it prints its address. */
export async function spawnGateway(env: Record<string, string>): Promise<GatewayChild> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/gateway.ts')], {
    cwd: REPO,
    env: {
      ...process.env,
      AUTOMR_ADDR: '127.0.0.1:0',
      AUTOMR_METRICS_PORT: '0',
      AUTOMR_LOG_LEVEL: 'silent',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let output = '';
  const address = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = /listening on (\S+)/.exec(output);
      if (m) resolve(m[1] as string);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => reject(new Error(`gateway exited with ${code} before listening:\n${output}`)));
  });
  return { child, address, exited };
}

export type HealthClient = Client & {
  Check(req: { service: string }, cb: (e: ServiceError | null, r?: { status: string }) => void): void;
  Watch(req: { service: string }): ClientReadableStream<{ status: string }>;
};

/** A grpc.health.v1.Health client (the health proto is loaded with the recommender's). */
export function healthClient(
  address: string,
  options: Pick<ClientOptions, 'credentials'> = {},
): HealthClient {
  const { grpc } = loadRecommenderProto();
  const ctor = (
    grpc as unknown as { grpc: { health: { v1: { Health: new (a: string, c: unknown) => HealthClient } } } }
  ).grpc.health.v1.Health;
  return new ctor(address, options.credentials ?? credentials.createInsecure());
}

export function healthStatus(h: HealthClient, service = ''): Promise<string> {
  return new Promise((resolve, reject) =>
    h.Check({ service }, (e, r) => (e ? reject(e) : resolve(r?.status ?? ''))),
  );
}

/** Starts the model-server CLI in a child process on `port` (to hang it with SIGSTOP); resolves once it is ready. */
export async function spawnModelServer(port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(REPO, 'src/cli/model-server.ts'),
      '--address',
      `127.0.0.1:${port}`,
      '--repository',
      MODELS_DIR,
    ],
    { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('model server ready')) resolve();
    });
    child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', (code) => reject(new Error(`model server exited with ${code}: ${out}`)));
  });
  return child;
}

/**
 * A temp bundle folder: the committed bundle under another `model_version` (same retriever). With
 * `ownRepository` it gets a copy of the committed models whose configs record that version (what an export of
 * the new version would serve), at `<dir>/triton-models`; otherwise it names the committed repository.
 */
export function bundleWithVersion(modelVersion: string, options: { ownRepository?: boolean } = {}): string {
  const dir = tempDir('automr-bundle-');
  const manifest = JSON.parse(readFileSync(path.join(BUNDLE_DIR, 'manifest.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const served = manifest.model_version as string;
  manifest.model_version = modelVersion;
  manifest.model_repository = MODELS_DIR;
  if (options.ownRepository === true) {
    const repo = path.join(dir, 'triton-models');
    cpSync(MODELS_DIR, repo, { recursive: true });
    for (const model of readdirSync(repo)) {
      const config = path.join(repo, model, 'config.pbtxt');
      writeFileSync(
        config,
        readFileSync(config, 'utf8').replace(`"${served}"`, JSON.stringify(modelVersion)),
      );
    }
    manifest.model_repository = repo;
  }
  manifest.retriever = { ...(manifest.retriever as object), file: path.join(BUNDLE_DIR, 'retriever.onnx') };
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}
