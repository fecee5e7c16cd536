/**
 * A server-host child process: starts one server (echo floor, model server or gateway) and reports its
 * address, so that each server runs on its own event loop and can be profiled on its own with
 * `node --cpu-prof`. Roles other than echo are loaded lazily from `host-roles.ts`, which also counts the
 * process's outgoing model-server traffic (`stats`).
 */
import { serveParent } from './child.js';
import { startEchoServer, type RunningServer } from './echo-server.js';

let running: RunningServer | undefined;

serveParent(
  async (message) => {
    if (message.type === 'stats') {
      const { modelTraffic } = await import('./instrument.js');
      return modelTraffic();
    }
    if (message.type !== 'start') throw new Error(`unknown request ${String(message.type)}`);
    if (running !== undefined) throw new Error('this host already runs a server');
    const role = String(message.role);
    if (role === 'echo') {
      running = await startEchoServer();
    } else {
      const { startRole } = await import('./host-roles.js');
      running = await startRole(role, message.options as Record<string, unknown>);
    }
    return { address: running.address, pid: process.pid };
  },
  async () => {
    const server = running;
    running = undefined;
    await server?.close();
  },
);
