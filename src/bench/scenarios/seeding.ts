/** Users with full histories for the Recommend and memory sections, seeded through the public API. */
import type { IngestEvent, RecommenderClient } from '../../client/recommender-client.js';

/** `perUser` events for each of `users` users, interleaved across users in time order. */
export function seedEvents(
  prefix: string,
  users: number,
  perUser: number,
  items: string[],
  runId: string,
): IngestEvent[] {
  const events: IngestEvent[] = [];
  const base = Date.UTC(2024, 0, 1);
  for (let e = 0; e < perUser; e += 1) {
    for (let u = 0; u < users; u += 1) {
      const n = e * users + u;
      events.push({
        event_id: `${runId}-seed-${u}-${e}`,
        user_id: `${prefix}${u}`,
        item_id: items[(n * 7919 + u * 31) % items.length] ?? '0',
        timestamp_ms: base + e * 60_000 + u,
      });
    }
  }
  return events;
}

/** Ingests over 8 parallel streams, each user's events on one stream in order (one stream is far slower). */
export async function seed(client: RecommenderClient, events: IngestEvent[], streams = 8): Promise<void> {
  const parts: IngestEvent[][] = Array.from({ length: streams }, () => []);
  const streamOf = new Map<string, number>();
  for (const event of events) {
    const user = event.user_id ?? '';
    let s = streamOf.get(user);
    if (s === undefined) {
      s = streamOf.size % streams;
      streamOf.set(user, s);
    }
    parts[s]?.push(event);
  }
  const acks = await Promise.all(parts.map((part) => client.ingest(part, 256)));
  const bad = acks.flat().find((a) => a.status !== 'STATUS_ACCEPTED');
  if (bad !== undefined)
    throw new Error(`seeding: event ${bad.event_id} answered ${bad.status} ${bad.message}`);
}

/** Polls GetMemory for `users` until every entry is encoded; returns the time it took and the pending count at start. */
export async function waitForEncodings(
  client: RecommenderClient,
  users: string[],
  timeoutMs: number,
): Promise<{ pendingAtStart: number; drainMs: number | undefined }> {
  const started = Date.now();
  let pendingAtStart = -1;
  for (;;) {
    let pending = 0;
    for (const user of users) {
      const entries = await client.getMemory(user);
      pending += entries.filter((e) => !e.encoded).length;
    }
    if (pendingAtStart < 0) pendingAtStart = pending;
    if (pending === 0) return { pendingAtStart, drainMs: Date.now() - started };
    if (Date.now() - started > timeoutMs) return { pendingAtStart, drainMs: undefined };
    await new Promise((r) => setTimeout(r, 50));
  }
}
