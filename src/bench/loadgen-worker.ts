/**
 * The load-generator child process. It owns the grpc-js clients so that client-side CPU shows up in its
 * own process rather than inside the server being measured (see docs/PERF-NOTES.md for why).
 */
import { serveParent } from './child.js';
import { openTarget, type OpenTarget, type TargetSpec } from './grpc-target.js';
import { runIngestLoad, type IngestLoadSpec } from './ingest-load.js';
import { runLoad, type LoadSpec } from './loadgen.js';

const targets = new Map<string, OpenTarget>();

function targetFor(spec: TargetSpec): OpenTarget {
  const key = JSON.stringify(spec);
  let target = targets.get(key);
  if (target === undefined) {
    target = openTarget(spec);
    targets.set(key, target);
  }
  return target;
}

serveParent(
  async (message) => {
    if (message.type === 'ingest') return runIngestLoad(message.spec as IngestLoadSpec);
    if (message.type !== 'run') throw new Error(`unknown request ${String(message.type)}`);
    const target = targetFor(message.target as TargetSpec);
    return runLoad(target.call, message.load as LoadSpec);
  },
  () => {
    for (const target of targets.values()) target.close();
    targets.clear();
    return Promise.resolve();
  },
);
