import type { Consumer, KafkaMessage } from 'kafkajs';
import { Counter } from 'prom-client';
import type { Config } from '../../config.ts';
import type { Database, Db, Tx } from '../../db/client.ts';
import type { ShardRouter } from '../../db/shard-router.ts';
import { consumerProcessedEvents } from '../../db/consumer-schema.ts';
import type { Logger } from '../../infra/logger.ts';
import { instrumentConsumer } from '../../infra/metrics.ts';
import { createKafka } from '../kafka.ts';

/** One CloudEvent as read from Kafka (binary mode: attributes in `ce_*` headers). */
export interface ConsumedEvent {
  id: string;
  type: string;
  source: string;
  time: string;
  subject: string | null;
  key: string | null;
  data: Record<string, unknown>;
}

export interface ConsumerSpec {
  /** Consumer name: part of the group id and the dedupe store's key. */
  name: string;
  /**
   * Applies the event inside the transaction that also records it as processed: it runs at
   * most once per event id, whatever Kafka redelivers. Throwing rolls both back (retried).
   */
  apply: (tx: Tx, event: ConsumedEvent) => Promise<void>;
  /** Runs after the commit of a first application (side effects outside Postgres). */
  afterCommit?: (event: ConsumedEvent) => Promise<void>;
}

const consumed = new Counter({
  name: 'ledgerline_consumer_events_total',
  help: 'Events read by each consumer, by outcome (applied, duplicate, skipped: not a CloudEvent)',
  labelNames: ['consumer', 'outcome'] as const,
});

export function consumerGroupId(config: Pick<Config, 'CONSUMER_GROUP_PREFIX' | 'KAFKA_TOPIC'>, name: string): string {
  return `${config.CONSUMER_GROUP_PREFIX}.${config.KAFKA_TOPIC}.${name}`;
}

/** Reads the CloudEvents binary-mode attributes; undefined when the message is not one. */
export function parseEvent(message: KafkaMessage): ConsumedEvent | undefined {
  const header = (name: string) => {
    const v = message.headers?.[name];
    if (v === undefined) return undefined;
    return Array.isArray(v) ? String(v[0]) : String(v);
  };
  const id = header('ce_id');
  const type = header('ce_type');
  if (!id || !type || !message.value) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(message.value.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof data !== 'object' || data === null) return undefined;
  return {
    id,
    type,
    source: header('ce_source') ?? '',
    time: header('ce_time') ?? new Date().toISOString(),
    subject: header('ce_subject') ?? null,
    key: message.key ? message.key.toString('utf8') : null,
    data: data as Record<string, unknown>,
  };
}

/**
 * Applies one event exactly once for `consumer`: the dedupe row and the effect commit together.
 * Returns false when the event had been applied before.
 */
export async function applyOnce(database: Database, spec: ConsumerSpec, event: ConsumedEvent): Promise<boolean> {
  return database.db.transaction(async (tx) => {
    const inserted = await tx
      .insert(consumerProcessedEvents)
      .values({ consumer: spec.name, eventId: event.id })
      .onConflictDoNothing()
      .returning({ eventId: consumerProcessedEvents.eventId });
    if (inserted.length === 0) return false;
    await spec.apply(tx, event);
    return true;
  });
}

export interface RunningConsumer {
  consumer: Consumer;
  close: () => Promise<void>;
}

/**
 * Runs a consumer in its own group on KAFKA_TOPIC from the earliest offset. Offsets are
 * committed after the transaction, so a crash in between redelivers and dedupe absorbs it.
 * kafkajs restarts the consumer after failures (broker away, rebalance errors).
 */
export async function startConsumer(
  config: Config,
  logger: Logger,
  database: Database,
  spec: ConsumerSpec,
  /** Called when the consumer crashed and kafkajs will not restart it (a non-retriable error). */
  onFatal?: (err: Error) => void,
): Promise<RunningConsumer> {
  const log = logger; // already carries the consumer name (start-consumer.ts)
  const kafka = createKafka(config, log);
  const consumer = kafka.consumer({
    groupId: consumerGroupId(config, spec.name),
    allowAutoTopicCreation: true,
    sessionTimeout: config.CONSUMER_SESSION_TIMEOUT_MS,
    heartbeatInterval: Math.max(500, Math.floor(config.CONSUMER_SESSION_TIMEOUT_MS / 10)),
    rebalanceTimeout: config.CONSUMER_REBALANCE_TIMEOUT_MS,
    retry: { retries: 8, initialRetryTime: 300, maxRetryTime: 10_000, restartOnFailure: async () => true },
  });
  instrumentConsumer(consumer, consumerGroupId(config, spec.name)); // kafka_consumer_lag
  // kafkajs restarts a consumer only after retriable errors; after any other it stays stopped
  // while the process lives on, consuming nothing. Nothing is lost (offsets stay committed), but
  // the owner must restart it.
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (payload.restart) return;
    log.error({ err: payload.error }, 'consumer crashed and will not be restarted by kafkajs');
    onFatal?.(payload.error);
  });
  await consumer.connect();
  await consumer.subscribe({ topic: config.KAFKA_TOPIC, fromBeginning: true });
  await consumer.run({
    partitionsConsumedConcurrently: 4,
    eachMessage: async ({ message, partition }) => {
      const event = parseEvent(message);
      if (!event) {
        consumed.inc({ consumer: spec.name, outcome: 'skipped' });
        log.warn({ partition, offset: message.offset }, 'not a CloudEvent; skipped');
        return;
      }
      const applied = await applyOnce(database, spec, event);
      consumed.inc({ consumer: spec.name, outcome: applied ? 'applied' : 'duplicate' });
      if (applied && spec.afterCommit) await spec.afterCommit(event);
    },
  });
  log.info({ groupId: consumerGroupId(config, spec.name), topic: config.KAFKA_TOPIC }, 'consumer running');
  return {
    consumer,
    async close() {
      await consumer.disconnect(); // finishes the message in hand, commits, leaves the group
    },
  };
}

/**
 * The database holding `id`, for reads and writes made inside a consumer's transaction: the
 * transaction itself when `id` lives in the control database. Taking a second connection from
 * the pool the transaction already holds one of deadlocks once every connection of that pool
 * is in such a transaction (partitions consumed concurrently ≥ PG_POOL_MAX).
 */
export function databaseFor(tx: Tx, shards: ShardRouter, id: string): Tx | Db {
  const home = shards.forId(id);
  return home === shards.control ? tx : home.db;
}
