/**
 * Health Watch streams never end on their own; at drain the gateway ends them (status OK, after the final
 * NOT_SERVING was sent) instead of waiting out the drain bound and cancelling them. A server interceptor keeps
 * the open Watch calls, so grpc-health-check's own implementation serves them.
 */
import { Metadata, ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';

const WATCH = '/grpc.health.v1.Health/Watch';

export class WatchStreams {
  private readonly open = new Set<ServerInterceptingCall>();

  readonly interceptor: ServerInterceptor = (method, call) => {
    // Other calls pass through unwrapped: an intercepting layer costs every call and message on the hot path.
    // grpc-js chains what interceptors return through the call interface only, so the call itself does.
    if (method.path !== WATCH) return call as ServerInterceptingCall;
    const intercepted: ServerInterceptingCall = new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onCancel: () => {
            this.open.delete(intercepted);
          },
        }),
      sendStatus: (st, next) => {
        this.open.delete(intercepted);
        next(st);
      },
    });
    this.open.add(intercepted);
    return intercepted;
  };

  /** Ends every open Watch stream. */
  endAll(): void {
    for (const call of [...this.open])
      call.sendStatus({ code: status.OK, details: 'server is shutting down', metadata: new Metadata() });
    this.open.clear();
  }
}
