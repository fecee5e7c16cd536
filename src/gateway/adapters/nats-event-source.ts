/**
 * EventSource on NATS JetStream: a durable pull consumer (explicit acks, `max_ack_pending` bounding what all
 * instances sharing the durable hold unacked, unlimited deliveries so a store outage never drops an event), fetched
 * in batches sized by the consumer loop's free slots. Terminated messages are first republished with their reason to
 * the dead-letter subject (JetStream publish, so it is stored by the stream that captures that subject) and only then
 * `term`ed: a dead letter that cannot be written leaves the message pending.
 *
 * With `createStream` the stream (and a dead-letter stream) are created when missing, for development; production
 * streams are usually owned by the platform team and only the durable consumer is ours (created or updated here).
 */
import { readFileSync } from 'node:fs';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiError,
  StorageType,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import {
  connect,
  credsAuthenticator,
  headers as natsHeaders,
  nanos,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { AppError, unavailable } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { EventSource, SourceMessage } from '../domain/event-source.js';
import { formatOf } from './event-payload.js';

export interface NatsSourceOptions {
  /** nats://host:port (several, comma-separated, for a cluster). */
  url: string;
  stream: string;
  /** Subject filter of the durable consumer (may contain wildcards). */
  subject: string;
  consumer: string;
  deadLetterSubject: string;
  createStream: boolean;
  maxAckPending: number;
  ackWaitMs: number;
  user?: string;
  password?: string;
  token?: string;
  credsFile?: string;
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  logger: Logger;
}

/** Headers set on a dead letter (the payload is the original one). */
export const DEAD_LETTER_HEADERS = {
  reason: 'Automr-Dead-Letter-Reason',
  subject: 'Automr-Original-Subject',
  sequence: 'Automr-Original-Sequence',
} as const;

const isNotFound = (error: unknown) =>
  error instanceof JetStreamApiError && (error.code === 10059 || error.code === 10014);

export class NatsEventSource implements EventSource {
  readonly kind = 'nats';
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private consumer: Consumer | undefined;
  private termWithReason = false;

  constructor(private readonly o: NatsSourceOptions) {}

  private connectionOptions(): NodeConnectionOptions {
    const o = this.o;
    const opts: NodeConnectionOptions = {
      servers: o.url.split(',').map((s) => s.trim()),
      name: `automr-consumer-${o.consumer}`,
      // Keep reconnecting: the loop reports the bus as down meanwhile and resumes when it is back.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: 2_000,
    };
    if (o.user !== undefined && o.user !== '') {
      opts.user = o.user;
      opts.pass = o.password ?? '';
    }
    if (o.token !== undefined && o.token !== '') opts.token = o.token;
    if (o.credsFile !== undefined && o.credsFile !== '') {
      opts.authenticator = credsAuthenticator(readFileSync(o.credsFile));
    }
    if (o.tlsCaFile || o.tlsCertFile || o.tlsKeyFile) {
      opts.tls = {};
      if (o.tlsCaFile) opts.tls.caFile = o.tlsCaFile;
      if (o.tlsCertFile) opts.tls.certFile = o.tlsCertFile;
      if (o.tlsKeyFile) opts.tls.keyFile = o.tlsKeyFile;
    }
    return opts;
  }

  async start(): Promise<void> {
    const o = this.o;
    await this.close(); // a previous attempt may have connected and failed later
    try {
      this.nc = await connect(this.connectionOptions());
    } catch (error) {
      throw unavailable(`cannot connect to NATS (${(error as Error).message})`, error);
    }
    this.nc.closed().then(
      (error) => {
        if (error) o.logger.warn({ err: error.message }, 'nats connection closed');
      },
      () => undefined,
    );
    this.jsm = await jetstreamManager(this.nc);
    this.js = jetstream(this.nc);
    if (o.createStream) {
      await this.ensureStream(o.stream, o.subject);
      await this.ensureStream(`${o.stream}_DEAD_LETTER`, o.deadLetterSubject);
    }
    const config = {
      durable_name: o.consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: o.subject,
      max_ack_pending: o.maxAckPending,
      ack_wait: nanos(o.ackWaitMs),
      max_deliver: -1,
    };
    try {
      await this.jsm.consumers.info(o.stream, o.consumer);
      await this.jsm.consumers.update(o.stream, o.consumer, {
        max_ack_pending: config.max_ack_pending,
        ack_wait: config.ack_wait,
        max_deliver: -1,
        filter_subject: o.subject,
      });
    } catch (error) {
      if (!isNotFound(error)) throw error;
      try {
        await this.jsm.consumers.add(o.stream, config);
      } catch (addError) {
        if (isNotFound(addError)) {
          throw new AppError(
            'FAILED_PRECONDITION',
            `NATS stream ${o.stream} does not exist (create it, or set AUTOMR_NATS_CREATE_STREAM=true)`,
          );
        }
        throw addError;
      }
    }
    this.consumer = await this.js.consumers.get(o.stream, o.consumer);
    const [major = 0, minor = 0] = (this.nc.info?.version ?? '0.0').split('.').map(Number);
    this.termWithReason = major > 2 || (major === 2 && minor >= 11);
  }

  private async ensureStream(name: string, subject: string): Promise<void> {
    const jsm = this.jsm as JetStreamManager;
    try {
      await jsm.streams.info(name);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      await jsm.streams.add({ name, subjects: [subject], storage: StorageType.File });
    }
  }

  async fetch(
    max: number,
    waitMs: number,
    deliver: (message: SourceMessage) => void,
    signal?: AbortSignal,
  ): Promise<number> {
    const consumer = this.consumer;
    if (consumer === undefined || this.nc === undefined || this.nc.isClosed()) {
      throw unavailable('NATS connection is closed');
    }
    let batch;
    try {
      batch = await consumer.fetch({ max_messages: max, expires: Math.max(1_000, waitMs) });
    } catch (error) {
      throw unavailable(`NATS fetch failed (${(error as Error).message})`, error);
    }
    const stop = () => void batch.close();
    signal?.addEventListener('abort', stop, { once: true });
    // A pull that the server never answers (connection lost mid-request) must not hang the loop.
    const guard = setTimeout(stop, Math.max(1_000, waitMs) + 5_000);
    let delivered = 0;
    try {
      for await (const m of batch) {
        delivered++;
        deliver(this.wrap(m));
        if (delivered >= max) break;
      }
    } catch (error) {
      if (delivered === 0) throw unavailable(`NATS fetch failed (${(error as Error).message})`, error);
    } finally {
      clearTimeout(guard);
      signal?.removeEventListener('abort', stop);
    }
    return delivered;
  }

  private wrap(m: JsMsg): SourceMessage {
    const js = this.js as JetStreamClient;
    const dl = this.o.deadLetterSubject;
    return {
      id: `${m.subject}#${m.seq}`,
      payload: m.data,
      format: formatOf(m.headers?.get('Content-Type') || undefined),
      redelivered: m.redelivered,
      deliveries: m.info.deliveryCount,
      ack: async () => {
        // Confirmed ack: if it is lost the event comes again and is a duplicate, but confirming keeps redeliveries rare.
        await m.ackAck();
      },
      nak: (delayMs) => Promise.resolve(m.nak(delayMs)),
      terminate: async (reason) => {
        const h = natsHeaders();
        for (const [k, v] of m.headers ?? []) for (const value of v) h.append(k, value);
        h.set(DEAD_LETTER_HEADERS.reason, reason.replace(/[\r\n]/g, ' '));
        h.set(DEAD_LETTER_HEADERS.subject, m.subject);
        h.set(DEAD_LETTER_HEADERS.sequence, String(m.seq));
        await js.publish(dl, m.data, { headers: h, msgID: `dl-${this.o.stream}-${m.seq}` });
        // A reason on term is understood from nats-server 2.11 on; older ones ignore such a term altogether.
        if (this.termWithReason) m.term(reason);
        else m.term();
      },
    };
  }

  async pending(): Promise<number> {
    if (this.jsm === undefined) return 0;
    const info = await this.jsm.consumers.info(this.o.stream, this.o.consumer);
    return info.num_pending + info.num_ack_pending;
  }

  async ready(): Promise<boolean> {
    const nc = this.nc;
    if (nc === undefined || nc.isClosed()) return false;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        nc.rtt().then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 1_000))),
      ]);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    const nc = this.nc;
    this.nc = undefined;
    if (nc !== undefined && !nc.isClosed()) await nc.drain().catch(() => nc.close());
  }
}
