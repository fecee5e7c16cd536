/**
 * Where an onnxruntime-node session runs. onnxruntime-node's `session.run` computes on the calling
 * thread (measured: the event loop stalls for the whole run; see docs/MODEL_SERVER.md), so by default
 * each session lives in its own worker thread and the main thread stays free for gRPC I/O, validation
 * and batching. The in-process adapter remains for comparison and for hosts where workers are unwanted.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

export interface PlainTensor {
  type: ort.Tensor.Type;
  data: ort.Tensor.DataType;
  dims: number[];
}

export interface ValueMetadata {
  name: string;
  isTensor: boolean;
  type?: ort.Tensor.Type;
  shape?: readonly (number | string)[];
}

export interface SessionPort {
  readonly inputMetadata: readonly ValueMetadata[];
  readonly outputMetadata: readonly ValueMetadata[];
  run(feeds: Record<string, PlainTensor>, outputs: string[]): Promise<Record<string, PlainTensor>>;
  /** False once the session can no longer run (its worker died). */
  alive(): boolean;
  release(): Promise<void>;
}

export interface SessionSettings {
  intraOpThreads: number;
  interOpThreads: number;
}

function sessionOptions(s: SessionSettings): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: s.intraOpThreads,
    interOpNumThreads: s.interOpThreads,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
}

function plainMetadata(list: readonly ort.InferenceSession.ValueMetadata[]): ValueMetadata[] {
  return list.map((m) =>
    m.isTensor
      ? { name: m.name, isTensor: true, type: m.type, shape: [...m.shape] }
      : { name: m.name, isTensor: false },
  );
}

export async function inProcessSession(file: string, settings: SessionSettings): Promise<SessionPort> {
  const session = await ort.InferenceSession.create(file, sessionOptions(settings));
  return {
    inputMetadata: plainMetadata(session.inputMetadata),
    outputMetadata: plainMetadata(session.outputMetadata),
    async run(feeds, outputs) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, f] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(f.type, f.data, f.dims);
      const results = await session.run(ortFeeds, outputs);
      const out: Record<string, PlainTensor> = {};
      for (const [name, r] of Object.entries(results))
        out[name] = { type: r.type, data: r.data, dims: [...r.dims] };
      return out;
    },
    alive: () => true,
    release: () => session.release(),
  };
}

// The worker body is plain CommonJS evaluated in the worker, so it runs the same from src/ (tsx) and
// dist/ without a separate build step; it only converts messages to ort calls.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const meta = (list) => list.map((m) => m.isTensor
  ? { name: m.name, isTensor: true, type: m.type, shape: [...m.shape] }
  : { name: m.name, isTensor: false });
ort.InferenceSession.create(workerData.file, workerData.options).then((session) => {
  parentPort.postMessage({ kind: 'ready', inputMetadata: meta(session.inputMetadata), outputMetadata: meta(session.outputMetadata) });
  parentPort.on('message', async (msg) => {
    if (msg.kind === 'release') {
      await session.release();
      parentPort.postMessage({ kind: 'released' });
      return;
    }
    try {
      const feeds = {};
      for (const [name, f] of Object.entries(msg.feeds)) feeds[name] = new ort.Tensor(f.type, f.data, f.dims);
      const results = await session.run(feeds, msg.outputs);
      const out = {};
      const transfer = [];
      for (const [name, r] of Object.entries(results)) {
        out[name] = { type: r.type, data: r.data, dims: [...r.dims] };
        if (r.type !== 'string') transfer.push(r.data.buffer);
      }
      parentPort.postMessage({ kind: 'result', id: msg.id, outputs: out }, transfer);
    } catch (error) {
      parentPort.postMessage({ kind: 'error', id: msg.id, message: String(error && error.message || error) });
    }
  });
}, (error) => parentPort.postMessage({ kind: 'failed', message: String(error && error.message || error) }));
`;

interface Pending {
  resolve: (out: Record<string, PlainTensor>) => void;
  reject: (error: Error) => void;
}

type WorkerMessage =
  | { kind: 'ready'; inputMetadata: ValueMetadata[]; outputMetadata: ValueMetadata[] }
  | { kind: 'failed'; message: string }
  | { kind: 'result'; id: number; outputs: Record<string, PlainTensor> }
  | { kind: 'error'; id: number; message: string }
  | { kind: 'released' };

export async function workerSession(file: string, settings: SessionSettings): Promise<SessionPort> {
  const ortPath = createRequire(import.meta.url).resolve('onnxruntime-node');
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { file, ortPath, options: sessionOptions(settings) },
  });
  const pending = new Map<number, Pending>();
  let nextId = 0;
  let released: (() => void) | undefined;
  let dead: Error | undefined;

  const ready = new Promise<{ inputMetadata: ValueMetadata[]; outputMetadata: ValueMetadata[] }>(
    (resolve, reject) => {
      worker.on('message', (msg: WorkerMessage) => {
        switch (msg.kind) {
          case 'ready':
            return resolve(msg);
          case 'failed':
            return reject(new Error(msg.message));
          case 'result':
            pending.get(msg.id)?.resolve(msg.outputs);
            pending.delete(msg.id);
            return;
          case 'error':
            pending.get(msg.id)?.reject(new Error(msg.message));
            pending.delete(msg.id);
            return;
          case 'released':
            released?.();
        }
      });
      const fail = (error: Error): void => {
        dead = error;
        reject(error);
        for (const p of pending.values()) p.reject(error);
        pending.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => fail(new Error(`onnxruntime worker exited (code ${code})`)));
    },
  );
  let meta: Awaited<typeof ready>;
  try {
    meta = await ready;
  } catch (error) {
    await worker.terminate();
    throw error;
  }

  return {
    inputMetadata: meta.inputMetadata,
    outputMetadata: meta.outputMetadata,
    run(feeds, outputs) {
      if (dead !== undefined) return Promise.reject(dead);
      const id = nextId++;
      // Copy each input into its own buffer (a view may sit in a larger gRPC buffer) and transfer it.
      const transfer: ArrayBuffer[] = [];
      const sent: Record<string, PlainTensor> = {};
      for (const [name, f] of Object.entries(feeds)) {
        if (Array.isArray(f.data)) sent[name] = f;
        else {
          const copy = (f.data as Float32Array).slice();
          transfer.push(copy.buffer);
          sent[name] = { ...f, data: copy };
        }
      }
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ kind: 'run', id, feeds: sent, outputs }, transfer);
      });
    },
    alive: () => dead === undefined,
    async release() {
      if (dead === undefined) {
        await new Promise<void>((resolve) => {
          released = resolve;
          worker.postMessage({ kind: 'release' });
          setTimeout(resolve, 2000).unref();
        });
      }
      await worker.terminate();
    },
  };
}
