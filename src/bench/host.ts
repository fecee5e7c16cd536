/**
 * A server-host child process: starts one server (echo floor, model server or gateway) and reports its
 * address, so that each server runs on its own event loop and can be profiled on its own with
 * V8's CPU profiler. Roles other than echo are loaded lazily from `host-roles.ts`, which also counts the
 * process's outgoing model-server traffic (`stats`).
 */
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { serveParent } from './child.js';
import { startEchoServer, type RunningServer } from './echo-server.js';

let running: RunningServer | undefined;
// V8's CPU profiler through the inspector (what `node --cpu-prof` uses), started and stopped around the
// measured window so start-up and seeding do not dilute the profile.
let profiler: Session | undefined;

serveParent(
  async (message) => {
    if (message.type === 'profile-start') {
      profiler ??= new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 200 });
      await profiler.post('Profiler.start');
      return { started: true };
    }
    if (message.type === 'profile-stop') {
      if (profiler === undefined) throw new Error('profiler not started');
      const { profile } = await profiler.post('Profiler.stop');
      await writeFile(String(message.file), JSON.stringify(profile));
      profiler.disconnect();
      profiler = undefined;
      return { file: message.file };
    }
    if (message.type === 'stats') {
      const { modelTraffic } = await import('./instrument.js');
      const cpu = process.cpuUsage();
      return { ...modelTraffic(), cpuUs: cpu.user + cpu.system };
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
