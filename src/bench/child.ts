/**
 * Forking the suite's own child processes (load generator, server hosts) from either the compiled
 * `dist/` tree or the TypeScript sources under tsx (tests), with a promise-based request/response over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Resolves a sibling module of this file as a runnable script plus the node flags it needs. */
export function siblingScript(baseName: string): { file: string; execArgv: string[] } {
  const self = fileURLToPath(import.meta.url);
  const isTs = self.endsWith('.ts');
  const file = fileURLToPath(new URL(`./${baseName}.${isTs ? 'ts' : 'js'}`, import.meta.url));
  return { file, execArgv: isTs ? ['--import', 'tsx'] : [] };
}

interface Reply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

function isReply(message: unknown): message is Reply {
  return typeof message === 'object' && message !== null && 'id' in message && 'ok' in message;
}

/** A child process answering `{id, ...request}` messages with `{id, ok, value|error}`. */
export class RpcChild {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited = false;
  readonly process: ChildProcess;

  constructor(baseName: string, options: { execArgv?: string[]; env?: NodeJS.ProcessEnv } = {}) {
    const { file, execArgv } = siblingScript(baseName);
    this.process = fork(file, [], {
      execArgv: [...execArgv, ...(options.execArgv ?? [])],
      env: options.env ?? process.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    this.process.on('message', (message: unknown) => {
      if (!isReply(message)) return;
      const waiter = this.pending.get(message.id);
      if (waiter === undefined) return;
      this.pending.delete(message.id);
      if (message.ok) waiter.resolve(message.value);
      else waiter.reject(new Error(message.error ?? 'child request failed'));
    });
    this.process.on('exit', (code, signal) => {
      this.exited = true;
      for (const waiter of this.pending.values()) {
        waiter.reject(new Error(`${baseName} exited (code ${String(code)}, signal ${String(signal)})`));
      }
      this.pending.clear();
    });
  }

  request<T>(message: Record<string, unknown>): Promise<T> {
    if (this.exited) return Promise.reject(new Error('child process has exited'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.process.send({ ...message, id });
    });
  }

  /** Asks the child to finish (it handles `{type:'exit'}`), then waits; kills it after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.process.once('exit', () => resolve()));
    try {
      await Promise.race([
        this.request({ type: 'exit' }),
        new Promise((resolve) => setTimeout(resolve, graceMs).unref()),
      ]);
    } catch {
      // The child exiting before it answers is the expected outcome.
    }
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs).unref();
    await exited;
    clearTimeout(timer);
  }
}

/** Child side: serves requests with `handler`; `{type:'exit'}` answers then runs `onExit` and exits. */
export function serveParent(
  handler: (message: Record<string, unknown>) => Promise<unknown>,
  onExit: () => Promise<void> = async () => {},
): void {
  process.on('message', (message: unknown) => {
    if (typeof message !== 'object' || message === null || !('id' in message)) return;
    const request = message as Record<string, unknown> & { id: number };
    const reply = (payload: Omit<Reply, 'id'>): void => {
      process.send?.({ ...payload, id: request.id });
    };
    if (request.type === 'exit') {
      onExit()
        .catch(() => undefined)
        .finally(() => {
          reply({ ok: true });
          process.disconnect?.();
          setImmediate(() => process.exit(0));
        });
      return;
    }
    handler(request).then(
      (value) => reply({ ok: true, value }),
      (error: unknown) => reply({ ok: false, error: error instanceof Error ? error.message : String(error) }),
    );
  });
  process.on('disconnect', () => {
    void onExit().finally(() => process.exit(0));
  });
}
