/**
 * Caller credentials: a bearer token becomes the set of scopes it grants, or UNAUTHENTICATED. Two sources:
 * JWTs verified with `jose` against a JWKS file (signature, `iss`, `aud`, `exp`/`nbf`), or a static tokens
 * file for small set-ups. Failure reasons go to the log only: the caller learns nothing it could use.
 */
import { createHash } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { AppError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { WatchedFile } from './watched-file.js';

export const SCOPES = ['recommend', 'ingest', 'memory:read', 'memory:delete'] as const;
export type Scope = (typeof SCOPES)[number];

export interface TokenVerifier {
  /** The scopes the token grants; throws UNAUTHENTICATED for a missing, malformed, expired or unknown token. */
  verify(token: string): Promise<ReadonlySet<string>>;
  close(): void;
}

export const unauthenticated = (): AppError =>
  new AppError('UNAUTHENTICATED', 'missing or invalid credentials');

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** Parses a tokens file: `token scope,scope,...` per line; blank lines and `#` comments ignored. */
export function parseTokensFile(text: string): Map<string, ReadonlySet<string>> {
  const tokens = new Map<string, ReadonlySet<string>>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const [token, scopes = '', extra] = line.split(/\s+/);
    if (token === undefined || extra !== undefined)
      throw new AppError('INVALID_ARGUMENT', `tokens file line ${i + 1}: expected "token scope,scope"`);
    if (token.length < 16)
      throw new AppError('INVALID_ARGUMENT', `tokens file line ${i + 1}: token shorter than 16 characters`);
    const set = new Set(scopes.split(',').filter((s) => s !== ''));
    for (const s of set)
      if (!(SCOPES as readonly string[]).includes(s))
        throw new AppError(
          'INVALID_ARGUMENT',
          `tokens file line ${i + 1}: unknown scope "${s}" (known: ${SCOPES.join(', ')})`,
        );
    // Keyed by a hash: the lookup's timing says nothing about how much of a guessed token matched.
    tokens.set(sha256(token), set);
  });
  return tokens;
}

export class StaticTokenVerifier implements TokenVerifier {
  private readonly file: WatchedFile<Map<string, ReadonlySet<string>>>;

  constructor(path: string, logger: Logger) {
    this.file = new WatchedFile(path, parseTokensFile, logger);
  }

  verify(token: string): Promise<ReadonlySet<string>> {
    const scopes = this.file.value.get(sha256(token));
    return scopes === undefined ? Promise.reject(unauthenticated()) : Promise.resolve(scopes);
  }

  close(): void {
    this.file.close();
  }
}

export interface JwtOptions {
  jwksFile: string;
  issuer: string;
  audience: string;
  /** Allowed clock skew for exp/nbf (default 30 s). */
  clockToleranceS?: number;
}

/** Scopes from the OAuth `scope` claim (space separated) or `scp` (array or string). */
function scopesOf(payload: JWTPayload): ReadonlySet<string> {
  const raw = payload.scope ?? payload.scp;
  if (typeof raw === 'string') return new Set(raw.split(' ').filter((s) => s !== ''));
  if (Array.isArray(raw)) return new Set(raw.filter((s): s is string => typeof s === 'string'));
  return new Set();
}

export class JwtVerifier implements TokenVerifier {
  private readonly file: WatchedFile<ReturnType<typeof createLocalJWKSet>>;

  constructor(
    private readonly options: JwtOptions,
    private readonly logger: Logger,
  ) {
    this.file = new WatchedFile(
      options.jwksFile,
      (text) => {
        let jwks: JSONWebKeySet;
        try {
          jwks = JSON.parse(text) as JSONWebKeySet;
        } catch (error) {
          throw new AppError('INVALID_ARGUMENT', `JWKS file ${options.jwksFile} is not JSON`, {
            cause: error,
          });
        }
        if (!Array.isArray(jwks.keys) || jwks.keys.length === 0)
          throw new AppError('INVALID_ARGUMENT', `JWKS file ${options.jwksFile} has no "keys"`);
        return createLocalJWKSet(jwks);
      },
      logger,
    );
  }

  async verify(token: string): Promise<ReadonlySet<string>> {
    try {
      const { payload } = await jwtVerify(token, this.file.value, {
        issuer: this.options.issuer,
        audience: this.options.audience,
        requiredClaims: ['exp'],
        clockTolerance: this.options.clockToleranceS ?? 30,
      });
      return scopesOf(payload);
    } catch (error) {
      this.logger.debug({ reason: (error as Error).message }, 'JWT rejected');
      throw unauthenticated();
    }
  }

  close(): void {
    this.file.close();
  }
}
