/**
 * Where the load generator runs: in a child process (default; its CPU use does not land in the measured
 * server's event loop) or in this process (for comparison, and for tests).
 */
import { RpcChild } from './child.js';
import { openTarget, type OpenTarget, type TargetSpec } from './grpc-target.js';
import { runIngestLoad, type IngestLoadResult, type IngestLoadSpec } from './ingest-load.js';
import { runLoad, type LoadResult, type LoadSpec } from './loadgen.js';

export interface LoadRunner {
  run(target: TargetSpec, load: LoadSpec): Promise<LoadResult>;
  ingest(spec: IngestLoadSpec): Promise<IngestLoadResult>;
  close(): Promise<void>;
}

export class ChildLoadRunner implements LoadRunner {
  private readonly child = new RpcChild('loadgen-worker');

  run(target: TargetSpec, load: LoadSpec): Promise<LoadResult> {
    return this.child.request<LoadResult>({ type: 'run', target, load });
  }

  ingest(spec: IngestLoadSpec): Promise<IngestLoadResult> {
    return this.child.request<IngestLoadResult>({ type: 'ingest', spec });
  }

  close(): Promise<void> {
    return this.child.stop();
  }
}

export class InProcessLoadRunner implements LoadRunner {
  private readonly targets = new Map<string, OpenTarget>();

  run(target: TargetSpec, load: LoadSpec): Promise<LoadResult> {
    const key = JSON.stringify(target);
    let open = this.targets.get(key);
    if (open === undefined) {
      open = openTarget(target);
      this.targets.set(key, open);
    }
    return runLoad(open.call, load);
  }

  ingest(spec: IngestLoadSpec): Promise<IngestLoadResult> {
    return runIngestLoad(spec);
  }

  close(): Promise<void> {
    for (const open of this.targets.values()) open.close();
    this.targets.clear();
    return Promise.resolve();
  }
}
