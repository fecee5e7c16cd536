/**
 * The servers a benchmark run needs, each in its own host child process (see host.ts): the echo floor,
 * the local model server, and gateways over the embedded store or Redis.
 */
import { RpcChild } from './child.js';

export interface HostStats {
  /** Unary calls this process made to the model server, and the protobuf bytes they carried. */
  modelCalls: number;
  modelRequestBytes: number;
  modelResponseBytes: number;
  modelTimeNs: number;
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

  stats(): Promise<HostStats> {
    return this.child.request<HostStats>({ type: 'stats' });
  }

  stop(): Promise<void> {
    return this.child.stop(20_000);
  }
}
