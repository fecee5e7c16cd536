/**
 * The transport floor: a bare grpc-js unary service whose messages are raw bytes (no protobuf work), so
 * that a client loop against it measures what HTTP/2 + grpc-js themselves cost on this machine for the
 * same message sizes as a Recommend call. The first 4 bytes of a request (uint32 BE) name the response
 * size; responses are preallocated per size so the server does no per-call allocation of its own.
 */
import { Server, ServerCredentials, type ServiceDefinition, type handleUnaryCall } from '@grpc/grpc-js';

export const ECHO_METHOD_PATH = '/automr.bench.v1.Echo/Echo';

const identity = (buffer: Buffer): Buffer => buffer;

export const echoServiceDefinition: ServiceDefinition = {
  Echo: {
    path: ECHO_METHOD_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

/** Builds an echo request of `requestBytes` (at least 4) asking for a `responseBytes` reply. */
export function makeEchoRequest(requestBytes: number, responseBytes: number): Buffer {
  const request = Buffer.alloc(Math.max(4, requestBytes), 0x61);
  request.writeUInt32BE(responseBytes, 0);
  return request;
}

export interface RunningServer {
  address: string;
  close(): Promise<void>;
}

export async function startEchoServer(host = '127.0.0.1', port = 0): Promise<RunningServer> {
  const responses = new Map<number, Buffer>();
  const echo: handleUnaryCall<Buffer, Buffer> = (call, callback) => {
    const size = call.request.length >= 4 ? call.request.readUInt32BE(0) : 0;
    let response = responses.get(size);
    if (response === undefined) {
      response = Buffer.alloc(size, 0x62);
      responses.set(size, response);
    }
    callback(null, response);
  };
  const server = new Server();
  server.addService(echoServiceDefinition, { Echo: echo });
  const boundPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (error, bound) =>
      error === null ? resolve(bound) : reject(error),
    );
  });
  return {
    address: `${host}:${boundPort}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      }),
  };
}
