/**
 * Starts the project's own servers inside a bench host process. The modules are imported by path at run
 * time so that the benchmark builds even while those parts of the tree are still being written.
 */
import { createServer } from 'node:net';
import type { RunningServer } from './echo-server.js';
import { installModelTrafficCounter } from './instrument.js';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function importSibling(path: string): Promise<Record<string, unknown>> {
  const self = new URL(import.meta.url);
  const ext = self.pathname.endsWith('.ts') ? '.ts' : '.js';
  return (await import(new URL(`${path}${ext}`, self).href)) as Record<string, unknown>;
}

type Closer = () => Promise<void>;

/** Finds the close-like method of whatever a `start*` function returned. */
function closerOf(handle: unknown): Closer {
  if (typeof handle === 'object' && handle !== null) {
    for (const name of ['close', 'stop', 'shutdown']) {
      const fn = (handle as Record<string, unknown>)[name];
      if (typeof fn === 'function') {
        return async () => {
          await (fn as () => unknown).call(handle);
        };
      }
    }
  }
  return () => Promise.resolve();
}

export async function startRole(role: string, options: Record<string, unknown>): Promise<RunningServer> {
  switch (role) {
    case 'model-server':
      return startModelServerRole(options);
    case 'gateway':
      return startGatewayRole(options);
    default:
      throw new Error(`unknown role ${role}`);
  }
}

async function startModelServerRole(options: Record<string, unknown>): Promise<RunningServer> {
  installModelTrafficCounter();
  const module = await importSibling('../model-server/server');
  const start = module.startModelServer as ((o: Record<string, unknown>) => Promise<unknown>) | undefined;
  if (start === undefined) throw new Error('src/model-server/server.ts does not export startModelServer');
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const handle = await start({ address, ...options });
  const bound = (handle as { address?: unknown }).address;
  return { address: typeof bound === 'string' ? bound : address, close: closerOf(handle) };
}

async function startGatewayRole(options: Record<string, unknown>): Promise<RunningServer> {
  const configModule = await importSibling('../gateway/config');
  const serverModule = await importSibling('../gateway/server');
  const defaultConfig = configModule.defaultConfig as (o: Record<string, unknown>) => Record<string, unknown>;
  const startGateway = serverModule.startGateway as
    ((c: Record<string, unknown>) => Promise<unknown>) | undefined;
  if (startGateway === undefined) throw new Error('src/gateway/server.ts does not export startGateway');
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const config = defaultConfig({ addr: address, metricsPort: 0, logLevel: 'error', ...options });
  const handle = await startGateway(config);
  const bound = (handle as { address?: unknown }).address;
  return { address: typeof bound === 'string' ? bound : address, close: closerOf(handle) };
}
