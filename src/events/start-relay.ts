import type { Config } from '../config.ts';
import { ShardRouter } from '../db/shard-router.ts';
import { outboxLag } from '../db/repositories/ledger-totals.ts';
import type { Logger } from '../infra/logger.ts';
import { observeOutbox, observePool } from '../infra/metrics.ts';
import { startMetricsServer } from '../infra/metrics-server.ts';
import { createKafka, createProducer } from './kafka.ts';
import { runRelay } from './relay.ts';

/** Runs one relay loop per shard database; `close()` finishes the batch in hand. */
export function startRelay(
  config: Config,
  logger: Logger,
  options: { metricsServer?: boolean } = {},
): { close: () => Promise<void> } {
  const shards = ShardRouter.open(config, 'ledgerline-relay');
  const unobserve = shards.databases.flatMap((d, i) => [
    observeOutbox({ database: String(i), lag: () => outboxLag(d.db) }),
    observePool(d.pool, { pool: 'relay', database: String(i) }, config.PG_POOL_MAX),
  ]);
  const metrics = options.metricsServer === false ? undefined : startMetricsServer(config.METRICS_PORT, logger);
  const producer = createProducer(createKafka(config, logger));
  const stop = new AbortController();
  const running = producer
    .connect()
    .catch((err: unknown) => logger.warn({ err }, 'broker not reachable yet; will retry'))
    .then(() =>
      Promise.all(
        shards.databases.map((database, i) =>
          runRelay(
            database,
            producer,
            {
              topic: config.KAFKA_TOPIC,
              source: config.EVENT_SOURCE,
              batchSize: config.RELAY_BATCH_SIZE,
              pollIntervalMs: config.RELAY_POLL_INTERVAL_MS,
              retentionMs: config.OUTBOX_RETENTION_HOURS > 0 ? Math.max(1, Math.round(config.OUTBOX_RETENTION_HOURS * 3_600_000)) : 0,
              database: String(i),
            },
            logger.child({ database: i }),
            stop.signal,
          ),
        ),
      ),
    );
  logger.info({ topic: config.KAFKA_TOPIC, brokers: config.KAFKA_BROKERS }, 'relay started');
  return {
    async close() {
      stop.abort();
      await running;
      await producer.disconnect();
      for (const stop of unobserve) stop();
      await (await metrics)?.close();
      await shards.close();
    },
  };
}
