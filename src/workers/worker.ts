import { Worker } from 'bullmq';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import type { ShardRouter } from '../db/shard-router.ts';
import type { Logger } from '../infra/logger.ts';
import { SETTLEMENT_QUEUE, settlementBackoffMs } from '../jobs/catalog.ts';
import { jobRun, jobsFailed, jobsStalled, jobWait } from '../infra/metrics.ts';
import { createGroupSettler } from './group-settler.ts';
import { createProcessor, type WorkerDeps } from './processor.ts';

/** A BullMQ worker settling operations; `close()` lets in-flight jobs finish. */
export function createSettlementWorker(
  config: Config,
  deps: {
    shards: ShardRouter;
    connection: Redis;
    queue: Queue;
    publisher: Redis;
    logger: Logger;
    gateway: WorkerDeps['gateway'];
    faultPoint?: WorkerDeps['faultPoint'];
  },
): Worker {
  const processorDeps: WorkerDeps = {
    shards: deps.shards,
    queue: deps.queue,
    publisher: deps.publisher,
    redisPrefix: config.REDIS_PREFIX,
    logger: deps.logger,
    gateway: deps.gateway,
    settle: createGroupSettler(deps.shards, config),
    ...(deps.faultPoint ? { faultPoint: deps.faultPoint } : {}),
  };
  const worker = new Worker(SETTLEMENT_QUEUE, createProcessor(processorDeps), {
    connection: deps.connection,
    prefix: config.REDIS_PREFIX,
    concurrency: config.WORKER_CONCURRENCY,
    lockDuration: config.WORKER_LOCK_DURATION_MS,
    stalledInterval: config.WORKER_STALLED_INTERVAL_MS,
    // A stalled job (its worker died) is run again; settlement is idempotent, so this is safe.
    maxStalledCount: 10,
    settings: { backoffStrategy: (attemptsMade: number) => settlementBackoffMs(attemptsMade) },
  });
  worker.on('active', (job) => {
    // Queue wait of the first attempt only: retries wait for their backoff by design.
    if (job.attemptsStarted <= 1 && job.processedOn) {
      const waitedMs = job.processedOn - job.timestamp - (job.opts.delay ?? 0);
      jobWait.observe({ queue: SETTLEMENT_QUEUE, name: job.name }, Math.max(0, waitedMs) / 1000);
    }
  });
  worker.on('completed', (job) => {
    if (job.processedOn && job.finishedOn) {
      jobRun.observe({ queue: SETTLEMENT_QUEUE, name: job.name, outcome: 'completed' }, (job.finishedOn - job.processedOn) / 1000);
    }
  });
  worker.on('stalled', () => jobsStalled.inc({ queue: SETTLEMENT_QUEUE }));
  worker.on('failed', (job, err) => {
    if (job) {
      const final = job.attemptsMade >= (job.opts.attempts ?? 1);
      jobsFailed.inc({ queue: SETTLEMENT_QUEUE, name: job.name, final: String(final) });
      if (job.processedOn) {
        jobRun.observe({ queue: SETTLEMENT_QUEUE, name: job.name, outcome: 'failed' }, ((job.finishedOn ?? Date.now()) - job.processedOn) / 1000);
      }
    }
    deps.logger.warn(
      { operationId: job?.data?.operationId, attempt: job?.attemptsMade, err: err.message },
      'settlement attempt failed',
    );
  });
  worker.on('error', (err) => deps.logger.warn({ err }, 'worker error'));
  return worker;
}
