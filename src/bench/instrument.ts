/**
 * Counts the ModelInfer traffic a model server receives (calls, protobuf payload bytes each way) by
 * wrapping the (de)serializers of the service definitions passed to `Server.prototype.addService` of
 * grpc-js. Installed only inside the benchmark's model-server host, before the server is created, so the
 * model server's code stays untouched. Counting on the server side is deliberate: grpc-js client stubs
 * capture their request functions when grpc-js loads, so a client-side wrapper would see nothing.
 * Payload sizes exclude HTTP/2 framing and headers (tens of bytes per call).
 */
import grpc, { type ServiceDefinition } from '@grpc/grpc-js';
import type { HostStats } from './servers.js';

const traffic: Required<Omit<HostStats, 'cpuUs'>> = {
  modelCalls: 0,
  modelRequestBytes: 0,
  modelResponseBytes: 0,
};
let installed = false;

export function modelTraffic(): Omit<HostStats, 'cpuUs'> {
  return { ...traffic };
}

export function installModelTrafficCounter(methodSuffix = '/ModelInfer'): void {
  if (installed) return;
  installed = true;
  type AddService = (
    this: grpc.Server,
    service: ServiceDefinition,
    implementation: grpc.UntypedServiceImplementation,
  ) => void;
  const proto = grpc.Server.prototype as unknown as { addService: AddService };
  const original = proto.addService;
  proto.addService = function (
    this: grpc.Server,
    service: ServiceDefinition,
    implementation: grpc.UntypedServiceImplementation,
  ): void {
    const counted: Record<string, ServiceDefinition[string]> = {};
    for (const [name, method] of Object.entries(service)) {
      if (!method.path.endsWith(methodSuffix)) {
        counted[name] = method;
        continue;
      }
      counted[name] = {
        ...method,
        requestDeserialize: (buffer: Buffer) => {
          traffic.modelCalls += 1;
          traffic.modelRequestBytes += buffer.length;
          return method.requestDeserialize(buffer) as unknown;
        },
        responseSerialize: (value: unknown) => {
          const buffer = method.responseSerialize(value);
          traffic.modelResponseBytes += buffer.length;
          return buffer;
        },
      };
    }
    original.call(this, counted, implementation);
  };
}
