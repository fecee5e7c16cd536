/**
 * The servers a benchmark run needs, each in its own host child process (see host.ts): the echo floor,
 * the local model server, and gateways over the embedded store or Redis.
 */
import { RpcChild } from './child.js';

export interface HostStats {
  /** ModelInfer calls a model-server host received, and the protobuf bytes they carried. */
  modelCalls: number;
  modelRequestBytes: number;
  modelResponseBytes: number;
  /** CPU time of the whole host process (all threads: onnxruntime, lmdb, libuv), user + system, µs. */
  cpuUs?: number;
}

export class ServerHost {
  private readonly child: RpcChild;
  address = '';

  private constructor(
    readonly role: string,
    execArgv: string[],
  ) {
    this.child = new RpcChild('host', { execArgv });
  }

  static async start(
    role: string,
    options: Record<string, unknown> = {},
    execArgv: string[] = [],
  ): Promise<ServerHost> {
    const host = new ServerHost(role, execArgv);
    try {
      const started = await host.child.request<{ address: string }>({ type: 'start', role, options });
      host.address = started.address;
      return host;
    } catch (error) {
      await host.child.stop(2_000);
      throw error;
    }
  }

  /** Starts V8's CPU profiler in the host (same profiler and file format as `node --cpu-prof`). */
  startProfile(): Promise<unknown> {
    return this.child.request({ type: 'profile-start' });
  }

  stopProfile(file: string): Promise<unknown> {
    return this.child.request({ type: 'profile-stop', file });
  }

  stats(): Promise<HostStats> {
    return this.child.request<HostStats>({ type: 'stats' });
  }

  stop(): Promise<void> {
    return this.child.stop(20_000);
  }
}
