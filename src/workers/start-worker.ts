import type { Config } from '../config.ts';
import { ShardRouter } from '../db/shard-router.ts';
import type { Logger } from '../infra/logger.ts';
import { customerBalanceTotals } from '../db/repositories/ledger-totals.ts';
import { observeBalances, observePool, observeQueue } from '../infra/metrics.ts';
import { startMetricsServer } from '../infra/metrics-server.ts';
import { createBlockingRedis, createFastFailRedis } from '../infra/redis.ts';
import { createSettlementQueue } from '../jobs/catalog.ts';
import { faultPointFromConfig } from './fault-injection.ts';
import { createFundGateway } from './gateway-breaker.ts';
import { runReconciler } from './reconciler.ts';
import { createSettlementWorker } from './worker.ts';

/** Wires a worker process: the BullMQ worker and the reconciler. `close()` finishes in-flight jobs. */
export function startWorker(
  config: Config,
  logger: Logger,
  options: { metricsServer?: boolean } = {},
): { close: () => Promise<void> } {
  const shards = ShardRouter.open(config, 'ledgerline-worker');
  const connection = createBlockingRedis(config);
  const queueConnection = createBlockingRedis(config);
  // Cache invalidations and settlement notices of concurrent jobs go out in shared round trips.
  const publisher = createFastFailRedis(config, { enableAutoPipelining: true });
  for (const c of [connection, queueConnection, publisher]) c.on('error', () => {}); // BullMQ reports
  const queue = createSettlementQueue(config, queueConnection);
  const faultPoint = faultPointFromConfig(config, logger);
  const gateway = createFundGateway(config, logger.child({ component: 'gateway' }), publisher);
  const worker = createSettlementWorker(config, {
    shards,
    connection,
    queue,
    publisher,
    logger,
    gateway,
    ...(faultPoint ? { faultPoint } : {}),
  });
  const stop = new AbortController();
  const mapping = shards.keepFresh(config.SHARD_MAP_REFRESH_MS, logger, stop.signal);
  const reconciling = runReconciler(
    shards,
    queue,
    { intervalMs: config.RECONCILE_INTERVAL_MS, pendingAfterMs: config.RECONCILE_PENDING_AFTER_MS },
    logger.child({ component: 'reconciler' }),
    stop.signal,
  );
  const unobserve = [
    observeQueue(queue),
    observeBalances({
      totals: async () => (await Promise.all(shards.databases.map((d) => customerBalanceTotals(d.db)))).flat(),
    }),
    ...shards.databases.map((d, i) => observePool(d.pool, { pool: 'worker', database: String(i) }, config.PG_POOL_MAX)),
  ];
  const metrics = options.metricsServer === false ? undefined : startMetricsServer(config.METRICS_PORT, logger);
  logger.info({ concurrency: config.WORKER_CONCURRENCY }, 'worker started');
  return {
    async close() {
      stop.abort();
      await worker.close(); // waits for in-flight jobs
      await reconciling;
      await mapping;
      await queue.close();
      await gateway.close();
      await Promise.all([connection.quit(), queueConnection.quit(), publisher.quit()]).catch(() => {});
      for (const stop of unobserve) stop();
      await (await metrics)?.close();
      await shards.close();
    },
  };
}
