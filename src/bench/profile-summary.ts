/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): self time per function and per package, the
 * share of busy (non-idle) time each takes. Hand-written because the format is small and stable and the
 * available npm summarisers pull in UI/visualisation dependencies.
 */
import { readFile } from 'node:fs/promises';
import type { ProfileRow } from './report.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  busyMs: number;
  functions: ProfileRow[];
  packages: { package: string; self_ms: number; self_pct: number }[];
  /** Project functions (dist/ or src/) by inclusive time (self + callees), each counted once per stack. */
  inclusive: ProfileRow[];
}

const IDLE = '(idle)';

/** Groups a script URL into a package-level bucket: an npm package, node internals, or a source file. */
export function packageOf(url: string): string {
  if (url === '') return '(native/vm)';
  if (url.startsWith('node:')) return 'node:internal';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    const name = rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? '');
    return name;
  }
  const src = url.search(/\/(dist|src)\//);
  if (src >= 0) {
    const parts = url.slice(src + 1).split('/');
    return parts.slice(0, Math.min(parts.length - 1, 3)).join('/') || url;
  }
  return url;
}

function isProjectUrl(url: string): boolean {
  return !url.includes('/node_modules/') && /\/(dist|src)\//.test(url);
}

function shortLocation(frame: CallFrame): string {
  if (frame.url === '') return '';
  const nm = frame.url.lastIndexOf('/node_modules/');
  const tail =
    nm >= 0 ? frame.url.slice(nm + '/node_modules/'.length) : frame.url.replace(/^.*\/(dist|src)\//, '$1/');
  return `${tail.replace(/^file:\/\//, '')}:${frame.lineNumber + 1}`;
}

export function summarizeProfile(profile: CpuProfile, top = 15): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) byId.set(node.id, node);
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // timeDeltas[i] is the time before sample i; attribute it to the sample's node (the V8/DevTools convention
  // credits the interval *ending* at sample i+1 to sample i, which differs only at the edges).
  for (let i = 0; i < samples.length; i += 1) {
    const id = samples[i];
    const delta = deltas[i + 1] ?? 0;
    if (id === undefined) continue;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, delta));
  }
  const functions = new Map<string, { frame: CallFrame; us: number }>();
  const packages = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    totalUs += us;
    const frame = node.callFrame;
    if (frame.functionName === IDLE) {
      idleUs += us;
      continue;
    }
    const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}`;
    const entry = functions.get(key) ?? { frame, us: 0 };
    entry.us += us;
    functions.set(key, entry);
    const pkg =
      frame.url === '' && frame.functionName.startsWith('(') ? frame.functionName : packageOf(frame.url);
    packages.set(pkg, (packages.get(pkg) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;

  // Inclusive time: walk the call tree; a function already on the current path (recursion) is not added again.
  const inclusiveUs = new Map<string, { frame: CallFrame; us: number }>();
  const subtree = new Map<number, number>();
  const totalOf = (id: number): number => {
    const cached = subtree.get(id);
    if (cached !== undefined) return cached;
    const node = byId.get(id);
    let us = selfUs.get(id) ?? 0;
    for (const child of node?.children ?? []) us += totalOf(child);
    subtree.set(id, us);
    return us;
  };
  const onPath = new Map<string, number>();
  const root = profile.nodes[0];
  const stack: { id: number; entered: boolean }[] =
    root === undefined ? [] : [{ id: root.id, entered: false }];
  while (stack.length > 0) {
    const top = stack.pop() as { id: number; entered: boolean };
    const node = byId.get(top.id);
    if (node === undefined) continue;
    const frame = node.callFrame;
    const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}`;
    if (top.entered) {
      onPath.set(key, (onPath.get(key) ?? 1) - 1);
      continue;
    }
    if (isProjectUrl(frame.url) && (onPath.get(key) ?? 0) === 0) {
      const entry = inclusiveUs.get(key) ?? { frame, us: 0 };
      entry.us += totalOf(top.id);
      inclusiveUs.set(key, entry);
    }
    onPath.set(key, (onPath.get(key) ?? 0) + 1);
    stack.push({ id: top.id, entered: true });
    for (const child of node.children ?? []) stack.push({ id: child, entered: false });
  }
  const pct = (us: number): number => (busyUs > 0 ? Math.round((us / busyUs) * 1000) / 10 : 0);
  const ms = (us: number): number => Math.round(us / 100) / 10;
  const topRows = (entries: Iterable<{ frame: CallFrame; us: number }>) =>
    [...entries]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map(({ frame, us }) => ({
        function: frame.functionName || '(anonymous)',
        location: shortLocation(frame),
        self_ms: ms(us),
        self_pct: pct(us),
      }));
  return {
    totalMs: ms(totalUs),
    idleMs: ms(idleUs),
    busyMs: ms(busyUs),
    functions: topRows(functions.values()),
    inclusive: topRows(inclusiveUs.values()),
    packages: [...packages.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ package: name, self_ms: ms(us), self_pct: pct(us) })),
  };
}

export async function summarizeProfileFile(file: string, top = 15): Promise<ProfileSummary> {
  return summarizeProfile(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, top);
}

export function renderProfileSummary(summary: ProfileSummary, title: string): string {
  const lines = [
    `### ${title}: busy ${summary.busyMs} ms of ${summary.totalMs} ms sampled (idle ${summary.idleMs} ms)`,
    '',
    '| self % | self ms | function | location |',
    '| --- | --- | --- | --- |',
    ...summary.functions.map((r) => `| ${r.self_pct} | ${r.self_ms} | ${r.function} | ${r.location} |`),
    '',
    '| incl. % | incl. ms | project function (inclusive) | location |',
    '| --- | --- | --- | --- |',
    ...summary.inclusive.map((r) => `| ${r.self_pct} | ${r.self_ms} | ${r.function} | ${r.location} |`),
    '',
    '| self % | self ms | package |',
    '| --- | --- | --- |',
    ...summary.packages.map((p) => `| ${p.self_pct} | ${p.self_ms} | ${p.package} |`),
    '',
  ];
  return lines.join('\n');
}
