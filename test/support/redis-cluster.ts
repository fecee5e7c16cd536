/**
 * A throw-away Redis Cluster for tests: three masters (no replicas) started from the machine's `redis-server` on
 * free ports in a temp dir, joined with `redis-cli --cluster create`, every node with AOF (appendfsync always) so
 * a restarted master keeps what it acknowledged. Optionally with a password (`requirepass` + `masterauth`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

export interface RedisClusterNode {
  port: number;
  dir: string;
  process: ChildProcess;
}

export interface RedisCluster {
  nodes: RedisClusterNode[];
  /** `redis-cluster://[user:pass@]127.0.0.1:p1,...` */
  url: string;
  /** Stops one node (SIGTERM by default, or SIGKILL), waits for its exit and starts it again on the same port and data dir. */
  restart(index: number, signal?: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function startNode(port: number, dir: string, password?: string): ChildProcess {
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    `nodes-${port}.conf`,
    '--cluster-node-timeout',
    '2000',
    '--appendonly',
    'yes',
    '--appendfsync',
    'always',
    '--save',
    '',
    '--daemonize',
    'no',
    '--logfile',
    path.join(dir, 'redis.log'),
  ];
  if (password !== undefined) args.push('--requirepass', password, '--masterauth', password);
  return spawn('redis-server', args, { stdio: 'ignore' });
}

async function waitPing(port: number, password: string | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = new Redis({
      port,
      host: '127.0.0.1',
      password,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    r.on('error', () => {}); // refused while the node starts: retried below
    try {
      await r.connect();
      if ((await r.ping()) === 'PONG') return;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis on ${port} did not start`);
    } finally {
      r.disconnect();
    }
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function waitClusterOk(port: number, password: string | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const r = new Redis({ port, host: '127.0.0.1', password, maxRetriesPerRequest: 1 });
  try {
    for (;;) {
      const info = String(await r.call('CLUSTER', 'INFO'));
      if (info.includes('cluster_state:ok')) return;
      if (Date.now() > deadline) throw new Error(`redis cluster on ${port} not ok:\n${info}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  } finally {
    r.disconnect();
  }
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => child.once('exit', () => resolve()));

export async function startRedisCluster(options: { password?: string } = {}): Promise<RedisCluster> {
  const { password } = options;
  const root = mkdtempSync(path.join(tmpdir(), 'automr-rcluster-'));
  const nodes: RedisClusterNode[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const dir = path.join(root, String(port));
      spawnSync('mkdir', ['-p', dir]);
      nodes.push({ port, dir, process: startNode(port, dir, password) });
    }
    await Promise.all(nodes.map((n) => waitPing(n.port, password, 10_000)));
    const create = spawnSync(
      'redis-cli',
      [
        ...(password !== undefined ? ['-a', password, '--no-auth-warning'] : []),
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (create.status !== 0)
      throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    await Promise.all(nodes.map((n) => waitClusterOk(n.port, password, 10_000)));
  } catch (error) {
    for (const n of nodes) n.process.kill('SIGKILL');
    await Promise.all(nodes.map((n) => exited(n.process)));
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
  const auth = password !== undefined ? `default:${encodeURIComponent(password)}@` : '';
  return {
    nodes,
    url: `redis-cluster://${auth}${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    async restart(index, signal = 'SIGTERM') {
      const node = nodes[index];
      if (node === undefined) throw new Error(`no node ${index}`);
      node.process.kill(signal);
      await exited(node.process);
      node.process = startNode(node.port, node.dir, password);
      await waitPing(node.port, password, 10_000);
      await waitClusterOk(node.port, password, 10_000);
    },
    async stop() {
      for (const n of nodes) n.process.kill('SIGKILL');
      await Promise.all(nodes.map((n) => exited(n.process)));
      rmSync(root, { recursive: true, force: true });
    },
  };
}
