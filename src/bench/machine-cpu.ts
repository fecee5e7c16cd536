/**
 * The machine's busy CPU time from `os.cpus()` (all processes: the servers, the load generator, Redis, anything
 * else): whether a rate is bound by the machine's cores or by a latency chain shows in how many cores were busy.
 */
import { cpus } from 'node:os';

export interface MachineCpuSample {
  busyMs: number;
  at: number;
}

export function sampleMachineCpu(): MachineCpuSample {
  let busyMs = 0;
  for (const { times } of cpus()) busyMs += times.user + times.nice + times.sys + times.irq;
  return { busyMs, at: performance.now() };
}

/** Cores kept busy between two samples (0 to the machine's CPU count). */
export function busyCores(before: MachineCpuSample, after: MachineCpuSample): number {
  const wallMs = after.at - before.at;
  return wallMs > 0 ? (after.busyMs - before.busyMs) / wallMs : 0;
}
