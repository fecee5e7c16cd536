/**
 * Authentication and per-method authorization as a grpc-js server interceptor: every call except health carries
 * `authorization: Bearer <token>`; the token's scopes must include the method's scope. The call's handler never
 * runs for a refused call (messages that arrive meanwhile are held by grpc-js and dropped).
 */
import { Metadata, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import { AppError } from '../../shared/errors.js';
import { toGrpcStatus } from '../../shared/grpc-status.js';
import type { Logger } from '../../shared/logger.js';
import { unauthenticated, type Scope, type TokenVerifier } from '../auth/verifiers.js';
import { SERVICE_NAME } from '../../shared/recommender-proto.js';

export const METHOD_SCOPES: Readonly<Record<string, Scope>> = {
  [`/${SERVICE_NAME}/Recommend`]: 'recommend',
  [`/${SERVICE_NAME}/Ingest`]: 'ingest',
  [`/${SERVICE_NAME}/IngestBatch`]: 'ingest',
  [`/${SERVICE_NAME}/GetMemory`]: 'memory:read',
  [`/${SERVICE_NAME}/ForgetUser`]: 'memory:delete',
};

/** Load balancers and kubelets probe health without credentials. */
const PUBLIC_PREFIXES = ['/grpc.health.v1.Health/'];
/** Reflection (when enabled) only needs a valid token: it describes the API, not anyone's data. */
const AUTHENTICATED_PREFIXES = ['/grpc.reflection.'];

type Rule =
  { kind: 'public' } | { kind: 'authenticated' } | { kind: 'scope'; scope: Scope } | { kind: 'deny' };

export function ruleFor(path: string): Rule {
  if (PUBLIC_PREFIXES.some((p) => path.startsWith(p))) return { kind: 'public' };
  const scope = METHOD_SCOPES[path];
  if (scope !== undefined) return { kind: 'scope', scope };
  if (AUTHENTICATED_PREFIXES.some((p) => path.startsWith(p))) return { kind: 'authenticated' };
  return { kind: 'deny' };
}

export const permissionDenied = (): AppError => new AppError('PERMISSION_DENIED', 'permission denied');

function bearerOf(metadata: Metadata): string | undefined {
  const values = metadata.get('authorization');
  if (values.length !== 1 || typeof values[0] !== 'string') return undefined;
  const m = /^Bearer +([^\s]+)\s*$/i.exec(values[0]);
  return m?.[1];
}

export async function authorize(verifier: TokenVerifier, path: string, metadata: Metadata): Promise<void> {
  const rule = ruleFor(path);
  if (rule.kind === 'public') return;
  const token = bearerOf(metadata);
  if (token === undefined) throw unauthenticated();
  const scopes = await verifier.verify(token);
  if (rule.kind === 'deny' || (rule.kind === 'scope' && !scopes.has(rule.scope))) throw permissionDenied();
}

export function authInterceptor(verifier: TokenVerifier, logger: Logger): ServerInterceptor {
  return (method, call) => {
    if (ruleFor(method.path).kind === 'public') return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, pass) {
            authorize(verifier, method.path, metadata).then(
              () => pass(metadata),
              (error: unknown) => {
                logger.debug({ method: method.path, code: (error as AppError).code }, 'call refused');
                const { code, details } = toGrpcStatus(error);
                call.sendStatus({ code, details, metadata: new Metadata() });
              },
            );
          },
        });
      },
    });
  };
}
