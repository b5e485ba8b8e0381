import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config.ts';
import { ShardRouter } from '../db/shard-router.ts';
import { createKafka, kafkaProbe } from '../events/kafka.ts';
import type { Logger } from '../infra/logger.ts';
import { createExpressServer } from '../infra/express-server.ts';
import { concurrentConnections, observePool } from '../infra/metrics.ts';
import { createFastFailRedis } from '../infra/redis.ts';
import { createAcceptBatcher } from './accept-batcher.ts';
import { createSettlementQueue } from '../jobs/catalog.ts';
import { createApp } from './app.ts';
import { OperationWaiter, operationSettledChannel } from './operation-waiter.ts';
import { RateLimiter } from './rate-limit.ts';
import { WalletCache } from './wallet-cache.ts';

export interface RunningApi {
  server: Server;
  port: number;
  /** Stops accepting, lets in-flight requests finish, closes every connection. */
  close: () => Promise<void>;
}

/** Wires the API process (pools, Redis, queue, Kafka probe) and listens on `config.PORT`. */
export async function startApi(config: Config, logger: Logger): Promise<RunningApi> {
  const shards = ShardRouter.open(config, 'ledgerline-api');
  await shards.refresh().catch((err: unknown) => logger.warn({ err }, 'shard map not loaded yet'));
  const stopMap = new AbortController();
  const mapping = shards.keepFresh(config.SHARD_MAP_REFRESH_MS, logger, stopMap.signal);
  // Concurrent requests' Redis commands (rate limits, wallet cache) share round trips.
  const redis = createFastFailRedis(config, { enableAutoPipelining: true });
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis error'));
  const queueConnection = createFastFailRedis(config, { enableAutoPipelining: true });
  queueConnection.on('error', () => {}); // reported through `redis` above
  const queue = createSettlementQueue(config, queueConnection);
  const subscriber = createFastFailRedis(config, {
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    commandTimeout: undefined,
  });
  subscriber.on('error', () => {});
  const waiter = new OperationWaiter(subscriber, operationSettledChannel(config.REDIS_PREFIX), logger);
  const kafka = kafkaProbe(createKafka(config, logger));
  await queue.waitUntilReady().catch((err: unknown) => logger.warn({ err }, 'redis not ready; accepting anyway'));

  const rateLimiter = new RateLimiter(redis, config.REDIS_PREFIX, config.RATE_LIMIT_WINDOW_SECONDS);
  const accepting = createAcceptBatcher(shards, queue, rateLimiter, logger, config);
  const app = createApp({
    config,
    shards,
    redis,
    queue,
    waiter,
    logger,
    accept: accepting.accept,
    kafkaReady: kafka.check,
    rateLimiter,
    walletCache: new WalletCache(redis, config.REDIS_PREFIX, config.WALLET_CACHE_TTL_SECONDS),
  });
  // Slow or stuck clients (slowloris) cannot hold sockets forever: headers must arrive within
  // HTTP_HEADERS_TIMEOUT_MS and the whole request within HTTP_REQUEST_TIMEOUT_MS (408 after),
  // checked every second. Long polls (≤ 30 s) are responses, not requests, so they are not cut.
  // Headers over node's 16 kB default answer 431 before any of our code runs.
  const server = createExpressServer(app, { connectionsCheckingInterval: 1000 });
  server.on('connection', (socket) => {
    concurrentConnections.inc();
    socket.once('close', () => concurrentConnections.dec());
  });
  const unobserve = shards.databases.map((d, i) => observePool(d.pool, { pool: 'api', database: String(i) }, config.PG_POOL_MAX));
  server.requestTimeout = config.HTTP_REQUEST_TIMEOUT_MS;
  server.headersTimeout = Math.min(config.HTTP_HEADERS_TIMEOUT_MS, config.HTTP_REQUEST_TIMEOUT_MS);
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(config.PORT, '0.0.0.0', resolve));
  const port = (server.address() as AddressInfo).port;
  logger.info({ port }, 'api listening');

  return {
    server,
    port,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      // A client that hung up mid-request leaves its accept running: let it commit and enqueue.
      await accepting.drain();
      stopMap.abort();
      await mapping;
      await waiter.close();
      await queue.close();
      await Promise.all([redis.quit(), queueConnection.quit()]).catch(() => {});
      await kafka.close();
      for (const stop of unobserve) stop();
      await shards.close();
    },
  };
}
