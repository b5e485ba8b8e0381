import { loadConfig } from '../config.ts';
import { ShardRouter } from '../db/shard-router.ts';
import { createLogger } from '../infra/logger.ts';
import { createBlockingRedis, createFastFailRedis } from '../infra/redis.ts';
import { onShutdown } from '../infra/shutdown.ts';
import { createSettlementQueue } from '../jobs/catalog.ts';
import { faultPointFromConfig } from './fault-injection.ts';
import { runReconciler } from './reconciler.ts';
import { createSettlementWorker } from './worker.ts';

const config = loadConfig();
const logger = createLogger(config, 'worker');
const shards = ShardRouter.open(config, 'ledgerline-worker');
const connection = createBlockingRedis(config);
const publisher = createFastFailRedis(config);
const queue = createSettlementQueue(config, createBlockingRedis(config));
const faultPoint = faultPointFromConfig(config, logger);

const worker = createSettlementWorker(config, {
  shards,
  connection,
  publisher,
  logger,
  ...(faultPoint ? { faultPoint } : {}),
});
const stop = new AbortController();
const reconciling = runReconciler(
  shards,
  queue,
  { intervalMs: config.RECONCILE_INTERVAL_MS, pendingAfterMs: config.RECONCILE_PENDING_AFTER_MS },
  logger.child({ component: 'reconciler' }),
  stop.signal,
);
logger.info({ concurrency: config.WORKER_CONCURRENCY }, 'worker started');

onShutdown(logger, async () => {
  stop.abort();
  await worker.close(); // waits for in-flight jobs
  await reconciling;
  await queue.close();
  await Promise.all([connection.quit(), publisher.quit()]);
  await shards.close();
});
