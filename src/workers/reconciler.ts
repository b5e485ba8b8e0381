import type { Queue } from 'bullmq';
import { findStaleOpenOperations } from '../db/repositories/operations.ts';
import type { ShardRouter } from '../db/shard-router.ts';
import type { Logger } from '../infra/logger.ts';
import { reconcilerRepairs } from '../infra/metrics.ts';
import { sleep } from '../infra/sleep.ts';
import { enqueueSettlement } from '../jobs/catalog.ts';

const PAGE = 500;
/** Upper bound of operations inspected per database per pass. */
const MAX_PER_PASS = 20_000;

/**
 * Finds operations open longer than `pendingAfterMs` and makes sure each has a live job:
 * re-adds it when Redis lost it (restart, FLUSHALL), retries it when its job failed for good.
 * Returns how many jobs it added or retried.
 */
export async function reconcileOnce(
  shards: ShardRouter,
  queue: Queue,
  pendingAfterMs: number,
  logger: Logger,
): Promise<number> {
  const olderThan = new Date(Date.now() - pendingAfterMs);
  let repaired = 0;
  for (const database of shards.databases) {
    let after: { createdAt: Date; id: string } | undefined;
    for (let seen = 0; seen < MAX_PER_PASS; ) {
      const open = await findStaleOpenOperations(database.db, olderThan, PAGE, after);
      if (open.length === 0) break;
      seen += open.length;
      after = open.at(-1);
      for (const op of open) {
        if (await ensureLiveJob(queue, op, logger)) {
          repaired++;
          reconcilerRepairs.inc();
        }
      }
    }
  }
  return repaired;
}

/** Makes sure an open operation has a job that will run; true if it had to add or retry one. */
async function ensureLiveJob(queue: Queue, op: { id: string; type: 'fund' | 'transfer' }, logger: Logger): Promise<boolean> {
  const job = await queue.getJob(op.id);
  if (!job) {
    await enqueueSettlement(queue, op);
    logger.warn({ operationId: op.id }, 'open operation had no job; re-enqueued');
    return true;
  }
  const state = await job.getState();
  if (state === 'failed') {
    await job.retry('failed');
    logger.warn({ operationId: op.id, reason: job.failedReason }, 'open operation had a failed job; retried');
    return true;
  }
  if (state === 'completed' || state === 'unknown') {
    // Completed yet open: the job's effect was lost (e.g. a database restore). Run it again.
    await job.remove().catch(() => {});
    await enqueueSettlement(queue, op);
    logger.warn({ operationId: op.id, state }, 'open operation had a finished job; re-enqueued');
    return true;
  }
  return false;
}

/** Runs the reconciler every `intervalMs` until `signal` aborts. */
export async function runReconciler(
  shards: ShardRouter,
  queue: Queue,
  options: { intervalMs: number; pendingAfterMs: number },
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    await reconcileOnce(shards, queue, options.pendingAfterMs, logger).catch((err: unknown) =>
      logger.warn({ err }, 'reconcile pass failed'),
    );
    await sleep(options.intervalMs, signal);
  }
}
