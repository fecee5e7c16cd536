/**
 * The benchmark report: one JSON document (headline figures plus the full sweep) and its markdown
 * rendering for stdout. Every throughput figure is also given as a ratio to the echo floor of the same
 * run, because absolute numbers on a shared 2-core machine drift from run to run.
 */
import type { LatencySummary } from './histogram.js';

export interface RetrieverFigure {
  implementation: string;
  elements: number;
  d_model: number;
  calls: number;
  latency: LatencySummary;
  p50_us: number;
  p99_us: number;
  /** Concurrent requests coalesced into each run (absent: one request per call, back to back). */
  requests_per_run?: number;
  /** With `requests_per_run`: wall time and this process's CPU time per request (µs). */
  us_per_request?: number;
  cpu_us_per_request?: number;
}

export interface StoreFloorFigure {
  outstanding: number;
  eps: number;
  ack_latency: LatencySummary;
  cpu_ms_per_event: number;
}

export interface SweepPoint {
  concurrency: number;
  rps: number;
  latency: LatencySummary;
  errors: number;
  /** Gateway's own share per request (end-to-end minus model-server time), when measured. */
  overhead?: LatencySummary;
  /** CPU time (all threads) the measured server process spent per call: robust to machine-wide load. */
  server_cpu_ms_per_request?: number;
  /** Recommend only: CPU time the model server spent per Recommend. */
  model_server_cpu_ms_per_request?: number;
  /** Recommend only: ModelInfer calls per Recommend (below 1 when concurrent Recommends are coalesced). */
  model_calls_per_request?: number;
}

export interface OpenLoopPoint {
  target_rps: number;
  achieved_rps: number;
  latency: LatencySummary;
  service_latency: LatencySummary;
  dropped: number;
  errors: number;
}

export interface IngestFigure {
  store: string;
  mode: string;
  eps: number;
  ack_latency: LatencySummary;
  accepted: number;
  rejected: number;
  errors: number;
  /** Elements not yet encoded right after the load stopped, over the sampled users. */
  pending_encodings_at_stop?: number;
  /** Time until every sampled user's memory was encoded, after the load stopped. */
  encoding_drain_ms?: number;
  gateway_cpu_ms_per_event?: number;
  model_server_cpu_ms_per_event?: number;
  /** Cores the whole machine kept busy over the run (every process, the load generator included). */
  machine_busy_cores?: number;
}

/** One bulk import (`npm run import`'s path): the raw phase, and on lmdb the encode phase after it. */
export interface ImportFigure {
  store: string;
  /** `synthetic <users>x<events>` or the dataset folder given with `--import-dataset`. */
  source: string;
  rows: number;
  accepted: number;
  rejected: number;
  raw_s: number;
  raw_eps: number;
  users: number;
  encode_s?: number;
  /** Memory elements encoded (llm_lower prompts) and the rates of the encode phase. */
  encoded_elements?: number;
  encode_elements_per_s?: number;
  encode_users_per_s?: number;
  encode_failed_users?: number;
  model_server_cpu_ms_per_element?: number;
}

/** What the exclusion input adds per Recommend: ModelInfer bytes and the gateway's mask-building CPU time. */
export interface ExclusionFigure {
  catalog_items: number;
  mask_bytes: number;
  infer_request_bytes_without_mask: number;
  infer_request_bytes_with_mask: number;
  added_bytes: number;
  /** Microseconds to build one request's mask, per case. */
  build_us: Record<string, number>;
}

export interface TargetCheck {
  name: string;
  target: string;
  value: number | null;
  met: boolean | null;
}

export interface BenchReport {
  echo_rps: number | null;
  recommend_rps: number | null;
  recommend_to_echo_ratio: number | null;
  /** The model server alone at c=64 (the ceiling for Recommend on this machine) and Recommend's share of it. */
  model_server_rps: number | null;
  recommend_to_model_server_ratio: number | null;
  /** CPU per request at c=64, same run: the gateway per Recommend, the echo server per call, and their ratio. */
  gateway_cpu_ms_per_recommend: number | null;
  echo_server_cpu_ms_per_call: number | null;
  gateway_to_echo_cpu_ratio: number | null;
  overhead_p50_ms: number | null;
  overhead_p99_ms: number | null;
  ingest_eps: number | null;
  ingest_redis_eps: number | null;
  ingest_p99_ms: number | null;
  /** The same closed loop through IngestBatch (`--ingest-batch` events per message): lmdb, Redis, lmdb ack p99. */
  ingest_batch_eps: number | null;
  ingest_redis_batch_eps: number | null;
  ingest_batch_p99_ms: number | null;
  /** Bulk import: raw events/s into lmdb and Redis, memory elements encoded per second (lmdb run). */
  import_eps: number | null;
  import_redis_eps: number | null;
  import_encode_elements_per_s: number | null;
  retriever_p50_us: number | null;
  retriever_p99_us: number | null;
  /** Retriever figures: the gateway's adapter as served first, then the bare onnxruntime floor. */
  retriever: RetrieverFigure[];
  bytes_per_user: Record<string, number>;
  /** lmdb alone with the gateway's durable append pattern, same outstanding appends as the Ingest load. */
  store_floor: StoreFloorFigure | null;
  ingest_to_store_floor_ratio: number | null;
  /** The Redis store adapter alone (its append script), same outstanding appends as the Ingest load. */
  redis_store_floor: StoreFloorFigure | null;
  ingest_redis_to_store_floor_ratio: number | null;
  model_bytes_per_request: { request: number; response: number; calls: number } | null;
  message_bytes: { request: number; response: number } | null;
  exclusion: ExclusionFigure | null;
  targets: TargetCheck[];
  sweep: {
    echo: SweepPoint[];
    recommend: SweepPoint[];
    /** The model server alone, driven with the gateway's ensemble request. */
    model_server: SweepPoint[];
    recommend_open_loop: OpenLoopPoint[];
    ingest: IngestFigure[];
    import: ImportFigure[];
  };
  profiles: Record<
    string,
    {
      file: string;
      top: ProfileRow[];
      packages?: { package: string; self_ms: number; self_pct: number }[];
      inclusive?: ProfileRow[];
    }
  >;
  environment: Record<string, unknown>;
  notes: string[];
}

export interface ProfileRow {
  function: string;
  location: string;
  self_ms: number;
  self_pct: number;
}

export function emptyReport(environment: Record<string, unknown>): BenchReport {
  return {
    echo_rps: null,
    recommend_rps: null,
    recommend_to_echo_ratio: null,
    gateway_cpu_ms_per_recommend: null,
    echo_server_cpu_ms_per_call: null,
    gateway_to_echo_cpu_ratio: null,
    model_server_rps: null,
    recommend_to_model_server_ratio: null,
    overhead_p50_ms: null,
    overhead_p99_ms: null,
    ingest_eps: null,
    ingest_redis_eps: null,
    ingest_p99_ms: null,
    ingest_batch_eps: null,
    ingest_redis_batch_eps: null,
    ingest_batch_p99_ms: null,
    import_eps: null,
    import_redis_eps: null,
    import_encode_elements_per_s: null,
    retriever_p50_us: null,
    retriever_p99_us: null,
    retriever: [],
    bytes_per_user: {},
    store_floor: null,
    ingest_to_store_floor_ratio: null,
    redis_store_floor: null,
    ingest_redis_to_store_floor_ratio: null,
    model_bytes_per_request: null,
    message_bytes: null,
    exclusion: null,
    targets: [],
    sweep: { echo: [], recommend: [], model_server: [], recommend_open_loop: [], ingest: [], import: [] },
    profiles: {},
    environment,
    notes: [],
  };
}

const ratio = (a: number | null, b: number | null): number | null =>
  a === null || b === null || b === 0 ? null : Math.round((a / b) * 1000) / 1000;

/** Fills the headline figures and the target checks from the sweep. */
export function finalizeReport(report: BenchReport): BenchReport {
  const at64 = (points: SweepPoint[]): SweepPoint | undefined =>
    points.find((p) => p.concurrency === 64) ?? points.at(-1);
  const echo = at64(report.sweep.echo);
  const recommend = at64(report.sweep.recommend);
  report.echo_rps = echo === undefined ? null : Math.round(echo.rps);
  report.recommend_rps = recommend === undefined ? null : Math.round(recommend.rps);
  report.recommend_to_echo_ratio = ratio(report.recommend_rps, report.echo_rps);
  const model = at64(report.sweep.model_server);
  report.model_server_rps = model === undefined ? null : Math.round(model.rps);
  report.recommend_to_model_server_ratio = ratio(report.recommend_rps, report.model_server_rps);
  report.gateway_cpu_ms_per_recommend = recommend?.server_cpu_ms_per_request ?? null;
  report.echo_server_cpu_ms_per_call = echo?.server_cpu_ms_per_request ?? null;
  report.gateway_to_echo_cpu_ratio = ratio(
    report.gateway_cpu_ms_per_recommend,
    report.echo_server_cpu_ms_per_call,
  );
  const c1 = report.sweep.recommend.find((p) => p.concurrency === 1);
  report.overhead_p50_ms = c1?.overhead?.p50_ms ?? null;
  report.overhead_p99_ms = c1?.overhead?.p99_ms ?? null;
  const lmdbClosed = report.sweep.ingest.find((f) => f.store === 'lmdb' && f.mode.startsWith('closed'));
  const redisClosed = report.sweep.ingest.find((f) => f.store === 'redis' && f.mode.startsWith('closed'));
  report.ingest_eps = lmdbClosed === undefined ? null : Math.round(lmdbClosed.eps);
  report.ingest_redis_eps = redisClosed === undefined ? null : Math.round(redisClosed.eps);
  report.ingest_p99_ms = lmdbClosed?.ack_latency.p99_ms ?? null;
  const lmdbBatch = report.sweep.ingest.find((f) => f.store === 'lmdb' && f.mode.startsWith('batch'));
  const redisBatch = report.sweep.ingest.find((f) => f.store === 'redis' && f.mode.startsWith('batch'));
  report.ingest_batch_eps = lmdbBatch === undefined ? null : Math.round(lmdbBatch.eps);
  report.ingest_redis_batch_eps = redisBatch === undefined ? null : Math.round(redisBatch.eps);
  report.ingest_batch_p99_ms = lmdbBatch?.ack_latency.p99_ms ?? null;
  report.ingest_to_store_floor_ratio = ratio(report.ingest_eps, report.store_floor?.eps ?? null);
  report.ingest_redis_to_store_floor_ratio = ratio(
    report.ingest_redis_eps,
    report.redis_store_floor?.eps ?? null,
  );
  const lmdbImport = report.sweep.import.find((f) => f.store === 'lmdb');
  report.import_eps = lmdbImport?.raw_eps ?? null;
  report.import_redis_eps = report.sweep.import.find((f) => f.store === 'redis')?.raw_eps ?? null;
  report.import_encode_elements_per_s = lmdbImport?.encode_elements_per_s ?? null;

  const check = (
    name: string,
    target: string,
    value: number | null,
    ok: (v: number) => boolean,
  ): TargetCheck => ({
    name,
    target,
    value,
    met: value === null ? null : ok(value),
  });
  report.targets = [
    check(
      'gateway CPU per Recommend / echo CPU per call at c=64',
      '<= 3',
      report.gateway_to_echo_cpu_ratio,
      (v) => v <= 3,
    ),
    check(
      'recommend_rps / model_server_rps at c=64',
      '>= 0.8',
      report.recommend_to_model_server_ratio,
      (v) => v >= 0.8,
    ),
    check('recommend_rps / echo_rps at c=64', '>= 0.5', report.recommend_to_echo_ratio, (v) => v >= 0.5),
    check('gateway overhead p50 at c=1 (ms)', '<= 0.5', report.overhead_p50_ms, (v) => v <= 0.5),
    check('gateway overhead p99 at c=1 (ms)', '<= 2', report.overhead_p99_ms, (v) => v <= 2),
    check('durable ingest into lmdb (events/s)', '>= 20000', report.ingest_eps, (v) => v >= 20_000),
    check('durable ingest into Redis (events/s)', '>= 12000', report.ingest_redis_eps, (v) => v >= 12_000),
    check('Ingest ack p99 into lmdb (ms)', '<= 50', report.ingest_p99_ms, (v) => v <= 50),
    check(
      'durable IngestBatch into lmdb (events/s)',
      '>= 20000',
      report.ingest_batch_eps,
      (v) => v >= 20_000,
    ),
    check(
      'durable IngestBatch into Redis (events/s)',
      '>= 12000',
      report.ingest_redis_batch_eps,
      (v) => v >= 12_000,
    ),
    check('IngestBatch ack p99 into lmdb (ms)', '<= 50', report.ingest_batch_p99_ms, (v) => v <= 50),
    check('bulk import into lmdb (raw events/s)', '>= 20000', report.import_eps, (v) => v >= 20_000),
    check('retriever p99 with 90 elements (us)', '<= 200', report.retriever_p99_us, (v) => v <= 200),
  ];
  return report;
}

const fmt = (value: number | null | undefined, digits = 2): string =>
  value === null || value === undefined ? 'n/a' : value.toFixed(digits);

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function renderMarkdown(report: BenchReport): string {
  const out: string[] = [];
  const env = report.environment;
  const str = (value: unknown): string =>
    typeof value === 'string' || typeof value === 'number' ? String(value) : '?';
  out.push(
    `## AutoMR gateway benchmark (${str(env.mode)}, ${str(env.cpus)} CPUs, node ${str(env.node)}, load generator: ${str(env.loadgen)})`,
    '',
    `Machine load average (1/5/15 min) at start ${JSON.stringify(env.loadavg_at_start ?? null)}, at end ${JSON.stringify(env.loadavg_at_end ?? null)}; ` +
      'throughput on an oversubscribed machine follows the CPU share each process gets, so read the ratios and the CPU-per-request columns first.',
    '',
  );
  out.push(
    table(
      ['target', 'goal', 'measured', 'met'],
      report.targets.map((t) => [
        t.name,
        t.target,
        fmt(t.value, 3),
        t.met === null ? 'n/a' : t.met ? 'yes' : 'NO',
      ]),
    ),
    '',
  );
  out.push('### Recommend vs. transport floor (closed loop)', '');
  const rows: string[][] = [];
  for (const echo of report.sweep.echo) {
    const rec = report.sweep.recommend.find((p) => p.concurrency === echo.concurrency);
    rows.push([
      String(echo.concurrency),
      fmt(echo.rps, 0),
      fmt(echo.latency.p50_ms),
      fmt(echo.latency.p99_ms),
      fmt(rec?.rps, 0),
      fmt(rec?.latency.p50_ms),
      fmt(rec?.latency.p95_ms),
      fmt(rec?.latency.p99_ms),
      rec === undefined ? 'n/a' : fmt(rec.rps / echo.rps, 3),
      fmt(rec?.overhead?.p50_ms),
      fmt(rec?.overhead?.p99_ms),
      fmt(echo.server_cpu_ms_per_request, 3),
      fmt(rec?.server_cpu_ms_per_request, 3),
      fmt(rec?.model_server_cpu_ms_per_request, 3),
      fmt(rec?.model_calls_per_request, 2),
      String((rec?.errors ?? 0) + echo.errors),
    ]);
  }
  out.push(
    table(
      [
        'conc',
        'echo rps',
        'echo p50 ms',
        'echo p99 ms',
        'rec rps',
        'rec p50 ms',
        'rec p95 ms',
        'rec p99 ms',
        'rec/echo',
        'overhead p50 ms',
        'overhead p99 ms',
        'echo CPU ms/call',
        'gateway CPU ms/req',
        'model srv CPU ms/req',
        'ModelInfer/req',
        'errors',
      ],
      rows,
    ),
    '',
  );
  if (report.sweep.model_server.length > 0) {
    out.push('### Model server alone (automr_recommend ModelInfer, closed loop)', '');
    out.push(
      table(
        ['conc', 'rps', 'p50 ms', 'p99 ms', 'errors'],
        report.sweep.model_server.map((p) => [
          String(p.concurrency),
          fmt(p.rps, 0),
          fmt(p.latency.p50_ms),
          fmt(p.latency.p99_ms),
          String(p.errors),
        ]),
      ),
      '',
    );
  }
  if (report.sweep.recommend_open_loop.length > 0) {
    out.push('### Recommend, open loop (latency from intended arrival)', '');
    out.push(
      table(
        ['target rps', 'achieved rps', 'p50 ms', 'p95 ms', 'p99 ms', 'service p99 ms', 'dropped', 'errors'],
        report.sweep.recommend_open_loop.map((p) => [
          fmt(p.target_rps, 0),
          fmt(p.achieved_rps, 0),
          fmt(p.latency.p50_ms),
          fmt(p.latency.p95_ms),
          fmt(p.latency.p99_ms),
          fmt(p.service_latency.p99_ms),
          String(p.dropped),
          String(p.errors),
        ]),
      ),
      '',
    );
  }
  if (report.sweep.ingest.length > 0) {
    out.push('### Ingest (durable acks)', '');
    out.push(
      table(
        [
          'store',
          'mode',
          'events/s',
          'ack p50 ms',
          'ack p99 ms',
          'rejected',
          'errors',
          'pending at stop',
          'encode drain ms',
          'gateway CPU ms/event',
          'model srv CPU ms/event',
          'machine busy cores',
        ],
        report.sweep.ingest.map((f) => [
          f.store,
          f.mode,
          fmt(f.eps, 0),
          fmt(f.ack_latency.p50_ms),
          fmt(f.ack_latency.p99_ms),
          String(f.rejected),
          String(f.errors),
          f.pending_encodings_at_stop === undefined ? 'n/a' : String(f.pending_encodings_at_stop),
          fmt(f.encoding_drain_ms, 0),
          fmt(f.gateway_cpu_ms_per_event, 3),
          fmt(f.model_server_cpu_ms_per_event, 3),
          fmt(f.machine_busy_cores, 2),
        ]),
      ),
      '',
    );
  }
  if (report.sweep.import.length > 0) {
    out.push(
      '### Bulk import (npm run import: raw rows through the batched store writes, then encoding)',
      '',
    );
    out.push(
      table(
        [
          'store',
          'rows',
          'raw s',
          'raw events/s',
          'users',
          'encode s',
          'elements encoded',
          'elements/s',
          'users/s',
          'model srv CPU ms/element',
          'source',
        ],
        report.sweep.import.map((f) => [
          f.store,
          String(f.rows),
          fmt(f.raw_s, 3),
          fmt(f.raw_eps, 0),
          String(f.users),
          fmt(f.encode_s, 3),
          f.encoded_elements === undefined ? 'n/a' : String(f.encoded_elements),
          fmt(f.encode_elements_per_s, 0),
          fmt(f.encode_users_per_s, 0),
          fmt(f.model_server_cpu_ms_per_element, 3),
          f.source,
        ]),
      ),
      '',
    );
  }
  const extras: string[][] = [];
  if (report.retriever.length === 0) {
    extras.push([
      'retriever p50 / p99 (us, 90 elements)',
      `${fmt(report.retriever_p50_us, 1)} / ${fmt(report.retriever_p99_us, 1)}`,
    ]);
  }
  for (const r of report.retriever) {
    if (r.requests_per_run !== undefined) {
      extras.push([
        `retriever, ${r.requests_per_run} requests of ${r.elements} elements per run: ${r.implementation} (run p50 / p99 us; per request: wall us, CPU us)`,
        `${fmt(r.p50_us, 1)} / ${fmt(r.p99_us, 1)}; ${fmt(r.us_per_request, 1)}, ${fmt(r.cpu_us_per_request, 1)}`,
      ]);
      continue;
    }
    extras.push([
      `retriever p50 / p99 (us, 90 elements): ${r.implementation}`,
      `${fmt(r.p50_us, 1)} / ${fmt(r.p99_us, 1)}`,
    ]);
  }
  if (report.store_floor !== null) {
    const f = report.store_floor;
    extras.push([
      `ingest floor: lmdb alone, ${f.outstanding} outstanding (events/s, ack p99 ms, CPU ms/event)`,
      `${f.eps} / ${fmt(f.ack_latency.p99_ms)} / ${fmt(f.cpu_ms_per_event, 3)}`,
    ]);
    extras.push(['ingest (lmdb, closed) / ingest floor', fmt(report.ingest_to_store_floor_ratio, 3)]);
  }
  if (report.redis_store_floor !== null) {
    const f = report.redis_store_floor;
    extras.push([
      `ingest floor: Redis store alone, ${f.outstanding} outstanding (events/s, ack p99 ms, CPU ms/event)`,
      `${f.eps} / ${fmt(f.ack_latency.p99_ms)} / ${fmt(f.cpu_ms_per_event, 3)}`,
    ]);
    extras.push(['ingest (Redis, closed) / Redis floor', fmt(report.ingest_redis_to_store_floor_ratio, 3)]);
  }
  for (const [store, bytes] of Object.entries(report.bytes_per_user)) {
    extras.push([`bytes per user (${store})`, fmt(bytes, 0)]);
  }
  extras.push([
    'CPU per request at c=64: gateway per Recommend / echo server per call (ms)',
    `${fmt(report.gateway_cpu_ms_per_recommend, 3)} / ${fmt(report.echo_server_cpu_ms_per_call, 3)} = ${fmt(report.gateway_to_echo_cpu_ratio, 2)}`,
  ]);
  extras.push([
    'Recommend / model server alone at c=64',
    `${fmt(report.recommend_rps, 0)} / ${fmt(report.model_server_rps, 0)} = ${fmt(report.recommend_to_model_server_ratio, 3)}`,
  ]);
  if (report.model_bytes_per_request !== null) {
    const m = report.model_bytes_per_request;
    extras.push([
      'gateway <-> model server bytes per Recommend (req / resp / calls)',
      `${fmt(m.request, 0)} / ${fmt(m.response, 0)} / ${fmt(m.calls, 2)}`,
    ]);
  }
  if (report.exclusion !== null) {
    const x = report.exclusion;
    extras.push([
      `exclude_mask bytes added per ModelInfer (${x.catalog_items} items, ${x.mask_bytes}-byte mask)`,
      `+${x.added_bytes} (${x.infer_request_bytes_without_mask} → ${x.infer_request_bytes_with_mask})`,
    ]);
    for (const [name, us] of Object.entries(x.build_us))
      extras.push([`exclusion mask build, gateway CPU (us): ${name.replaceAll('_', ' ')}`, fmt(us, 2)]);
  }
  if (report.message_bytes !== null) {
    extras.push([
      'client <-> gateway bytes per Recommend (req / resp)',
      `${report.message_bytes.request} / ${report.message_bytes.response}`,
    ]);
  }
  out.push(table(['figure', 'value'], extras), '');
  for (const [name, profile] of Object.entries(report.profiles)) {
    out.push(`### Profile: ${name} (top self time, ${profile.file})`, '');
    out.push(
      table(
        ['function', 'location', 'self ms', 'self %'],
        profile.top.map((r) => [r.function, r.location, fmt(r.self_ms, 1), fmt(r.self_pct, 1)]),
      ),
      '',
    );
  }
  if (report.notes.length > 0) out.push('Notes:', ...report.notes.map((n) => `- ${n}`), '');
  return out.join('\n');
}
