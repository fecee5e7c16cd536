/**
 * Recommend's exclusion through the real gateway and the real local model server (committed models): the user's
 * consumed items (kept beyond the history), business-rule exclusions and candidate sets are applied inside the model
 * before its top-k, so a response holds `top_n` allowed items whenever that many exist and never an excluded one;
 * the deployment setting and the per-request override decide the consumed exclusion; bad lists get INVALID_ARGUMENT
 * naming the field.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import type { CatalogItem } from '../../src/gateway/bundle.js';
import { defaultConfig, type GatewayConfig } from '../../src/gateway/config.js';
import { startGateway } from '../../src/gateway/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { RecommenderClient } from '../../src/client/recommender-client.js';
import { BUNDLE_DIR, client, ingest, recommend, startStack, tempDir, type Stack } from './helpers.js';

let stack: Stack;
let c: RecommenderClient;
let catalog: CatalogItem[];
const USER = 'excl-user';

before(async () => {
  stack = await startStack('automr-excl-', { encodeWaitMs: 20_000, maxExcludeItems: 50 });
  c = stack.client;
  catalog = stack.gateway.bundle.catalog;
  const events = Array.from({ length: 30 }, (_, i) => ({
    event_id: `x-${i}`,
    user_id: USER,
    item_id: catalog[(i * 11) % catalog.length]!.itemId,
    timestamp_ms: 1_700_000_000_000 + i * 1000,
  }));
  const { error } = await ingest(c, events);
  assert.equal(error, undefined);
});

after(() => stack.close());

void test('exclude_item_ids never come back and top_n stays full; ids outside the catalog are ignored', async () => {
  const plain = await recommend(c, USER, 20, 1, { exclude_consumed: false });
  assert.equal(plain.error, undefined);
  assert.equal(plain.items.length, 20);
  assert.equal(plain.summary?.excluded_count, 0);
  assert.equal(plain.summary?.memory_k, 1);
  const banned = plain.items.slice(0, 8).map((i) => i.item_id);
  const r = await recommend(c, USER, 20, 1, {
    exclude_consumed: false,
    exclude_item_ids: [...banned, 'no-such-item', banned[0]!],
  });
  assert.equal(r.error, undefined, r.error?.details);
  assert.equal(r.items.length, 20, 'top_n items although the 8 best are excluded');
  assert.deepEqual(
    r.items.filter((i) => banned.includes(i.item_id)),
    [],
  );
  assert.equal(r.summary?.excluded_count, 8, 'catalog items masked (duplicates and unknown ids not counted)');
  // The rest keeps the model's order: the unbanned part of the plain ranking leads the new list.
  const kept = plain.items.map((i) => i.item_id).filter((id) => !banned.includes(id));
  assert.deepEqual(
    r.items.slice(0, kept.length).map((i) => i.item_id),
    kept,
  );
  assert.deepEqual(
    r.items.map((i) => i.rank),
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
});

void test('candidate_item_ids: only candidates are ranked; fewer allowed items than top_n returns them all', async () => {
  const candidates = catalog.filter((_, i) => i % 25 === 3).map((i) => i.itemId); // 12 of 300
  const r = await recommend(c, USER, 30, 0, {
    exclude_consumed: false,
    candidate_item_ids: [...candidates, 'unknown-candidate'],
    exclude_item_ids: [candidates[0]!],
  });
  assert.equal(r.error, undefined, r.error?.details);
  const got = r.items.map((i) => i.item_id);
  assert.equal(got.length, candidates.length - 1, 'every allowed candidate, none of the -inf tail');
  assert.deepEqual([...got].sort(), candidates.slice(1).sort());
  assert.ok(r.items.every((i) => Number.isFinite(i.score)));
  assert.equal(r.summary?.excluded_count, catalog.length - candidates.length + 1);

  const none = await recommend(c, USER, 5, 0, { candidate_item_ids: ['nope-1', 'nope-2'] });
  assert.equal(none.error?.code, status.INVALID_ARGUMENT);
  assert.match(none.error.details, /candidate_item_ids: none of the 2 ids is in the catalog/);
});

void test('bad exclusion lists get INVALID_ARGUMENT naming the field and position', async () => {
  const cases: [Parameters<typeof recommend>[4], RegExp][] = [
    [{ exclude_item_ids: ['a', ''] }, /exclude_item_ids\[1\] must not be empty/],
    [{ candidate_item_ids: ['x'.repeat(257)] }, /candidate_item_ids\[0\] is 257 bytes; at most 256/],
    [{ exclude_item_ids: ['ok', 'bad\uD800'] }, /exclude_item_ids\[1\] is not valid UTF-8/],
    [
      { exclude_item_ids: Array.from({ length: 51 }, (_, i) => `i${i}`) },
      /exclude_item_ids has 51 ids; at most 50 are allowed/,
    ],
  ];
  for (const [extra, message] of cases) {
    const r = await recommend(c, USER, 5, 0, extra);
    assert.equal(r.error?.code, status.INVALID_ARGUMENT, JSON.stringify(extra).slice(0, 80));
    assert.match(r.error.details, message);
    assert.equal(r.items.length, 0);
  }
});

/** Another gateway (own store) on the stack's model server, with `overrides`. */
async function withGateway(
  overrides: Partial<GatewayConfig>,
  run: (c: RecommenderClient) => Promise<void>,
): Promise<void> {
  const dataDir = tempDir('automr-excl-gw-');
  const gateway = await startGateway(
    defaultConfig({
      addr: '127.0.0.1:0',
      dataDir,
      modelServer: stack.modelServer.address,
      bundle: BUNDLE_DIR,
      metricsPort: 0,
      encodeWaitMs: 20_000,
      ...overrides,
    }),
    { logger: silentLogger() },
  );
  const c2 = client(gateway.address);
  try {
    await run(c2);
  } finally {
    c2.close();
    await gateway.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const eventsOf = (user: string, itemIndices: number[]) =>
  itemIndices.map((j, i) => ({
    event_id: `${user}-${i}`,
    user_id: user,
    item_id: catalog[j]!.itemId,
    timestamp_ms: 1_700_000_000_000 + i * 1000,
  }));

void test('exclude_consumed: no consumed item is served, also those older than the history; top_n stays full', async () => {
  // 260 distinct items consumed, history capped at 20: the consumed set holds all 260.
  const consumedIdx = Array.from({ length: 260 }, (_, i) => (i * 7) % catalog.length);
  await withGateway({ maxHistory: 20 }, async (gw) => {
    assert.equal((await ingest(gw, eventsOf('heavy', consumedIdx))).error, undefined);
    const consumed = new Set(consumedIdx.map((j) => catalog[j]!.itemId));
    const plain = await recommend(gw, 'heavy', 100, 1, { exclude_consumed: false });
    assert.equal(plain.summary?.consumed_excluded, false);
    assert.ok(
      plain.items.some((i) => consumed.has(i.item_id)),
      'the control: without exclusion the model ranks consumed items',
    );
    const r = await recommend(gw, 'heavy', 30, 1, { exclude_consumed: true });
    assert.equal(r.error, undefined, r.error?.details);
    assert.equal(r.items.length, 30);
    assert.deepEqual(
      r.items.filter((i) => consumed.has(i.item_id)),
      [],
    );
    assert.equal(r.summary?.consumed_excluded, true);
    assert.equal(r.summary?.excluded_count, consumed.size);
    assert.equal(r.summary?.history_size, 20);
    // Only 40 items are left: top_n = 100 returns all 40 of them, nothing else.
    const all = await recommend(gw, 'heavy', 100, 1, { exclude_consumed: true, exclude_item_ids: [] });
    assert.equal(all.items.length, catalog.length - consumed.size);
    // Parity with the offline definition (rank among the allowed items): the model's own ranking with the
    // consumed items taken out, in the same order and with the same scores.
    const allowedInPlainOrder = plain.items.filter((i) => !consumed.has(i.item_id));
    assert.ok(allowedInPlainOrder.length > 0);
    assert.deepEqual(
      all.items.slice(0, allowedInPlainOrder.length).map((i) => [i.item_id, i.score]),
      allowedInPlainOrder.map((i) => [i.item_id, i.score]),
    );
    assert.deepEqual(
      all.items.filter((i) => consumed.has(i.item_id)),
      [],
    );
    // Consumed ∪ excluded ∪ outside the candidates.
    const free = catalog.map((x) => x.itemId).filter((id) => !consumed.has(id));
    const mixed = await recommend(gw, 'heavy', 10, 1, {
      exclude_consumed: true,
      candidate_item_ids: [...free.slice(0, 6), ...[...consumed].slice(0, 20)],
      exclude_item_ids: [free[0]!],
    });
    assert.deepEqual(mixed.items.map((i) => i.item_id).sort(), free.slice(1, 6).sort());
    assert.equal(mixed.summary?.excluded_count, catalog.length - 5);
    // ForgetUser removes the consumed set with the history.
    await gw.forgetUser('heavy');
    const forgotten = await recommend(gw, 'heavy', 10, 1, { exclude_consumed: true });
    assert.equal(forgotten.summary?.excluded_count, 0);
  });
});

void test('AUTOMR_EXCLUDE_CONSUMED=true is the default for requests that leave it unset; a request can turn it off', async () => {
  const idx = Array.from({ length: 25 }, (_, i) => i * 3);
  await withGateway({ excludeConsumed: 'true' }, async (gw) => {
    await ingest(gw, eventsOf('u-on', idx));
    const consumed = new Set(idx.map((j) => catalog[j]!.itemId));
    const on = await recommend(gw, 'u-on', 100, 1);
    assert.equal(on.summary?.consumed_excluded, true);
    assert.equal(on.items.length, 100);
    assert.deepEqual(
      on.items.filter((i) => consumed.has(i.item_id)),
      [],
    );
    const off = await recommend(gw, 'u-on', 100, 1, { exclude_consumed: false });
    assert.equal(off.summary?.consumed_excluded, false);
    assert.equal(off.summary?.excluded_count, 0);
    assert.ok(off.items.some((i) => consumed.has(i.item_id)));
  });
});

void test('AUTOMR_EXCLUDE_CONSUMED / AUTOMR_MEMORY_K = auto follow the bundle policy (and an old bundle without one)', async () => {
  // The committed bundle with a policy written into its manifest; the model repository stays the committed one.
  const dir = tempDir('automr-excl-policy-');
  try {
    const manifest = JSON.parse(readFileSync(path.join(BUNDLE_DIR, 'manifest.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    const write = (policy: unknown) => {
      const m: Record<string, unknown> = {
        ...manifest,
        model_repository: path.resolve(BUNDLE_DIR, String(manifest.model_repository)),
      };
      if (policy === undefined) delete m.policy;
      else m.policy = policy;
      writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(m));
    };
    copyFileSync(path.join(BUNDLE_DIR, 'retriever.onnx'), path.join(dir, 'retriever.onnx'));
    const idx = Array.from({ length: 30 }, (_, i) => i * 5);
    write({ exclude_consumed: true, repeat_rate: 0, memory_k: 0, reason: 'test policy' });
    await withGateway({ bundle: dir }, async (gw) => {
      await ingest(gw, eventsOf('u-policy', idx));
      const r = await recommend(gw, 'u-policy', 50);
      assert.equal(r.summary?.consumed_excluded, true, 'policy.exclude_consumed');
      assert.equal(r.summary?.memory_k, 0, 'policy.memory_k = 0: served without memory');
      assert.deepEqual(r.summary?.retrieved, []);
      assert.equal(r.summary?.excluded_count, idx.length);
      const asked = await recommend(gw, 'u-policy', 50, 2, { exclude_consumed: false });
      assert.equal(asked.summary?.memory_k, 2, 'a request can still ask for memories');
      assert.equal(asked.summary?.consumed_excluded, false);
    });
    write(undefined);
    await withGateway({ bundle: dir }, async (gw) => {
      await ingest(gw, eventsOf('u-old', idx));
      const r = await recommend(gw, 'u-old', 50);
      assert.equal(r.summary?.consumed_excluded, false, 'no policy: exclusion off');
      assert.equal(r.summary?.memory_k, 1, 'no policy: one memory');
    });
    write({ exclude_consumed: true, memory_k: 0 });
    await withGateway({ bundle: dir, excludeConsumed: 'false', memoryK: 3 }, async (gw) => {
      await ingest(gw, eventsOf('u-dep', idx));
      const r = await recommend(gw, 'u-dep', 50);
      assert.equal(r.summary?.consumed_excluded, false, 'the deployment setting wins over the policy');
      assert.equal(r.summary?.memory_k, 3);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
