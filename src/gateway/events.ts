/**
 * Wiring of the event-stream consumer (issue 13): builds the configured EventSource adapter and the consumer loop
 * on an IngestService, for the gateway process (AUTOMR_EVENTS) and the stand-alone `npm run consumer`.
 */
import { hostname } from 'node:os';
import type { Logger } from '../shared/logger.js';
import { createConsumerMetrics } from '../shared/consumer-metrics.js';
import { decodeIngestPayload } from './adapters/event-payload.js';
import { NatsEventSource } from './adapters/nats-event-source.js';
import { RedisStreamSource } from './adapters/redis-stream-source.js';
import type { GatewayConfig } from './config.js';
import { EventConsumer } from './domain/event-consumer.js';
import type { EventSource } from './domain/event-source.js';
import type { IngestService } from './domain/ingest.js';

/** The health service name under which the consumer reports (the gateway's own '' status does not depend on it). */
export const CONSUMER_HEALTH_SERVICE = 'automr.v1.EventConsumer';

const orUndefined = (v: string) => (v === '' ? undefined : v);

export function createEventSource(config: GatewayConfig, logger: Logger): EventSource | undefined {
  if (config.events === 'nats') {
    return new NatsEventSource({
      url: config.natsUrl,
      stream: config.natsStream,
      subject: config.natsSubject,
      consumer: config.natsConsumer,
      deadLetterSubject: config.natsDeadLetterSubject,
      createStream: config.natsCreateStream,
      maxAckPending: config.natsMaxAckPending,
      ackWaitMs: config.natsAckWaitMs,
      user: orUndefined(config.natsUser),
      password: orUndefined(config.natsPassword),
      token: orUndefined(config.natsToken),
      credsFile: orUndefined(config.natsCredsFile),
      tlsCaFile: orUndefined(config.natsTlsCaFile),
      tlsCertFile: orUndefined(config.natsTlsCertFile),
      tlsKeyFile: orUndefined(config.natsTlsKeyFile),
      logger,
    });
  }
  if (config.events === 'redis-streams') {
    return new RedisStreamSource({
      url: config.eventsRedisUrl,
      stream: config.eventsStream,
      group: config.eventsGroup,
      consumer: config.eventsConsumerName === '' ? hostname() : config.eventsConsumerName,
      deadLetterStream: config.eventsDeadLetterStream,
      claimIdleMs: config.eventsClaimIdleMs,
      password: orUndefined(config.eventsRedisPassword),
      tlsCaFile: orUndefined(config.eventsRedisTlsCaFile),
      logger,
    });
  }
  return undefined;
}

/** Starts the consumer loop when AUTOMR_EVENTS names a bus; undefined for `none`. */
export function startEventConsumer(
  config: GatewayConfig,
  ingest: Pick<IngestService, 'ingest'>,
  logger: Logger,
  source: EventSource | undefined = createEventSource(config, logger),
): EventConsumer | undefined {
  if (source === undefined) return undefined;
  const consumer = new EventConsumer({
    source,
    ingest,
    decode: decodeIngestPayload,
    defaultFormat: config.eventsFormat,
    maxInFlight: config.eventsMaxInFlight,
    retryMaxMs: config.eventsRetryMaxMs,
    logger: logger.child({ component: 'event-consumer' }),
    metrics: createConsumerMetrics(),
  });
  consumer.start();
  return consumer;
}
