/**
 * A small typed client of the public AutoMR API (`proto/automr/v1/recommender.proto`), loaded with
 * proto-loader at run time: used by the benchmark to seed and probe the service and by the replay command.
 */
import { fileURLToPath } from 'node:url';
import { Client, Metadata, credentials, status as grpcStatus, type ClientDuplexStream } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));
export const RECOMMENDER_PROTO = `${PROTO_ROOT}/automr/v1/recommender.proto`;
export const RECOMMENDER_SERVICE = 'automr.v1.RecommenderService';

export interface IngestEvent {
  eventId: string;
  userId: string;
  itemId: string;
  timestampMs: number;
}

export interface IngestAck {
  eventId: string;
  status: 'STATUS_UNSPECIFIED' | 'STATUS_ACCEPTED' | 'STATUS_DUPLICATE' | 'STATUS_REJECTED';
  message?: string;
  unknownItem?: boolean;
}

export interface RankedItem {
  rank: number;
  itemId: string;
  title?: string;
  score: number;
}

export interface RecommendSummary {
  retrieved?: { itemId?: string; timestampMs?: number; score?: number; eventId?: string }[];
  modelVersion?: string;
  timings?: {
    memoryReadMs?: number;
    encodeMs?: number;
    retrieveMs?: number;
    inferMs?: number;
    totalMs?: number;
  };
  historySize?: number;
  memorySize?: number;
  pendingEncodings?: number;
  encodingLagging?: boolean;
}

export interface RecommendResult {
  items: RankedItem[];
  summary: RecommendSummary | undefined;
}

export interface MemoryEntry {
  eventId: string;
  itemId: string;
  timestampMs: number;
  encoded?: boolean;
  unknownItem?: boolean;
}

interface MethodDef {
  path: string;
  requestSerialize: (value: unknown) => Buffer;
  responseDeserialize: (buffer: Buffer) => unknown;
}

const LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

export class AutoMrClient {
  private readonly client: Client;
  private readonly methods: Record<'Ingest' | 'Recommend' | 'GetMemory' | 'ForgetUser', MethodDef>;

  constructor(
    readonly address: string,
    private readonly deadlineMs = 30_000,
  ) {
    const definition = loadSync(RECOMMENDER_PROTO, { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
    const service = definition[RECOMMENDER_SERVICE] as unknown as Record<string, MethodDef>;
    const get = (name: string): MethodDef => {
      const method = service[name];
      if (method === undefined) throw new Error(`${RECOMMENDER_SERVICE}/${name} missing from the proto`);
      return method;
    };
    this.methods = {
      Ingest: get('Ingest'),
      Recommend: get('Recommend'),
      GetMemory: get('GetMemory'),
      ForgetUser: get('ForgetUser'),
    };
    this.client = new Client(address, credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
  }

  waitForReady(timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve()));
    });
  }

  /** Opens one Ingest stream and sends every event, `window` at most unacknowledged; resolves with all acks.
   * The deadline grows with the number of events (50 ms each): a shared machine can be slow. */
  async ingest(events: IngestEvent[], window = 256): Promise<IngestAck[]> {
    if (events.length === 0) return [];
    const method = this.methods.Ingest;
    const call: ClientDuplexStream<unknown, IngestAck> = this.client.makeBidiStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize as (buffer: Buffer) => IngestAck,
      new Metadata(),
      { deadline: Date.now() + this.deadlineMs + events.length * 50 },
    );
    const acks: IngestAck[] = [];
    let next = 0;
    return new Promise<IngestAck[]>((resolve, reject) => {
      const pump = (): void => {
        while (next < events.length && next - acks.length < window) {
          call.write(events[next]);
          next += 1;
        }
        if (next === events.length && acks.length === events.length) call.end();
      };
      call.on('data', (ack: IngestAck) => {
        acks.push(ack);
        pump();
      });
      call.on('error', reject);
      call.on('status', (status) => {
        if (status.code === grpcStatus.OK) resolve(acks);
      });
      pump();
    });
  }

  recommend(userId: string, topN: number, memoryK: number): Promise<RecommendResult> {
    const method = this.methods.Recommend;
    const stream = this.client.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      { userId, topN, memoryK },
      new Metadata(),
      { deadline: Date.now() + this.deadlineMs },
    );
    const items: RankedItem[] = [];
    let summary: RecommendSummary | undefined;
    return new Promise<RecommendResult>((resolve, reject) => {
      stream.on('data', (message: { items?: { items?: RankedItem[] }; summary?: RecommendSummary }) => {
        if (message.items?.items !== undefined) items.push(...message.items.items);
        if (message.summary !== undefined && message.summary !== null) summary = message.summary;
      });
      stream.on('error', reject);
      stream.on('status', (status) => {
        if (status.code === grpcStatus.OK) resolve({ items, summary });
      });
    });
  }

  private unary<T>(name: 'GetMemory' | 'ForgetUser', request: unknown): Promise<T> {
    const method = this.methods[name];
    return new Promise<T>((resolve, reject) => {
      this.client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        new Metadata(),
        { deadline: Date.now() + this.deadlineMs },
        (error, value) => (error ? reject(error) : resolve(value as T)),
      );
    });
  }

  async getMemory(userId: string): Promise<MemoryEntry[]> {
    const response = await this.unary<{ entries?: MemoryEntry[] }>('GetMemory', { userId });
    return response.entries ?? [];
  }

  async forgetUser(userId: string): Promise<number> {
    const response = await this.unary<{ removed?: number }>('ForgetUser', { userId });
    return response.removed ?? 0;
  }

  close(): void {
    this.client.close();
  }
}
