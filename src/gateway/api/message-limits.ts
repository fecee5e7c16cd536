/**
 * Request size limits per method (grpc-js has one per server): Recommend may carry exclusion and candidate lists,
 * the other methods small messages. An oversize message is not parsed: its deserializer hands a marker to the
 * interceptor, which ends the call with RESOURCE_EXHAUSTED (a throwing deserializer would end it INTERNAL).
 */
import {
  Metadata,
  ServerInterceptingCall,
  status,
  type ServerInterceptor,
  type ServiceDefinition,
} from '@grpc/grpc-js';

class TooLarge {
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {}
}

/** A copy of `service` whose request deserializers refuse messages above the method's limit. */
export function withMessageLimits(
  service: ServiceDefinition,
  limits: Readonly<Record<string, number>>,
  defaultLimit: number,
): ServiceDefinition {
  const out: Record<string, ServiceDefinition[string]> = {};
  for (const [name, method] of Object.entries(service)) {
    const limit = limits[name] ?? defaultLimit;
    const parse = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (buffer: Buffer): unknown =>
        buffer.length > limit ? new TooLarge(buffer.length, limit) : parse(buffer),
    };
  }
  return out as ServiceDefinition;
}

export const messageLimitInterceptor: ServerInterceptor = (_method, call) =>
  new ServerInterceptingCall(call, {
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
