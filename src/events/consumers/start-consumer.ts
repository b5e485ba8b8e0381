import type { Config } from '../../config.ts';
import { ShardRouter } from '../../db/shard-router.ts';
import { startMetricsServer } from '../../infra/metrics-server.ts';
import type { Logger } from '../../infra/logger.ts';
import { createBlockingRedis } from '../../infra/redis.ts';
import { createWebhookWorker, runDeliveryDispatcher } from '../webhooks/deliver.ts';
import { createWebhookQueue } from '../webhooks/webhook-queue.ts';
import { analyticsConsumer } from './analytics.ts';
import { auditConsumer } from './audit.ts';
import { startConsumer, type ConsumerSpec } from './consumer.ts';
import { fraudConsumer } from './fraud.ts';
import { webhooksConsumer } from './webhooks.ts';

export const CONSUMER_NAMES = ['audit', 'analytics', 'fraud', 'webhooks'] as const;
export type ConsumerName = (typeof CONSUMER_NAMES)[number];

function specFor(name: ConsumerName, config: Config, shards: ShardRouter, logger: Logger): ConsumerSpec {
  switch (name) {
    case 'audit':
      return auditConsumer();
    case 'analytics':
      return analyticsConsumer();
    case 'fraud':
      return fraudConsumer(config, shards, logger);
    case 'webhooks':
      return webhooksConsumer(shards);
  }
}

/**
 * Starts one consumer (its Kafka group; its own tables in the control database, wallets read
 * and frozen in their shard databases); the webhooks consumer also
 * runs the delivery dispatcher and the BullMQ delivery worker. `close()` stops consuming after
 * the message in hand, lets in-flight deliveries finish, and closes the pools.
 */
export async function startConsumerProcess(
  name: ConsumerName,
  config: Config,
  logger: Logger,
  options: { metricsServer?: boolean; onFatal?: (err: Error) => void } = {},
): Promise<{ close: () => Promise<void> }> {
  const log = logger.child({ consumer: name });
  const shards = ShardRouter.open(config, `ledgerline-consumer-${name}`);
  const closers: (() => Promise<void>)[] = [];
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  let running: Awaited<ReturnType<typeof startConsumer>>;
  try {
    // Wallets are read (webhook owners) and frozen (fraud) in their shard's database: with the
    // default rule instead of the map, a moved shard's wallets would be looked for where they were.
    await shards.refresh().catch((err: unknown) => log.warn({ err }, 'shard map not loaded yet'));
    const stopMap = new AbortController();
    const mapping = shards.keepFresh(config.SHARD_MAP_REFRESH_MS, log, stopMap.signal);
    closers.push(async () => {
      stopMap.abort();
      await mapping;
    });
    metrics = options.metricsServer === false ? undefined : await startMetricsServer(config.METRICS_PORT, log);
    if (name === 'webhooks') {
      const connection = createBlockingRedis(config);
      connection.on('error', () => {});
      const workerConnection = connection.duplicate();
      const queue = createWebhookQueue(config, connection);
      const worker = createWebhookWorker(config, shards.control, workerConnection, log);
      const stop = new AbortController();
      const dispatcher = runDeliveryDispatcher(shards.control, queue, 250, log, stop.signal);
      closers.push(async () => {
        stop.abort();
        await dispatcher;
        await worker.close();
        await queue.close();
        // Clients handed in are not BullMQ's to close: a restarted consumer must not leak them.
        workerConnection.disconnect();
        connection.disconnect();
      });
    }
    running = await startConsumer(config, log, shards.control, specFor(name, config, shards, log), options.onFatal);
  } catch (err) {
    // Whatever started is stopped (the map's refresh loop, pools, metrics server), not leaked.
    for (const close of closers) await close().catch(() => {});
    await metrics?.close();
    await shards.close();
    throw err;
  }
  return {
    async close() {
      await running.close();
      for (const close of closers) await close();
      await metrics?.close();
      await shards.close();
    },
  };
}
