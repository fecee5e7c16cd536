/**
 * `npm run demo`: streams a synthetic user's events (items drawn from the bundle catalog) into the gateway at
 * AUTOMR_ADDR, then asks for recommendations and prints the ranked items with the memories retrieved.
 * Options: --user <id> (default demo-<time>), --events <n> (default 40), --top-n <n> (10), --memory-k <k> (3),
 * --exclude-consumed true|false (default: the gateway's setting). It then shows the consumed-item exclusion: the
 * same request with the exclusion flipped, and which of its slots would hold items the user already consumed.
 */
import { parseArgs } from 'node:util';
import { isServiceError, RecommenderClient } from '../client/recommender-client.js';
import { loadBundle } from '../gateway/bundle.js';
import { clientConnectionFromEnv } from '../shared/transport.js';

const { values } = parseArgs({
  options: {
    user: { type: 'string' },
    events: { type: 'string', default: '40' },
    'top-n': { type: 'string', default: '10' },
    'memory-k': { type: 'string', default: '3' },
    'exclude-consumed': { type: 'string' },
    help: { type: 'boolean' },
  },
});
if (values.help === true) {
  console.log(
    'Usage: npm run demo -- [--user ID] [--events N] [--top-n N] [--memory-k K] [--exclude-consumed true|false]   (gateway at AUTOMR_ADDR)',
  );
  process.exit(0);
}
const address = process.env.AUTOMR_ADDR ?? '127.0.0.1:50051';
const bundle = await loadBundle(process.env.AUTOMR_BUNDLE ?? './bundle');
const user = values.user ?? `demo-${Date.now()}`;
const count = Number(values.events);
const client = new RecommenderClient(address, clientConnectionFromEnv());

// A synthetic user who mostly stays within a few neighbouring catalog rows, with occasional jumps.
let seed = [...user].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) % 2 ** 31, 7);
const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
let row = Math.floor(rand() * bundle.catalog.length);
const start = Date.now() - count * 60_000;
const events = Array.from({ length: count }, (_, i) => {
  row =
    rand() < 0.8
      ? (row + 1 + Math.floor(rand() * 3)) % bundle.catalog.length
      : Math.floor(rand() * bundle.catalog.length);
  return {
    event_id: `${user}-${i}`,
    user_id: user,
    item_id: bundle.catalog[row]?.itemId ?? '',
    timestamp_ms: start + i * 60_000,
  };
});

const fail = (what: string) => (error: unknown) => {
  const message = isServiceError(error) ? error.details || error.message : String(error);
  console.error(`${what} failed: ${message} (is the gateway running at ${address}?)`);
  process.exit(1);
};

const acks = await client.ingest(events).catch(fail('Ingest'));
const counts = acks.reduce<Record<string, number>>(
  (acc, a) => ({ ...acc, [a.status]: (acc[a.status] ?? 0) + 1 }),
  {},
);
console.log(`ingested ${events.length} events for ${user} at ${address}: ${JSON.stringify(counts)}`);

// Give the encoder a moment to encode the new memory elements (Recommend uses what is encoded).
for (let i = 0; i < 50; i++) {
  const entries = await client.getMemory(user).catch(fail('GetMemory'));
  if (entries.every((e) => e.encoded)) break;
  await new Promise((r) => setTimeout(r, 100));
}

const flag = values['exclude-consumed'];
const request = {
  user_id: user,
  top_n: Number(values['top-n']),
  memory_k: Number(values['memory-k']),
  ...(flag === undefined ? {} : { exclude_consumed: flag === 'true' }),
};
const consumed = new Set(events.map((e) => e.item_id));
const mark = (itemId: string) => (consumed.has(itemId) ? '  [already consumed]' : '');
const show = (list: { rank: number; item_id: string; title: string; score: number }[]) => {
  for (const it of list)
    console.log(`  #${it.rank}  ${it.item_id}  ${it.title}  (${it.score.toFixed(3)})${mark(it.item_id)}`);
};
const { items, summary: s } = await client.recommend(request).catch(fail('Recommend'));
console.log(
  `recommendations (exclude_consumed ${String(s?.consumed_excluded)}${flag === undefined ? ', the gateway setting' : ''}; ` +
    `${s?.excluded_count ?? 0} catalog items masked inside the model before its top-k):`,
);
show(items);
if (s) {
  console.log(
    `retrieved memories (model ${s.model_version}, memory ${s.memory_size} of history ${s.history_size}):`,
  );
  for (const m of s.retrieved) {
    const title = bundle.catalog.find((c) => c.itemId === m.item_id)?.title ?? '?';
    console.log(
      `  ${m.item_id}  ${title}  at ${new Date(m.timestamp_ms).toISOString()}  score ${m.score.toFixed(3)}`,
    );
  }
  const t = s.timings;
  if (t)
    console.log(
      `timings ms: read ${t.memory_read_ms.toFixed(2)}, encode ${t.encode_ms.toFixed(2)}, retrieve ${t.retrieve_ms.toFixed(2)}, infer ${t.infer_ms.toFixed(2)}, total ${t.total_ms.toFixed(2)}`,
    );
  if (s.encoding_lagging)
    console.log(`note: ${s.pending_encodings} memory elements were still being encoded`);
  // The same request with the exclusion flipped: what the consumed-item exclusion changes.
  const other = await client
    .recommend({ ...request, exclude_consumed: !s.consumed_excluded })
    .catch(fail('Recommend'));
  const repeats = (list: { item_id: string }[]) => list.filter((it) => consumed.has(it.item_id)).length;
  const [withEx, withoutEx] = s.consumed_excluded ? [items, other.items] : [other.items, items];
  console.log(
    `consumed-item exclusion: without it ${repeats(withoutEx)} of the top ${withoutEx.length} are items ${user} ` +
      `already consumed; with it ${repeats(withEx)} of ${withEx.length}.`,
  );
  console.log(`the same request with exclude_consumed ${String(other.summary?.consumed_excluded)}:`);
  show(other.items);
}
client.close();
