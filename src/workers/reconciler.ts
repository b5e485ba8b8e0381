import type { Queue } from 'bullmq';
import { findStaleOpenOperations, type StaleCursor } from '../db/repositories/operations.ts';
import type { ShardRouter } from '../db/shard-router.ts';
import type { Logger } from '../infra/logger.ts';
import { reconcilerRepairs } from '../infra/metrics.ts';
import { sleep } from '../infra/sleep.ts';
import { BATCH_JOB_ID_PREFIX, enqueueSettlement, type JobPayload } from '../jobs/catalog.ts';

const PAGE = 500;
/** Upper bound of operations inspected per database per pass. */
const MAX_PER_PASS = 20_000;
/** Batch jobs whose data is read at most per pass, when looking for the batches still to run. */
const MAX_JOBS_READ = 2_000;
/** Job data read at once (one batch of HGETs). */
const JOB_PAGE = 100;

/**
 * The operations named by `settle-batch` jobs that will still run (active, waiting, paused,
 * prioritized or delayed), oldest jobs first: under a backlog an operation open longer than
 * `pendingAfterMs` is usually still queued in one, and has no job of its own for `getJob` to
 * find. The job ids of every state are read in one MULTI, so no job is missed while workers
 * take jobs meanwhile (paging through the lists would skip the ones that shifted); then the
 * data of at most `maxJobs` of them. A job finished meanwhile has no data left and is skipped.
 */
export async function queuedBatchOperations(queue: Queue, maxJobs = MAX_JOBS_READ): Promise<Set<string>> {
  const client = await queue.backend.client;
  const k = queue.keys;
  const replies = await client
    .multi()
    .lrange(k.active!, 0, -1)
    .lrange(k.wait!, 0, -1)
    .lrange(k.paused!, 0, -1)
    .zrange(k.prioritized!, 0, -1)
    .zrange(k.delayed!, 0, -1)
    .exec();
  if (!replies) throw new Error('the queue read was aborted');
  const lists = replies.map(([err, ids]: [Error | null, unknown]) => {
    if (err) throw err;
    return ids as string[];
  });
  // Waiting lists take new jobs at their head: oldest first is from their tail.
  const [active, wait, paused, prioritized, delayed] = lists as [string[], string[], string[], string[], string[]];
  const batchIds = [...active, ...wait.reverse(), ...paused.reverse(), ...prioritized, ...delayed]
    .filter((id) => id.startsWith(BATCH_JOB_ID_PREFIX))
    .slice(0, maxJobs);
  const ids = new Set<string>();
  for (let i = 0; i < batchIds.length; i += JOB_PAGE) {
    const page = await Promise.all(batchIds.slice(i, i + JOB_PAGE).map((id) => client.hget(queue.toKey(id), 'data')));
    for (const data of page) {
      if (data === null) continue;
      const payload = JSON.parse(data) as Partial<JobPayload<'settle-batch'>>;
      for (const id of payload.operationIds ?? []) ids.add(id);
    }
  }
  return ids;
}

/**
 * Finds operations open longer than `pendingAfterMs` and makes sure each has a live job:
 * re-adds it when Redis lost it (restart, FLUSHALL), retries it when its job failed for good.
 * One still queued in a `settle-batch` job is left to that job (once per pass the reconciler
 * reads which operations the queued batches name), so a backlog older than `pendingAfterMs` is
 * not settled twice over. Returns how many jobs it added or retried.
 */
export async function reconcileOnce(
  shards: ShardRouter,
  queue: Queue,
  pendingAfterMs: number,
  logger: Logger,
): Promise<number> {
  const olderThan = new Date(Date.now() - pendingAfterMs);
  let repaired = 0;
  let queued: Promise<Set<string>> | undefined;
  // Read once per pass, on the first stale operation. Ids not seen (a pass that could not read
  // every queued job, or a batch that ended meanwhile) are checked one by one, as before.
  const inQueuedBatch = async (id: string) =>
    (
      await (queued ??= queuedBatchOperations(queue).catch((err: unknown) => {
        logger.warn({ err }, 'could not read the queued batch jobs; checking each operation on its own');
        return new Set<string>();
      }))
    ).has(id);
  for (const database of shards.databases) {
    let after: StaleCursor | undefined;
    for (let seen = 0; seen < MAX_PER_PASS; ) {
      const open = await findStaleOpenOperations(database.db, olderThan, PAGE, after);
      if (open.length === 0) break;
      seen += open.length;
      after = open.at(-1);
      for (const op of open) {
        if (op.type === 'transfer' && (await inQueuedBatch(op.id))) continue;
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
