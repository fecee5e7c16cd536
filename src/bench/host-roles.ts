import type { RunningServer } from './echo-server.js';

export function startRole(role: string, _options: Record<string, unknown>): Promise<RunningServer> {
  return Promise.reject(new Error(`unknown role ${role}`));
}
