/**
 * Counts a process's outgoing unary gRPC traffic (calls, protobuf payload bytes each way, time until the
 * response) by wrapping `Client.prototype.makeUnaryRequest` of grpc-js. Installed only inside the
 * benchmark's gateway host, before the gateway is loaded, so the gateway's code stays untouched; the
 * payload sizes exclude HTTP/2 framing and headers (tens of bytes per call).
 */
import { performance } from 'node:perf_hooks';
import grpc from '@grpc/grpc-js';
import type { HostStats } from './servers.js';

const traffic: HostStats = { modelCalls: 0, modelRequestBytes: 0, modelResponseBytes: 0, modelTimeNs: 0 };
let installed = false;

export function modelTraffic(): HostStats {
  return { ...traffic };
}

type AnyFn = (...args: unknown[]) => unknown;

export function installModelTrafficCounter(): void {
  if (installed) return;
  installed = true;
  const proto = grpc.Client.prototype as unknown as Record<string, AnyFn>;
  const original = proto.makeUnaryRequest;
  if (original === undefined) return;
  proto.makeUnaryRequest = function (this: unknown, ...args: unknown[]): unknown {
    const [method, serialize, deserialize, ...rest] = args as [string, AnyFn, AnyFn, ...unknown[]];
    const started = performance.now();
    traffic.modelCalls += 1;
    const countingSerialize = (value: unknown): unknown => {
      const buffer = serialize(value) as Buffer;
      traffic.modelRequestBytes += buffer.length;
      return buffer;
    };
    const countingDeserialize = (buffer: Buffer): unknown => {
      traffic.modelResponseBytes += buffer.length;
      traffic.modelTimeNs += Math.round((performance.now() - started) * 1e6);
      return deserialize(buffer);
    };
    return original.call(this, method, countingSerialize, countingDeserialize, ...rest);
  };
}
