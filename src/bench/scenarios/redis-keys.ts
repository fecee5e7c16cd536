/** The bench's Redis figures and clean-up: every key it wrote lives under its own unique prefix. */
import { Redis } from 'ioredis';

async function scanPrefix(
  url: string,
  prefix: string,
  visit: (redis: Redis, keys: string[]) => Promise<void>,
) {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await visit(redis, keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export async function deleteRedisPrefix(url: string, prefix: string): Promise<number> {
  let removed = 0;
  await scanPrefix(url, prefix, async (redis, keys) => {
    removed += await redis.unlink(...keys);
  });
  return removed;
}

/** `MEMORY USAGE` summed over the keys under `prefix`. */
export async function redisBytes(url: string, prefix: string): Promise<{ bytes: number; keys: number }> {
  let bytes = 0;
  let count = 0;
  await scanPrefix(url, prefix, async (redis, keys) => {
    for (const key of keys) {
      bytes += Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) || 0;
      count += 1;
    }
  });
  return { bytes, keys: count };
}
