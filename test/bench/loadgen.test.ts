import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEchoServer } from '../../src/bench/echo-server.js';
import { openTarget } from '../../src/bench/grpc-target.js';
import { decodeHistogram, summarize } from '../../src/bench/histogram.js';
import { mergeResults, runClosedLoop, runOpenLoop, type CallOutcome } from '../../src/bench/loadgen.js';
import { ChildLoadRunner } from '../../src/bench/load-runner.js';

void test('closed loop against the echo floor: every call succeeds and is recorded', async () => {
  const server = await startEchoServer();
  const target = openTarget({ kind: 'echo', address: server.address, requestBytes: 40, responseBytes: 900 });
  try {
    const result = await runClosedLoop(target.call, {
      type: 'closed',
      concurrency: 4,
      warmupMs: 50,
      durationMs: 300,
    });
    assert.equal(result.errors, 0);
    assert.ok(result.completed > 0, `completed ${result.completed}`);
    assert.ok(result.finished >= result.completed);
    assert.equal(summarize(decodeHistogram(result.latency)).count, result.completed);
    assert.ok(result.rps > 0);
    assert.equal(result.overhead, undefined, 'the echo server reports no model time');
  } finally {
    target.close();
    await server.close();
  }
});

void test('open loop sends on schedule and measures from the intended start, so a slow server shows queueing', async () => {
  let inFlight = 0;
  // A fake server that handles one call at a time, 20 ms each: at 100 arrivals/s it is overloaded 2x.
  let chain = Promise.resolve();
  const call = (): Promise<CallOutcome> => {
    inFlight += 1;
    const done = chain.then(
      () => new Promise<CallOutcome>((r) => setTimeout(() => r({ modelNs: 15e6 }), 20)),
    );
    chain = done.then(() => undefined);
    return done.finally(() => {
      inFlight -= 1;
    });
  };
  const result = await runOpenLoop(call, {
    type: 'open',
    rate: 100,
    warmupMs: 0,
    durationMs: 500,
    maxInFlight: 1000,
  });
  assert.equal(inFlight, 0);
  assert.equal(result.dropped, 0);
  assert.ok(result.completed >= 45 && result.completed <= 51, `completed ${result.completed}`);
  const latency = summarize(decodeHistogram(result.latency));
  const service = summarize(decodeHistogram(result.serviceLatency!));
  // Arrivals pile up behind the serial server: the last ones wait ~0.5 s; per-call time alone is ~20 ms.
  assert.ok(latency.max_ms > 300, `max ${latency.max_ms}`);
  assert.ok(latency.p50_ms > 100, `p50 ${latency.p50_ms}`);
  assert.ok(service.p50_ms <= latency.p50_ms);
  // Overhead = latency minus reported model time.
  assert.equal(result.accounted, result.completed);
  assert.ok(summarize(decodeHistogram(result.overhead!)).max_ms < latency.max_ms);
});

void test('open loop drops arrivals beyond maxInFlight instead of sending them', async () => {
  const never = (): Promise<CallOutcome> => new Promise((r) => setTimeout(() => r({}), 300));
  const result = await runOpenLoop(never, {
    type: 'open',
    rate: 200,
    warmupMs: 0,
    durationMs: 100,
    maxInFlight: 5,
  });
  assert.equal(result.completed, 5);
  assert.ok(result.dropped >= 10, `dropped ${result.dropped}`);
});

void test('the child-process load generator returns the same result shape over IPC', async () => {
  const server = await startEchoServer();
  const runner = new ChildLoadRunner();
  try {
    const result = await runner.run(
      { kind: 'echo', address: server.address, requestBytes: 8, responseBytes: 64 },
      { type: 'closed', concurrency: 2, warmupMs: 0, durationMs: 200 },
    );
    assert.equal(result.errors, 0);
    assert.ok(result.completed > 0);
    assert.equal(summarize(decodeHistogram(result.latency)).count, result.completed);
  } finally {
    await runner.close();
    await server.close();
  }
});

void test('mergeResults adds counts, merges histograms and recomputes the rate over the total time', async () => {
  const fast = (): Promise<CallOutcome> => Promise.resolve({ modelNs: 1000 });
  const a = await runClosedLoop(fast, { type: 'closed', concurrency: 1, warmupMs: 0, durationMs: 50 });
  const b = await runClosedLoop(fast, { type: 'closed', concurrency: 2, warmupMs: 0, durationMs: 50 });
  const merged = mergeResults([a, b]);
  assert.equal(merged.completed, a.completed + b.completed);
  assert.equal(summarize(decodeHistogram(merged.latency)).count, a.completed + b.completed);
  assert.equal(summarize(decodeHistogram(merged.overhead!)).count, a.accounted + b.accounted);
  assert.ok(Math.abs(merged.rps - merged.completed / (a.elapsedS + b.elapsedS)) < 1e-9);
});
