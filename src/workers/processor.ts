import type { Job, Processor } from 'bullmq';
import type { Redis } from 'ioredis';
import { operationSettledChannel } from '../api/operation-waiter.ts';
import { invalidateWallets } from '../api/wallet-cache.ts';
import type { ShardRouter } from '../db/shard-router.ts';
import type { Logger } from '../infra/logger.ts';
import { JOB_NAMES, jobPayloads, type JobName } from '../jobs/catalog.ts';
import { settleOperation } from './settle-operation.ts';

export interface WorkerDeps {
  shards: ShardRouter;
  /** Publishes settlement notices for long-polling API requests. */
  publisher: Redis;
  redisPrefix: string;
  logger: Logger;
  /** Test builds only: called between steps to inject crashes. */
  faultPoint?: (point: string, operationId: string) => Promise<void>;
}

type Handler = (job: Job, deps: WorkerDeps) => Promise<unknown>;

async function settle(job: Job, deps: WorkerDeps): Promise<unknown> {
  const { operationId } = jobPayloads[job.name as JobName].parse(job.data);
  const log = deps.logger.child({ operationId, jobId: job.id, attempt: job.attemptsMade + 1 });
  await deps.faultPoint?.('before-settle', operationId);
  const result = await settleOperation(deps.shards.forId(operationId).db, operationId);
  await deps.faultPoint?.('after-settle', operationId);
  if (result.outcome === 'missing') {
    // Should not happen: the API commits the operation before enqueuing.
    log.error('operation not found; dropping job');
    return result;
  }
  if (result.outcome === 'settled') {
    log.info({ status: result.status, failureCode: result.failureCode }, 'operation settled');
    // After the commit, before the notice: a client woken by the notice reads the new balance.
    await invalidateWallets(deps.publisher, deps.redisPrefix, result.walletIds).catch((err: unknown) =>
      log.warn({ err }, 'could not invalidate wallet cache; entries expire within WALLET_CACHE_TTL_SECONDS'),
    );
  } else {
    log.info({ status: result.status }, 'operation already settled; redelivery ignored');
  }
  await deps.publisher
    .publish(operationSettledChannel(deps.redisPrefix), operationId)
    .catch((err: unknown) => log.warn({ err }, 'could not announce settlement'));
  return result;
}

/** One processor per job name in the catalog. */
export const handlers: Record<JobName, Handler> = {
  'settle-fund': settle,
  'settle-transfer': settle,
};

/** The worker's processor; refuses to build unless every catalog job has a handler. */
export function createProcessor(deps: WorkerDeps): Processor {
  const missing = JOB_NAMES.filter((name) => typeof handlers[name] !== 'function');
  if (missing.length > 0) throw new Error(`no processor for job(s): ${missing.join(', ')}`);
  return async (job) => {
    const handler = handlers[job.name as JobName];
    if (!handler) throw new Error(`unknown job name ${job.name}`);
    return handler(job, deps);
  };
}
