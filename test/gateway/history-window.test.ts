/**
 * Train/serve parity of memory windows at the history cap: element m is encoded over the K-item window ending at
 * m from the full history (training/automr/data.py memory_indices), so the oldest elements of the history view
 * keep their full-window vectors after the events before them fall out of the view.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import { Encoder } from '../../src/gateway/domain/encoder.js';
import { IngestService } from '../../src/gateway/domain/ingest.js';
import {
  encKeyOf,
  isEncoded,
  memoryRange,
  retainedEntries,
  staleElements,
  viewStart,
  type MemoryModel,
} from '../../src/gateway/domain/memory.js';
import type { Catalog, ModelServer } from '../../src/gateway/domain/ports.js';
import { DEFAULT_LIMITS } from '../../src/gateway/domain/validation.js';
import { silentLogger } from '../../src/shared/logger.js';
import { tempDir } from './helpers.js';

const dir = tempDir('automr-window-');
after(() => rmSync(dir, { recursive: true, force: true }));

/** Store, encoder and ingest over one lmdb dir; the fake model server's vector records the prompt it was made from. */
function stack(model: MemoryModel, dataDir: string) {
  const encoded: number[][] = [];
  const modelServer: ModelServer = {
    ready: () => Promise.resolve(true),
    encode: (prompts) => {
      encoded.push(...prompts);
      return Promise.resolve(prompts.map((p) => Float32Array.from(p)));
    },
    recommend: () => Promise.resolve({ tokens: [], scores: [] }),
    close: () => undefined,
  };
  const store = new LmdbMemoryStore(dataDir);
  const encoder = new Encoder({ store, modelServer, model, batchSize: 8, logger: silentLogger() });
  const catalog: Catalog = {
    topK: 10,
    tokens: { pad: 0, bos: 1, unk: 2 },
    tokenOf: (item: string) => 10 + Number(item.slice(1)),
    itemOf: () => undefined,
    size: 200,
    itemTokenBase: 10,
  };
  const ingest = new IngestService({
    store,
    encoder,
    catalog,
    limits: DEFAULT_LIMITS,
    maxHistory: model.maxHistory,
    historyContext: retainedEntries(model) - model.maxHistory,
  });
  return { encoded, store, encoder, ingest };
}

void test('an element older than the history cap keeps its full-window vector', async () => {
  const model: MemoryModel = { modelVersion: 'v1', window: 3, maxMemory: 2, bos: 1, maxHistory: 5 };
  const { encoded, store, encoder, ingest } = stack(model, dir);
  const n = 12;
  for (let i = 0; i < n; i++) {
    const ack = await ingest.ingest({
      event_id: `e${i}`,
      user_id: 'u',
      item_id: `i${i}`,
      timestamp_ms: 1000 + i,
    });
    assert.equal(ack.status, 'ACCEPTED');
    await encoder.idle();
  }
  // A late event older than the newest maxHistory is kept only as window context: acked as not in the history.
  const late = await ingest.ingest({ event_id: 'late', user_id: 'u', item_id: 'i99', timestamp_ms: 1 });
  assert.match(late.message, /history cap/);
  await encoder.idle();

  const entries = await store.read('u');
  assert.equal(entries.length, retainedEntries(model), 'history view + window - 1 raw entries');
  const first = viewStart(entries.length, model);
  assert.deepEqual(
    entries.slice(first).map((e) => e.eventId),
    ['e7', 'e8', 'e9', 'e10', 'e11'],
  );
  // The oldest element of the view (e7) is encoded over e5, e6, e7: the two before it are outside the view.
  const oldest = entries[first]!;
  assert.equal(oldest.encKey, encKeyOf('v1', [15, 16, 17]));
  assert.deepEqual([...oldest.vector!], [1, 15, 16, 17]);
  assert.equal(isEncoded(entries, first, model), true);
  assert.deepEqual(staleElements(entries, model), [], 'nothing is re-keyed after trimming');
  // Every element was encoded exactly once, each over its full window (no truncated re-encoding).
  assert.equal(encoded.length, n);
  for (const prompt of encoded.slice(2)) assert.equal(prompt.length, 1 + model.window);
  // The memory is the view minus the newest K, at most maxMemory.
  assert.deepEqual(memoryRange(entries.length, model), { start: first, end: entries.length - 3 });
  await encoder.stop(1000);
  await store.close();
});

void test('a pass after an append checks only the windows the event can change (tail read), late events included', async () => {
  const model: MemoryModel = { modelVersion: 'v1', window: 3, maxMemory: 3, bos: 1, maxHistory: 5 };
  const tailDir = tempDir('automr-tail-');
  after(() => rmSync(tailDir, { recursive: true, force: true }));
  const { store, encoder, ingest } = stack(model, tailDir);
  const send = async (id: string, item: number, ts: number) => {
    assert.equal(
      (await ingest.ingest({ event_id: id, user_id: 'u', item_id: `i${item}`, timestamp_ms: ts })).status,
      'ACCEPTED',
    );
    await encoder.idle();
  };
  const check = async (label: string) => {
    const entries = await store.read('u');
    assert.deepEqual(staleElements(entries, model), [], `${label}: every element of the view is current`);
    for (let i = viewStart(entries.length, model); i < entries.length; i++) {
      const window = entries.slice(Math.max(0, i - model.window + 1), i + 1).map((e) => e.token);
      assert.deepEqual(
        [...entries[i]!.vector!],
        [1, ...window],
        `${label}: element ${i} over its current window`,
      );
    }
  };
  for (let i = 0; i < 8; i++) await send(`e${i}`, i, 1000 + 10 * i);
  await check('in order');
  await send('mid', 50, 1045); // inside the view: the elements after it get new windows
  await check('late, in the view');
  await send('ctx', 51, 1022); // among the window context: the oldest elements of the view get new windows
  await check('late, in the window context');
  await send('tie', 52, 1070); // same timestamp as the newest: after it
  await check('tie');
  await encoder.stop(1000);
  await store.close();
});
