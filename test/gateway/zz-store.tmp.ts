import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import { tempDir } from './helpers.js';
const s = new LmdbMemoryStore(tempDir('st-'));
for (const users of [50, 1]) {
  const t0 = performance.now();
  const N = 2000;
  await Promise.all(
    Array.from({ length: N }, (_, i) =>
      s.append(
        { userId: `u${users}-${i % users}`, eventId: `e${i}`, itemId: 'x', token: 3, timestampMs: i },
        100,
      ),
    ),
  );
  console.log(`${users} users: ${(N / ((performance.now() - t0) / 1000)).toFixed(0)} appends/s`);
}
await s.close();
