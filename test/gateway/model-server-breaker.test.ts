/**
 * The circuit breaker counts model-server calls, not callers: one coalesced automr_recommend ModelInfer (or one
 * llm_lower batch) that times out under many callers is one failure and leaves the breaker closed; consecutive
 * failing calls still open it, and then every call fails in milliseconds with the retry hint. The real
 * model-server CLI in a child process, hung with SIGSTOP; the adapter is driven directly, so no health probe
 * (which would open the breaker on its own) runs meanwhile.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { loadBundle, type Bundle } from '../../src/gateway/bundle.js';
import { ModelServerBreaker } from '../../src/gateway/adapters/model-server-breaker.js';
import { TritonModelServer } from '../../src/gateway/adapters/triton-model-server.js';
import { AppError } from '../../src/shared/errors.js';
import { freePort } from '../own-redis.js';
import { BUNDLE_DIR, spawnModelServer } from './helpers.js';

const FAILURES = 3;
const RESET_MS = 60_000;
const CALLERS = 8;

let child: ChildProcess;
let bundle: Bundle;
let triton: TritonModelServer;
let address: string;

before(async () => {
  const port = await freePort();
  child = await spawnModelServer(port);
  bundle = await loadBundle(BUNDLE_DIR);
  address = `127.0.0.1:${port}`;
  triton = new TritonModelServer({
    address,
    bundle,
    deadlineMs: 300,
    recommendBatch: { maxBatch: 64, delayMs: 0 },
    breaker: new ModelServerBreaker({ failures: FAILURES, resetMs: RESET_MS }),
  });
});

after(async () => {
  triton.close();
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
});

const prompt = () => [bundle.tokens.bos, bundle.catalog[0]!.token, bundle.catalog[1]!.token];
const recommend = () => triton.recommend(prompt(), [], new Uint8Array(bundle.maskBytes));

/** Runs `fn` while the model server is stopped (its calls hang until their deadline). */
async function whileHung<T>(fn: () => Promise<T>): Promise<T> {
  child.kill('SIGSTOP');
  try {
    return await fn();
  } finally {
    child.kill('SIGCONT');
  }
}

/** A timed-out call, counted by the breaker: UNAVAILABLE without the breaker's retry hint. */
function assertTimedOut(error: unknown, what: string): void {
  assert.ok(error instanceof AppError, what);
  assert.equal(error.code, 'UNAVAILABLE', what);
  assert.equal(error.message, 'model server did not answer in time', what);
  assert.equal(error.retryAfterMs, undefined, `${what}: failed at the model server, not at an open breaker`);
}

void test('one failed batched call with many callers is one failure: the breaker stays closed', async () => {
  await recommend();
  const batchesBefore = triton.recommendBatches.batches;
  const outcomes = await whileHung(async () => {
    const recommends = await Promise.allSettled(Array.from({ length: CALLERS }, recommend));
    // The encoder's llm_lower batch of as many prompts: one more call, so two failures in a row, below FAILURES.
    const encode = await triton.encode(Array.from({ length: CALLERS }, prompt)).catch((e: unknown) => e);
    return { recommends, encode };
  });
  assert.equal(
    triton.recommendBatches.batches - batchesBefore,
    1,
    `${CALLERS} callers shared one ModelInfer`,
  );
  for (const [i, o] of outcomes.recommends.entries()) {
    assert.equal(o.status, 'rejected');
    assertTimedOut(o.status === 'rejected' ? o.reason : undefined, `caller ${i}`);
  }
  assertTimedOut(outcomes.encode, 'llm_lower batch');
  // Closed: the next calls reach the model server and succeed (an open breaker would refuse them for RESET_MS).
  const back = await Promise.all(Array.from({ length: CALLERS }, recommend));
  assert.ok(back.every((r) => r.tokens.length > 0));
  assert.equal((await triton.encode([prompt()])).length, 1);
});

void test('consecutive failing calls open the breaker; then calls fail in milliseconds with a retry hint', async () => {
  await whileHung(async () => {
    for (let i = 0; i < FAILURES; i++) {
      const failed = await Promise.allSettled(Array.from({ length: CALLERS }, recommend));
      for (const o of failed) assertTimedOut(o.status === 'rejected' ? o.reason : undefined, `call ${i}`);
    }
  });
  // The model server answers again, but the open breaker refuses at once until RESET_MS has passed.
  const started = performance.now();
  const refused = await recommend().catch((e: unknown) => e);
  const refusedMs = performance.now() - started;
  assert.ok(refused instanceof AppError);
  assert.equal(refused.code, 'UNAVAILABLE');
  assert.equal(refused.message, 'model server unavailable');
  assert.equal(refused.retryAfterMs, RESET_MS);
  assert.ok(refusedMs < 100, `refused after ${refusedMs.toFixed(1)} ms`);
  const encodeRefused = await triton.encode([prompt()]).catch((e: unknown) => e);
  assert.ok(encodeRefused instanceof AppError && encodeRefused.retryAfterMs === RESET_MS);
});

void test('a recently answered Recommend stands in for the readiness probe; once it is older the probe runs', async () => {
  // Its own adapter (no breaker): the window is long enough that the first ready() below falls inside it on a
  // loaded machine, and the hung server shows whether ready() made any RPC (one would time out: not ready).
  const passive = new TritonModelServer({ address, bundle, deadlineMs: 300, answeredIsReadyMs: 1_500 });
  try {
    assert.equal(await passive.ready(), true, 'full probe: server, models and versions');
    assert.ok((await passive.recommend(prompt(), [], new Uint8Array(bundle.maskBytes))).tokens.length > 0);
    const [answered, later] = await whileHung(async () => {
      const first = await passive.ready();
      await new Promise((resolve) => setTimeout(resolve, 1_600));
      return [first, await passive.ready()];
    });
    assert.equal(answered, true, 'a recent answer: ready without probing the (hung) server');
    assert.equal(later, false, 'no recent answer: the probe runs and times out on the hung server');
  } finally {
    passive.close();
  }
});
