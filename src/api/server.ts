import { createServer } from 'node:http';
import { loadConfig } from '../config.ts';
import { ShardRouter } from '../db/shard-router.ts';
import { createKafka, kafkaProbe } from '../events/kafka.ts';
import { createLogger } from '../infra/logger.ts';
import { createFastFailRedis } from '../infra/redis.ts';
import { onShutdown } from '../infra/shutdown.ts';
import { createSettlementQueue } from '../jobs/catalog.ts';
import { createApp } from './app.ts';
import { IdempotencyStore } from './idempotency.ts';
import { OperationWaiter, operationSettledChannel } from './operation-waiter.ts';

const config = loadConfig();
const logger = createLogger(config, 'api');
if (!config.ADMIN_TOKEN) logger.warn('ADMIN_TOKEN is not set: /admin routes answer 401');

const shards = ShardRouter.open(config, 'ledgerline-api');
const redis = createFastFailRedis(config);
const queue = createSettlementQueue(config, createFastFailRedis(config));
const waiter = new OperationWaiter(
  createFastFailRedis(config, { enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined }),
  operationSettledChannel(config.REDIS_PREFIX),
  logger,
);
const kafka = kafkaProbe(createKafka(config, logger));
for (const conn of [redis]) conn.on('error', (err) => logger.warn({ err: err.message }, 'redis error'));

const app = createApp({
  config,
  shards,
  redis,
  queue,
  waiter,
  logger,
  idempotency: new IdempotencyStore(redis, config.REDIS_PREFIX, config.IDEMPOTENCY_TTL_SECONDS, logger),
  kafkaReady: kafka.check,
});

const server = createServer(app);
// Slow or stuck clients cannot hold sockets forever; long polls last at most 30 s.
server.requestTimeout = 40_000;
server.headersTimeout = 10_000;
server.keepAliveTimeout = 5_000;
server.listen(config.PORT, () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  logger.info({ port }, 'api listening');
});

onShutdown(logger, async () => {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
  await waiter.close();
  await queue.close();
  await redis.quit().catch(() => {});
  await kafka.close();
  await shards.close();
});
