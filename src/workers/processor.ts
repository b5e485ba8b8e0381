import type { Job, Processor } from 'bullmq';
import type { Redis } from 'ioredis';
import { operationSettledChannel } from '../api/operation-waiter.ts';
import type { ShardRouter } from '../db/shard-router.ts';
import type { Logger } from '../infra/logger.ts';
import { JOB_NAMES, jobPayloads, type JobName } from '../jobs/catalog.ts';
import { chargeFund, reverseUncreditedCharge } from './charge-fund.ts';
import type { FundGateway } from './gateway-breaker.ts';
import { settleOperation, type SettleResult } from './settle-operation.ts';

export interface WorkerDeps {
  shards: ShardRouter;
  /** Publishes settlement notices for long-polling API requests. */
  publisher: Redis;
  redisPrefix: string;
  logger: Logger;
  /** Test builds only: called between steps to inject crashes. */
  faultPoint?: (point: string, operationId: string) => Promise<void>;
  /** The payment gateway behind its circuit breaker (fund operations charge through it). */
  gateway: FundGateway;
}

type Handler = (job: Job, deps: WorkerDeps) => Promise<unknown>;

async function settle(job: Job, deps: WorkerDeps): Promise<SettleResult> {
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
  } else {
    log.info({ status: result.status }, 'operation already settled; redelivery ignored');
  }
  await announce(deps, operationId, log);
  return result;
}

async function announce(deps: WorkerDeps, operationId: string, log: Logger): Promise<void> {
  await deps.publisher
    .publish(operationSettledChannel(deps.redisPrefix), operationId)
    .catch((err: unknown) => log.warn({ err }, 'could not announce settlement'));
}

/** A fund: charge through the gateway first (src/workers/charge-fund.ts), then credit as any settlement. */
async function settleFund(job: Job, deps: WorkerDeps): Promise<unknown> {
  const step = await chargeFund(job, deps);
  const { operationId } = jobPayloads['settle-fund'].parse(job.data);
  const log = deps.logger.child({ operationId, jobId: job.id });
  if (step.outcome === 'failed') {
    log.info({ failureCode: step.failureCode }, 'fund failed at the gateway');
    await announce(deps, operationId, log);
    return step;
  }
  const result = await settle(job, deps);
  // Also on a redelivery: a crash may have come between the refused credit and the reversal.
  if (result.outcome !== 'missing' && result.status === 'failed') {
    await reverseUncreditedCharge(deps.shards.forId(operationId).db, deps.gateway, operationId, log);
  }
  return result;
}

/** One processor per job name in the catalog. */
export const handlers: Record<JobName, Handler> = {
  'settle-fund': settleFund,
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
