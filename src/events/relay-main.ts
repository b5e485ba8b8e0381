import { loadConfig } from '../config.ts';
import { ShardRouter } from '../db/shard-router.ts';
import { createLogger } from '../infra/logger.ts';
import { onShutdown } from '../infra/shutdown.ts';
import { createKafka, createProducer } from './kafka.ts';
import { runRelay } from './relay.ts';

const config = loadConfig();
const logger = createLogger(config, 'relay');
const shards = ShardRouter.open(config, 'ledgerline-relay');
const producer = createProducer(createKafka(config, logger));
const stop = new AbortController();

await producer.connect().catch((err: unknown) => logger.warn({ err }, 'broker not reachable yet; will retry'));
const running = Promise.all(
  shards.databases.map((database, i) =>
    runRelay(
      database,
      producer,
      {
        topic: config.KAFKA_TOPIC,
        source: config.EVENT_SOURCE,
        batchSize: config.RELAY_BATCH_SIZE,
        pollIntervalMs: config.RELAY_POLL_INTERVAL_MS,
      },
      logger.child({ database: i }),
      stop.signal,
    ),
  ),
);
logger.info({ topic: config.KAFKA_TOPIC, brokers: config.KAFKA_BROKERS }, 'relay started');

onShutdown(logger, async () => {
  stop.abort();
  await running; // the batch in hand is published and marked before the loop ends
  await producer.disconnect();
  await shards.close();
});
