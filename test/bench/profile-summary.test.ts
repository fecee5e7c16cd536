import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packageOf, summarizeProfile, type CpuProfile } from '../../src/bench/profile-summary.js';

const frame = (functionName: string, url: string, lineNumber = 0) => ({
  functionName,
  url,
  lineNumber,
  columnNumber: 0,
});

void test('self time is attributed per function and per package, idle excluded from the busy share', () => {
  const profile: CpuProfile = {
    startTime: 0,
    endTime: 100_000,
    nodes: [
      { id: 1, callFrame: frame('(root)', ''), children: [2, 3, 4] },
      { id: 2, callFrame: frame('(idle)', '') },
      { id: 3, callFrame: frame('serialize', 'file:///app/node_modules/@grpc/grpc-js/build/src/x.js', 9) },
      { id: 4, callFrame: frame('recommend', 'file:///app/dist/gateway/domain/recommend.js', 41) },
    ],
    // Sample i lasts timeDeltas[i + 1] microseconds.
    samples: [3, 3, 4, 2, 3],
    timeDeltas: [0, 1000, 1000, 2000, 4000, 0],
  };
  const summary = summarizeProfile(profile);
  assert.equal(summary.idleMs, 4);
  assert.equal(summary.busyMs, 4);
  assert.equal(summary.functions[0]?.function, 'serialize');
  assert.equal(summary.functions[0]?.self_ms, 2);
  assert.equal(summary.functions[0]?.self_pct, 50);
  assert.equal(summary.functions[0]?.location, '@grpc/grpc-js/build/src/x.js:10');
  assert.equal(summary.functions[1]?.function, 'recommend');
  assert.deepEqual(
    summary.packages.map((p) => p.package),
    ['@grpc/grpc-js', 'dist/gateway/domain'],
  );
});

void test('packageOf buckets node internals, npm packages (scoped or not) and project files', () => {
  assert.equal(packageOf('node:internal/http2/core'), 'node:internal');
  assert.equal(packageOf('file:///w/node_modules/protobufjs/src/writer.js'), 'protobufjs');
  assert.equal(packageOf('file:///w/node_modules/@grpc/grpc-js/build/src/server.js'), '@grpc/grpc-js');
  assert.equal(packageOf('file:///w/dist/gateway/api/handlers.js'), 'dist/gateway/api');
  assert.equal(packageOf(''), '(native/vm)');
});

void test('inclusive time of project functions counts callees, and recursion only once', () => {
  const profile: CpuProfile = {
    startTime: 0,
    endTime: 10_000,
    nodes: [
      { id: 1, callFrame: frame('(root)', ''), children: [2] },
      { id: 2, callFrame: frame('handle', 'file:///app/dist/gateway/api/h.js', 1), children: [3, 4] },
      { id: 3, callFrame: frame('write', 'file:///app/node_modules/lmdb/write.js', 5) },
      { id: 4, callFrame: frame('handle', 'file:///app/dist/gateway/api/h.js', 1), children: [5] },
      { id: 5, callFrame: frame('read', 'file:///app/dist/gateway/store.js', 9) },
    ],
    samples: [2, 3, 4, 5, 5],
    timeDeltas: [0, 1000, 1000, 1000, 1000, 1000],
  };
  const summary = summarizeProfile(profile);
  const handle = summary.inclusive.find((r) => r.function === 'handle');
  const read = summary.inclusive.find((r) => r.function === 'read');
  assert.equal(handle?.self_ms, 5); // all five samples, the recursive frame not added twice
  assert.equal(read?.self_ms, 2);
  assert.equal(
    summary.inclusive.some((r) => r.function === 'write'),
    false,
    'npm packages are not project code',
  );
});
