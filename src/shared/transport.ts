/**
 * gRPC transport credentials from PEM files, for every listener (gateway, model server) and every client
 * (gateway → Triton, demo, bench). Server certificates are re-read when the files change (grpc-js's file-watcher
 * certificate provider): a renewed certificate is served to new connections without a restart.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import {
  credentials,
  experimental,
  InterceptingCall,
  ServerCredentials,
  type ChannelCredentials,
  type Interceptor,
} from '@grpc/grpc-js';
import { AppError } from './errors.js';

export interface ServerTlsFiles {
  cert: string;
  key: string;
  /** When set, clients must present a certificate signed by this CA (mTLS). */
  clientCa?: string;
}

export interface ClientTlsFiles {
  /** CA that signed the server's certificate (default: the system roots). */
  ca?: string;
  /** Client certificate and key for mTLS. */
  cert?: string;
  key?: string;
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new AppError('FAILED_PRECONDITION', `cannot read ${what} ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Fails start-up with a clear message when the files do not make a usable TLS context. */
function checkPem(
  cert: Buffer | undefined,
  key: Buffer | undefined,
  ca: Buffer | undefined,
  what: string,
): void {
  try {
    createSecureContext({ cert, key, ca });
  } catch (error) {
    throw new AppError('FAILED_PRECONDITION', `${what}: ${(error as Error).message}`, { cause: error });
  }
}

/** TLS when cert and key are given (mTLS with clientCa), else plaintext. Half a pair is refused. */
export function serverCredentials(
  tls: Partial<ServerTlsFiles> | undefined,
  refreshIntervalMs = 5_000,
): ServerCredentials {
  const { cert, key, clientCa } = tls ?? {};
  if (!cert && !key) {
    if (clientCa)
      throw new AppError('FAILED_PRECONDITION', 'a TLS client CA needs a TLS certificate and key');
    return ServerCredentials.createInsecure();
  }
  if (!cert || !key) throw new AppError('FAILED_PRECONDITION', 'TLS needs both a certificate and a key file');
  checkPem(
    read(cert, 'TLS certificate'),
    read(key, 'TLS key'),
    clientCa ? read(clientCa, 'TLS client CA') : undefined,
    'TLS certificate/key/client CA',
  );
  const provider = new experimental.FileWatcherCertificateProvider({
    certificateFile: cert,
    privateKeyFile: key,
    ...(clientCa ? { caCertificateFile: clientCa } : {}),
    refreshIntervalMs,
  });
  // grpc-js takes (identity provider, CA provider or null, require client certificate).
  return experimental.createCertificateProviderServerCredentials(
    provider,
    clientCa ? provider : null,
    Boolean(clientCa),
  );
}

/** TLS when any file is given, else plaintext. */
export function channelCredentials(tls: ClientTlsFiles | undefined): ChannelCredentials {
  const { ca, cert, key } = tls ?? {};
  if (!ca && !cert && !key) return credentials.createInsecure();
  if (Boolean(cert) !== Boolean(key))
    throw new AppError(
      'FAILED_PRECONDITION',
      'a TLS client certificate needs its key (and the key its certificate)',
    );
  const caPem = ca ? read(ca, 'TLS CA') : null;
  const certPem = cert ? read(cert, 'TLS client certificate') : null;
  const keyPem = key ? read(key, 'TLS client key') : null;
  checkPem(certPem ?? undefined, keyPem ?? undefined, caPem ?? undefined, 'TLS client files');
  return credentials.createSsl(caPem, keyPem, certPem);
}

/** True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopback(hostPort: string): boolean {
  const host = hostPort.slice(0, hostPort.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A client interceptor that sends `authorization: Bearer <token>` on every call (works on plaintext loopback too). */
export function bearerInterceptor(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/** What a RecommenderClient (src/client) takes to reach a gateway: credentials, per-call metadata, channel options. */
export interface ClientConnection {
  credentials: ChannelCredentials;
  metadata?: Record<string, string>;
  channelOptions?: { 'grpc.ssl_target_name_override'?: string };
}

/** `authorization: Bearer <AUTOMR_TOKEN>` as per-call metadata, when the variable is set. */
export function tokenMetadataFromEnv(env: NodeJS.ProcessEnv = process.env): {
  metadata?: Record<string, string>;
} {
  const token = env.AUTOMR_TOKEN?.trim();
  return token ? { metadata: { authorization: `Bearer ${token}` } } : {};
}

/**
 * How the command-line clients (demo, bench) reach a gateway: AUTOMR_TOKEN (bearer token), AUTOMR_CLIENT_TLS_CA
 * (TLS, verifying the gateway against this CA), AUTOMR_CLIENT_TLS_CERT / _KEY (mTLS), AUTOMR_CLIENT_TLS_SERVER_NAME
 * (the name in the gateway's certificate when it differs from the address).
 */
export function clientConnectionFromEnv(env: NodeJS.ProcessEnv = process.env): ClientConnection {
  const creds = channelCredentials({
    ...(env.AUTOMR_CLIENT_TLS_CA ? { ca: env.AUTOMR_CLIENT_TLS_CA } : {}),
    ...(env.AUTOMR_CLIENT_TLS_CERT ? { cert: env.AUTOMR_CLIENT_TLS_CERT } : {}),
    ...(env.AUTOMR_CLIENT_TLS_KEY ? { key: env.AUTOMR_CLIENT_TLS_KEY } : {}),
  });
  const serverName = env.AUTOMR_CLIENT_TLS_SERVER_NAME;
  return {
    credentials: creds,
    ...tokenMetadataFromEnv(env),
    ...(serverName ? { channelOptions: { 'grpc.ssl_target_name_override': serverName } } : {}),
  };
}

/** Just the bearer token of AUTOMR_TOKEN as channel options (the bench: plaintext loopback servers of its own). */
export function tokenOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): { interceptors?: Interceptor[] } {
  const token = env.AUTOMR_TOKEN?.trim();
  return token ? { interceptors: [bearerInterceptor(token)] } : {};
}
