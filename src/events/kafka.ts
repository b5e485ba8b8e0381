import { Kafka, logLevel, Partitioners, type Producer } from 'kafkajs';
import type { Config } from '../config.ts';
import type { Logger } from '../infra/logger.ts';
import { consumerOffsetResets, OFFSET_RESET_MESSAGE } from '../infra/metrics.ts';
import './kafkajs-idle-timer.ts';
import './kafkajs-pooled-encoder.ts';

const LEVELS: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

/**
 * A kafkajs client that logs through pino. A consumer group reset because its position left the
 * broker's log (kafkajs logs it, then skips to the earliest offset) is also counted in
 * `kafka_consumer_offset_resets_total`, which the ConsumerSkippedEvents alert watches.
 */
export function createKafka(config: Pick<Config, 'KAFKA_BROKERS' | 'KAFKA_CLIENT_ID'> & Partial<Pick<Config, 'KAFKA_REQUEST_TIMEOUT_MS'>>, logger: Logger): Kafka {
  const log = logger.child({ component: 'kafka' });
  return new Kafka({
    clientId: config.KAFKA_CLIENT_ID,
    brokers: [...config.KAFKA_BROKERS],
    connectionTimeout: 3000,
    requestTimeout: config.KAFKA_REQUEST_TIMEOUT_MS ?? 10_000,
    retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 5000 },
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }) => {
        const { message, ...rest } = entry;
        log[LEVELS[level] ?? 'info'](rest, message);
        if (message === OFFSET_RESET_MESSAGE && typeof rest.groupId === 'string') consumerOffsetResets.inc({ group: rest.groupId });
      },
  });
}

/**
 * The relay's producer: acks from all in-sync replicas. Not idempotent: the local mock broker
 * cannot do it, and consumers deduplicate by event id anyway.
 */
export function createProducer(kafka: Kafka): Producer {
  return kafka.producer({
    allowAutoTopicCreation: true,
    idempotent: false,
    maxInFlightRequests: 1, // keeps per-partition order across retries
    createPartitioner: Partitioners.DefaultPartitioner,
  });
}

/** Reachability probe for /readyz: connects an admin client once and asks for cluster metadata. */
export function kafkaProbe(kafka: Kafka): { check: () => Promise<boolean>; close: () => Promise<void> } {
  const admin = kafka.admin({ retry: { retries: 0 } });
  let connected: Promise<void> | undefined;
  return {
    async check() {
      try {
        connected ??= admin.connect();
        await connected;
        const cluster = await admin.describeCluster();
        return cluster.brokers.length > 0;
      } catch {
        connected = undefined;
        return false;
      }
    },
    async close() {
      await admin.disconnect().catch(() => {});
    },
  };
}
