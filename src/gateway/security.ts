/**
 * The gateway's security set-up from its config: who may call (auth mode and verifier), over what transport
 * (TLS/mTLS from files), and the secure-by-default rule: a listener reachable beyond loopback without caller
 * authentication only when the operator said so with AUTOMR_AUTH=none.
 */
import { readFileSync } from 'node:fs';
import type { ChannelCredentials, ServerCredentials, ServerInterceptor } from '@grpc/grpc-js';
import { AppError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { channelCredentials, isLoopback, serverCredentials } from '../shared/transport.js';
import { authInterceptor } from './api/auth-interceptor.js';
import { JwtVerifier, StaticTokenVerifier, type TokenVerifier } from './auth/verifiers.js';
import type { GatewayConfig } from './config.js';

export interface GatewaySecurity {
  auth: 'none' | 'jwt' | 'static';
  tls: 'off' | 'tls' | 'mtls';
  credentials: ServerCredentials;
  interceptors: ServerInterceptor[];
  close(): void;
}

type SecurityConfig = Pick<
  GatewayConfig,
  | 'addr'
  | 'auth'
  | 'authJwksFile'
  | 'authIssuer'
  | 'authAudience'
  | 'authTokensFile'
  | 'tlsCert'
  | 'tlsKey'
  | 'tlsClientCa'
>;

function required(value: string, option: string, mode: string): string {
  if (value === '') throw new AppError('FAILED_PRECONDITION', `AUTOMR_AUTH=${mode} needs ${option}`);
  return value;
}

function verifierOf(config: SecurityConfig, logger: Logger): TokenVerifier | undefined {
  switch (config.auth) {
    case 'jwt':
      return new JwtVerifier(
        {
          jwksFile: required(config.authJwksFile, 'AUTOMR_AUTH_JWKS_FILE', 'jwt'),
          issuer: required(config.authIssuer, 'AUTOMR_AUTH_ISSUER', 'jwt'),
          audience: required(config.authAudience, 'AUTOMR_AUTH_AUDIENCE', 'jwt'),
        },
        logger,
      );
    case 'static':
      return new StaticTokenVerifier(
        required(config.authTokensFile, 'AUTOMR_AUTH_TOKENS_FILE', 'static'),
        logger,
      );
    case 'none':
      return undefined;
    case 'auto':
      if (!isLoopback(config.addr))
        throw new AppError(
          'FAILED_PRECONDITION',
          `refusing to listen on ${config.addr} without caller authentication: set AUTOMR_AUTH=jwt or static ` +
            '(see README "Production security"), or AUTOMR_AUTH=none to expose it unauthenticated on purpose',
        );
      return undefined;
  }
}

export function gatewaySecurity(config: SecurityConfig, logger: Logger): GatewaySecurity {
  const verifier = verifierOf(config, logger);
  try {
    const credentials = serverCredentials({
      cert: config.tlsCert,
      key: config.tlsKey,
      clientCa: config.tlsClientCa,
    });
    return {
      auth: config.auth === 'auto' ? 'none' : config.auth,
      tls: config.tlsCert === '' ? 'off' : config.tlsClientCa === '' ? 'tls' : 'mtls',
      credentials,
      interceptors: verifier === undefined ? [] : [authInterceptor(verifier, logger)],
      close: () => verifier?.close(),
    };
  } catch (error) {
    verifier?.close();
    throw error;
  }
}

/** Parses a header file: one `name: value` line (the value may hold a secret, hence a file, not a variable). */
export function parseHeaderFile(text: string): Record<string, string> {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:\s*(\S.*?)\s*$/.exec(text.trim());
  if (m === null)
    throw new AppError('FAILED_PRECONDITION', 'model-server header file: expected one "name: value" line');
  return { [(m[1] as string).toLowerCase()]: m[2] as string };
}

/** TLS/mTLS and the optional auth header for the gateway's connection to Triton (or the local model server). */
export function modelServerTransport(
  config: Pick<
    GatewayConfig,
    'modelServerCa' | 'modelServerClientCert' | 'modelServerClientKey' | 'modelServerHeaderFile'
  >,
): { credentials: ChannelCredentials; headers: Record<string, string> } {
  const credentials = channelCredentials({
    ...(config.modelServerCa ? { ca: config.modelServerCa } : {}),
    ...(config.modelServerClientCert ? { cert: config.modelServerClientCert } : {}),
    ...(config.modelServerClientKey ? { key: config.modelServerClientKey } : {}),
  });
  let headers: Record<string, string> = {};
  if (config.modelServerHeaderFile !== '') {
    let text: string;
    try {
      text = readFileSync(config.modelServerHeaderFile, 'utf8');
    } catch (error) {
      throw new AppError(
        'FAILED_PRECONDITION',
        `cannot read AUTOMR_MODEL_SERVER_HEADER_FILE: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    headers = parseHeaderFile(text);
  }
  return { credentials, headers };
}
