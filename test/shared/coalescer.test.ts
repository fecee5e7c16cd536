import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Coalescer } from '../../src/shared/coalescer.js';
import { AppError } from '../../src/shared/errors.js';

/** A batch runner that records every batch and answers when told to. */
function recorder() {
  const batches: { items: number[]; signal: AbortSignal; answer: (error?: Error) => void }[] = [];
  const run = (items: number[], signal: AbortSignal) =>
    new Promise<string[]>((resolve, reject) => {
      batches.push({
        items,
        signal,
        answer: (error) => (error === undefined ? resolve(items.map((i) => `r${i}`)) : reject(error)),
      });
    });
  return { batches, run };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

void test('calls submitted in one event-loop turn go out as one batch, each caller getting its own row', async () => {
  const { batches, run } = recorder();
  const coalescer = new Coalescer({ maxBatch: 8, delayMs: 0, run });
  const results = Promise.all([1, 2, 3].map((i) => coalescer.submit(i)));
  await turn();
  assert.equal(batches.length, 1);
  assert.deepEqual(batches[0]!.items, [1, 2, 3]);
  batches[0]!.answer();
  assert.deepEqual(await results, ['r1', 'r2', 'r3']);
  assert.deepEqual([coalescer.batches, coalescer.requests], [1, 3]);
});

void test('a full batch is sent at once and the rest follow in batches of at most maxBatch', async () => {
  const { batches, run } = recorder();
  const coalescer = new Coalescer({ maxBatch: 2, delayMs: 0, run });
  const results = Promise.all([1, 2, 3, 4, 5].map((i) => coalescer.submit(i)));
  assert.deepEqual(
    batches.map((b) => b.items),
    [
      [1, 2],
      [3, 4],
    ],
    'full batches do not wait',
  );
  await turn();
  assert.deepEqual(
    batches.map((b) => b.items),
    [[1, 2], [3, 4], [5]],
  );
  for (const b of batches) b.answer();
  assert.deepEqual(await results, ['r1', 'r2', 'r3', 'r4', 'r5']);
});

void test('a caller cancelled while waiting is left out of the batch; one cancelled in flight fails alone', async () => {
  const { batches, run } = recorder();
  const coalescer = new Coalescer({ maxBatch: 8, delayMs: 0, run });
  const early = new AbortController();
  const late = new AbortController();
  const a = coalescer.submit(1, early.signal);
  const b = coalescer.submit(2, late.signal);
  const c = coalescer.submit(3);
  early.abort();
  await assert.rejects(a, (e: unknown) => e instanceof AppError && e.code === 'CANCELLED');
  await turn();
  assert.deepEqual(batches[0]!.items, [2, 3], 'the cancelled caller never reaches the model');
  late.abort(new DOMException('deadline', 'TimeoutError'));
  await assert.rejects(b, (e: unknown) => e instanceof AppError && e.code === 'DEADLINE_EXCEEDED');
  assert.equal(batches[0]!.signal.aborted, false, 'the batch goes on for the caller still waiting');
  batches[0]!.answer();
  assert.equal(await c, 'r3');
});

void test('the batch call is aborted once every caller has left, and a failure reaches every caller', async () => {
  const { batches, run } = recorder();
  const coalescer = new Coalescer({ maxBatch: 8, delayMs: 0, run });
  const controllers = [new AbortController(), new AbortController()];
  const calls = controllers.map((c, i) => coalescer.submit(i, c.signal));
  await turn();
  controllers[0]!.abort();
  assert.equal(batches[0]!.signal.aborted, false);
  controllers[1]!.abort();
  assert.equal(batches[0]!.signal.aborted, true);
  for (const call of calls) await assert.rejects(call, /cancelled/);

  const failing = Promise.allSettled([coalescer.submit(7), coalescer.submit(8)]);
  await turn();
  batches[1]!.answer(new AppError('UNAVAILABLE', 'model server down'));
  const settled = await failing;
  assert.ok(settled.every((s) => s.status === 'rejected' && /model server down/.test(String(s.reason))));
});

void test('a positive delay collects calls of later turns into the same batch', async () => {
  const { batches, run } = recorder();
  const coalescer = new Coalescer({ maxBatch: 8, delayMs: 500, run });
  const first = coalescer.submit(1);
  await turn();
  assert.equal(batches.length, 0, 'the first call waits for company');
  const second = coalescer.submit(2);
  while (batches.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(
    batches.map((b) => b.items),
    [[1, 2]],
  );
  batches[0]!.answer();
  assert.deepEqual(await Promise.all([first, second]), ['r1', 'r2']);
});
