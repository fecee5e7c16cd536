/** The span tree of one Recommend (and of ingest), recorded with an in-memory exporter; the trace reaches the model server. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { SpanKind } from '@opentelemetry/api';
import { startTelemetry, type Telemetry } from '../../src/telemetry/otel.js';
import type { RunningGateway } from '../../src/gateway/server.js';
import type { RecommenderClient } from '../../src/client/recommender-client.js';
import { ingest, recommend, startStack, waitFor, type Stack } from './helpers.js';

const exporter = new InMemorySpanExporter();
let telemetry: Telemetry;
let stack: Stack;
let gateway: RunningGateway;
let c: RecommenderClient;
let metricsPort: number;

before(async () => {
  metricsPort = await freePort();
  telemetry = await startTelemetry({
    serviceName: 'automr-test',
    spanProcessors: [new SimpleSpanProcessor(exporter)],
    metricsPort,
  });
  stack = await startStack('automr-trace-');
  ({ gateway, client: c } = stack);
});

after(async () => {
  await stack.close();
  await telemetry.shutdown();
});

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const childrenOf = (spans: ReadableSpan[], parent: ReadableSpan) =>
  spans.filter((s) => parentOf(s) === parent.spanContext().spanId);

void test('one Recommend: server span → memory.read, retrieve, triton.infer automr_recommend → model server, stream', async () => {
  const catalog = gateway.bundle.catalog;
  const events = Array.from({ length: 15 }, (_, i) => ({
    event_id: `t${i}`,
    user_id: 'trace-user',
    item_id: catalog[i]!.itemId,
    timestamp_ms: 1_700_000_000_000 + i,
  }));
  assert.equal((await ingest(c, events)).acks.length, 15);
  await waitFor(() => Promise.resolve(gateway.encoder.backlog() === 0), 10_000, 'encoding');

  // Ingest spans: ingest → memory.write; the encoding job runs as a child of an ingest span.
  const ingestSpans = exporter.getFinishedSpans().filter((s) => s.name === 'ingest');
  assert.equal(ingestSpans.length, 15);
  const all = exporter.getFinishedSpans();
  assert.ok(ingestSpans.every((s) => childrenOf(all, s).some((ch) => ch.name === 'memory.write')));
  const encode = all.find(
    (s) => s.name === 'encode' && ingestSpans.some((i) => i.spanContext().spanId === parentOf(s)),
  );
  assert.ok(encode, 'encode is a child of an ingest span');
  const lower = childrenOf(all, encode).find((s) => s.name === 'triton.infer llm_lower');
  assert.ok(lower, 'encode → triton.infer llm_lower');
  assert.equal(lower.kind, SpanKind.CLIENT);

  exporter.reset();
  const rec = await recommend(c, 'trace-user', 5, 1);
  assert.equal(rec.error, undefined);
  assert.equal(rec.summary?.retrieved.length, 1);

  const spans = exporter.getFinishedSpans();
  const root = spans.find((s) => s.name === 'automr.v1.RecommenderService/Recommend');
  assert.ok(root, 'a Recommend server span');
  assert.equal(root.kind, SpanKind.SERVER);
  const trace = spans.filter((s) => s.spanContext().traceId === root.spanContext().traceId);
  const names = childrenOf(trace, root).map((s) => s.name);
  // The consumed set is read when the exclusion applies (the committed bundle's policy turns it on by default).
  const consumedRead = gateway.bundle.policy.excludeConsumed ? ['memory.consumed'] : [];
  assert.deepEqual(
    names.sort(),
    [...consumedRead, 'memory.read', 'retrieve', 'stream', 'triton.infer automr_recommend'].sort(),
  );
  const infer = trace.find((s) => s.name === 'triton.infer automr_recommend')!;
  assert.equal(infer.kind, SpanKind.CLIENT);
  const served = childrenOf(trace, infer);
  assert.ok(
    served.some((s) => s.name === 'triton.ModelInfer' && s.kind === SpanKind.SERVER),
    'the trace is carried into the model server',
  );
});

void test('metrics are exported for Prometheus: request and stage latency, ingest lag, memory sizes', async () => {
  assert.equal((await recommend(c, 'trace-user', 3)).items.length, 3);
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  for (const series of [
    'automr_stage_duration_ms_bucket{stage="infer"',
    'automr_stage_duration_ms_bucket{stage="memory.write"',
    'automr_ingest_lag_ms_count',
    'automr_memory_size_count{kind="history"',
    'automr_ingest_events_total{status="ACCEPTED"',
  ]) {
    assert.ok(text.includes(series), `missing ${series}`);
  }
  // rpc.server.call.duration (seconds) as the OpenTelemetry RPC conventions name it and its attributes.
  assert.match(
    text,
    /rpc_server_call_duration_bucket\{[^}]*rpc_method="Recommend"[^}]*rpc_grpc_status_code="0"/,
  );
  assert.match(text, /# UNIT rpc_server_call_duration s/);
  // The resource published with the metrics names the service, not the host or the process.
  assert.doesNotMatch(text, /process_command|process_owner|process_pid|host_name|process_executable/);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
