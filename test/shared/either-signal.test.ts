/**
 * `eitherSignal` fires with the reason of whichever source fires first and leaves nothing behind on its sources,
 * and the model-server breaker, which links every call to its long-lived outage signal, keeps no memory per call
 * (with `AbortSignal.any` on Node 20 it kept ~100 bytes per call for good).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { eitherSignal } from '../../src/shared/errors.js';
import { ModelServerBreaker } from '../../src/gateway/adapters/model-server-breaker.js';

void test('either signal fires with the reason of the source that fired, and dispose detaches it', () => {
  for (const which of ['a', 'b'] as const) {
    const a = new AbortController();
    const b = new AbortController();
    const { signal, dispose } = eitherSignal(a.signal, b.signal);
    assert.equal(signal.aborted, false);
    (which === 'a' ? a : b).abort(new Error(`from ${which}`));
    assert.equal(signal.aborted, true);
    assert.equal((signal.reason as Error).message, `from ${which}`);
    // Firing detached it from the other source too.
    assert.equal(getEventListeners(a.signal, 'abort').length, 0);
    assert.equal(getEventListeners(b.signal, 'abort').length, 0);
    dispose();
  }
  const a = new AbortController();
  const b = new AbortController();
  const { signal, dispose } = eitherSignal(a.signal, b.signal);
  dispose();
  assert.equal(getEventListeners(a.signal, 'abort').length, 0);
  assert.equal(getEventListeners(b.signal, 'abort').length, 0);
  a.abort();
  assert.equal(signal.aborted, false, 'a disposed link no longer follows its sources');
  const done = new AbortController();
  done.abort(new Error('already'));
  const late = eitherSignal(new AbortController().signal, done.signal);
  assert.equal((late.signal.reason as Error).message, 'already');
});

void test('model-server breaker calls keep no memory per call', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const breaker = new ModelServerBreaker({ failures: 3, resetMs: 1000 });
  const calls = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const caller = new AbortController();
      await breaker.call((signal) => Promise.resolve(signal.aborted), caller.signal);
    }
  };
  const heapAfterGc = async () => {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  await calls(5_000);
  const before = await heapAfterGc();
  await calls(100_000);
  const grown = (await heapAfterGc()) - before;
  // ~100 bytes per call would be ~10 MB; what remains is noise of a few hundred KB.
  assert.ok(grown < 3_000_000, `heap grew ${(grown / 1e6).toFixed(1)} MB over 100,000 calls`);
  breaker.close();
});

void test('many model calls in flight at once raise no listener-leak warning', async () => {
  const warnings: string[] = [];
  const onWarning = (warning: Error) => warnings.push(warning.name);
  process.on('warning', onWarning);
  const breaker = new ModelServerBreaker({ failures: 3, resetMs: 1000 });
  try {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const inFlight = Array.from({ length: 50 }, () => breaker.call(() => gate, new AbortController().signal));
    release();
    await Promise.all(inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings, []);
  } finally {
    process.off('warning', onWarning);
    breaker.close();
  }
});
