/**
 * Memory-store URLs for Redis. Single node: `redis://[user:pass@]host:port[/db]` and `rediss://...` (TLS), as
 * ioredis reads them. Redis Cluster: `redis-cluster://[user:pass@]h1:p1,h2:p2,...` and `rediss-cluster://...`
 * (TLS to every node); the seed nodes are only where discovery starts, the client follows the cluster's slot map.
 * User and password are percent-decoded (a password with `@`, `:` or `,` is written %40, %3A, %2C).
 */
import { AppError } from '../../shared/errors.js';

export interface ClusterUrl {
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
  tls: boolean;
}

const CLUSTER_SCHEME = /^(rediss?)-cluster:\/\//;

export function isClusterUrl(url: string): boolean {
  return CLUSTER_SCHEME.test(url);
}

export function isRedisUrl(url: string): boolean {
  return /^rediss?:\/\/.+/.test(url) || isClusterUrl(url);
}

/** Parses a `redis-cluster://` / `rediss-cluster://` URL; the error names what is wrong but never the password. */
export function parseClusterUrl(url: string): ClusterUrl {
  const scheme = CLUSTER_SCHEME.exec(url);
  if (scheme === null)
    throw new AppError('INVALID_ARGUMENT', 'expected redis-cluster:// or rediss-cluster://');
  let rest = url.slice(scheme[0].length);
  const out: ClusterUrl = { nodes: [], tls: scheme[1] === 'rediss' };
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const userInfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = userInfo.indexOf(':');
    const user = colon >= 0 ? userInfo.slice(0, colon) : '';
    const pass = colon >= 0 ? userInfo.slice(colon + 1) : userInfo;
    try {
      if (user !== '') out.username = decodeURIComponent(user);
      if (pass !== '') out.password = decodeURIComponent(pass);
    } catch {
      throw new AppError('INVALID_ARGUMENT', 'redis cluster URL: credentials are not valid percent-encoding');
    }
  }
  if (/[/?#]/.test(rest))
    throw new AppError('INVALID_ARGUMENT', 'redis cluster URL: no path or query allowed (only h1:p1,h2:p2)');
  for (const hostPort of rest.split(',')) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(hostPort);
    const port = Number(m?.[2]);
    if (m === null || port < 1 || port > 65535)
      throw new AppError(
        'INVALID_ARGUMENT',
        `redis cluster URL: expected host:port, got ${JSON.stringify(hostPort)}`,
      );
    out.nodes.push({ host: (m[1] as string).replace(/^\[(.*)\]$/, '$1'), port });
  }
  return out;
}
