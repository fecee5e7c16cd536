import { startModelServer } from '../../src/model-server/server.js';
import { defaultConfig } from '../../src/gateway/config.js';
import { startGateway } from '../../src/gateway/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import { BUNDLE_DIR, client, ingest, MODELS_DIR, recommend, tempDir, waitFor } from './helpers.js';
const ms = await startModelServer({ repository: MODELS_DIR, address: '127.0.0.1:0', logger: silentLogger() });
const gw = await startGateway(
  defaultConfig({
    addr: '127.0.0.1:0',
    dataDir: tempDir('lat-'),
    modelServer: ms.address,
    bundle: BUNDLE_DIR,
    metricsPort: 0,
  }),
  { logger: silentLogger() },
);
const c = client(gw.address);
const cat = gw.bundle.catalog;
const t0 = performance.now();
const N = 2000;
const evs = Array.from({ length: N }, (_, i) => ({
  event_id: `e${i}`,
  user_id: `u${i % 50}`,
  item_id: cat[i % cat.length]!.itemId,
  timestamp_ms: 1_700_000_000_000 + i,
}));
const r = await ingest(c, evs);
const ingestS = (performance.now() - t0) / 1000;
console.log(
  `ingest ${N} events over one stream (50 users): ${(N / ingestS).toFixed(0)} events/s, acks ${r.acks.length}`,
);
await waitFor(() => Promise.resolve(gw.encoder.backlog() === 0), 60_000, 'enc');
console.log(`all encoded after ${((performance.now() - t0) / 1000).toFixed(2)} s`);
const tot: number[] = [],
  gwOnly: number[] = [],
  e2e: number[] = [];
for (let i = 0; i < 300; i++) {
  const s = performance.now();
  const res = await recommend(c, `u${i % 50}`, 10, 1);
  e2e.push(performance.now() - s);
  const t = res.summary!.timings!;
  tot.push(t.total_ms);
  gwOnly.push(t.total_ms - t.infer_ms);
}
const q = (a: number[], p: number) =>
  [...a].sort((x, y) => x - y)[Math.floor(p * (a.length - 1))]!.toFixed(2);
console.log(
  `Recommend (history 40/user, memory_k 1), 300 sequential: client e2e p50 ${q(e2e, 0.5)} p99 ${q(e2e, 0.99)} ms; gateway total p50 ${q(tot, 0.5)} p99 ${q(tot, 0.99)}; gateway excl. infer p50 ${q(gwOnly, 0.5)} p99 ${q(gwOnly, 0.99)}`,
);
c.close();
await gw.close();
await ms.close();
