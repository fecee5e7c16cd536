/**
 * Request size limits per method (grpc-js has one per server): Recommend may carry exclusion and candidate lists,
 * the other methods small messages. An oversize message is not parsed: its deserializer hands a marker to the
 * interceptor, which ends the call with RESOURCE_EXHAUSTED (a throwing deserializer would end it INTERNAL).
 */
import {
  Metadata,
  ServerInterceptingCall,
  status,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServiceDefinition,
} from '@grpc/grpc-js';

class TooLarge {
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {}
}

/**
 * Per-method request limits on `service`: `service` is a copy whose request deserializers refuse messages above the
 * method's limit, `maxBytes` the server-wide receive limit to configure (grpc-js itself refuses anything larger, with
 * RESOURCE_EXHAUSTED), and `interceptor` turns a refusal into RESOURCE_EXHAUSTED. Methods whose limit is the
 * server-wide one need neither: their calls pass through unwrapped (an intercepting layer costs every call).
 */
export function messageLimits(
  service: ServiceDefinition,
  limits: Readonly<Record<string, number>>,
  defaultLimit: number,
): { service: ServiceDefinition; interceptor: ServerInterceptor; maxBytes: number } {
  const maxBytes = Math.max(defaultLimit, ...Object.values(limits));
  const out: Record<string, ServiceDefinition[string]> = {};
  const checked = new Set<string>();
  for (const [name, method] of Object.entries(service)) {
    const limit = limits[name] ?? defaultLimit;
    if (limit >= maxBytes) {
      out[name] = method;
      continue;
    }
    checked.add(method.path);
    const parse = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (buffer: Buffer): unknown =>
        buffer.length > limit ? new TooLarge(buffer.length, limit) : parse(buffer),
    };
  }
  const interceptor: ServerInterceptor = (method, call) =>
    checked.has(method.path) ? refuseTooLarge(call) : (call as ServerInterceptingCall);
  return { service: out as ServiceDefinition, interceptor, maxBytes };
}

function refuseTooLarge(call: ServerInterceptingCallInterface): ServerInterceptingCall {
  return new ServerInterceptingCall(call, {
    start(next) {
      next({
        onReceiveMessage(message, pass) {
          if (!(message instanceof TooLarge)) return pass(message);
          call.sendStatus({
            code: status.RESOURCE_EXHAUSTED,
            details: `request message is ${message.bytes} bytes; this method takes at most ${message.limit}`,
            metadata: new Metadata(),
          });
        },
      });
    },
  });
}
