/**
 * `npm start`: one command for a laptop or a single machine. Starts the local Triton-protocol model server on
 * the committed repository (unless AUTOMR_START_MODEL_SERVER=false, e.g. when AUTOMR_MODEL_SERVER points at a
 * real Triton), then the gateway with the embedded store, waits until the gateway reports SERVING, and prints
 * where everything listens. SIGINT/SIGTERM are forwarded so both children drain and exit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const gatewayAddr = env.AUTOMR_ADDR ?? '127.0.0.1:50051';
const modelServerAddr = env.AUTOMR_MODEL_SERVER ?? '127.0.0.1:8001';
const startModelServer = (env.AUTOMR_START_MODEL_SERVER ?? 'true').toLowerCase() !== 'false';
const readyTimeoutMs = Number(env.AUTOMR_START_TIMEOUT_MS ?? 60_000);

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(`Usage: npm start

Starts the local model server (${modelServerAddr}) and the gateway (${gatewayAddr}) on the committed bundle.
Environment:
  AUTOMR_ADDR                 gateway listen address (default 127.0.0.1:50051)
  AUTOMR_MODEL_SERVER         model server (Triton gRPC) address (default 127.0.0.1:8001)
  AUTOMR_START_MODEL_SERVER   set to false to use an already running Triton at AUTOMR_MODEL_SERVER
  AUTOMR_START_TIMEOUT_MS     how long to wait for SERVING (default 60000)
All other AUTOMR_* variables go to the gateway and model server; see
  node dist/cli/gateway.js --help   and   node dist/cli/model-server.js --help`);
  process.exit(0);
}

const children: ChildProcess[] = [];
let stopping = false;

function launch(name: string, script: string, extraEnv: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [join(here, script)], {
    env: { ...env, ...extraEnv },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(
        `${name} exited unexpectedly (code ${code ?? 'none'}, signal ${signal ?? 'none'}); stopping`,
      );
      void shutdown(code ?? 1);
    }
  });
  children.push(child);
  return child;
}

async function shutdown(exitCode: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Gateway first so it drains while the model server still answers, then the model server.
  for (const child of [...children].reverse()) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
  process.exit(exitCode);
}

interface HealthCheckClient {
  Check(
    request: { service: string },
    options: { deadline: number },
    callback: (error: Error | null, response?: { status?: string | number }) => void,
  ): void;
  close(): void;
}

/** Polls grpc.health.v1 until the gateway says SERVING (it does once its model server and store are ready). */
async function waitForServing(address: string, deadline: number): Promise<void> {
  const HealthClient = makeGenericClientConstructor(healthService, 'Health');
  const client = new HealthClient(address, credentials.createInsecure()) as unknown as HealthCheckClient;
  try {
    for (;;) {
      const serving = await new Promise<boolean>((resolve) => {
        client.Check({ service: '' }, { deadline: Date.now() + 1000 }, (error, response) =>
          resolve(error === null && (response?.status === 'SERVING' || response?.status === 1)),
        );
      });
      if (serving) return;
      if (Date.now() > deadline) throw new Error(`gateway at ${address} did not become ready in time`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    client.close();
  }
}

process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

if (startModelServer) {
  launch('model server', 'model-server.js', { AUTOMR_MODEL_SERVER_ADDR: modelServerAddr });
}
launch('gateway', 'gateway.js', { AUTOMR_ADDR: gatewayAddr, AUTOMR_MODEL_SERVER: modelServerAddr });
await waitForServing(gatewayAddr, Date.now() + readyTimeoutMs);
console.log(`AutoMR is up.
  gateway (automr.v1.RecommenderService, gRPC):   ${gatewayAddr}
  model server (Triton gRPC protocol):     ${modelServerAddr}${startModelServer ? ' (local)' : ' (external)'}
Try: AUTOMR_ADDR=${gatewayAddr} npm run demo     Stop: Ctrl-C`);
