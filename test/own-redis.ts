/** A throw-away redis-server of the test's own (free port, temp dir), so tests may kill it without touching 6379. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createConnection, createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface OwnRedis {
  port: number;
  process: ChildProcess;
  kill(): Promise<void>;
}

/** Starts redis-server (AOF fsync always, in `dir`) and resolves once its port accepts connections. */
export async function startOwnRedis(dir: string, port: number, extraArgs: string[] = []): Promise<OwnRedis> {
  const child = spawn(
    'redis-server',
    [
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      ...extraArgs,
      '--port',
      String(port),
    ],
    { stdio: 'ignore' },
  );
  const readyPort = extraArgs.includes('--tls-port')
    ? Number(extraArgs[extraArgs.indexOf('--tls-port') + 1])
    : port;
  const deadline = Date.now() + 10_000;
  while (!(await accepts(readyPort))) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    port,
    process: child,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
  };
}
