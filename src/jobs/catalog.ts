/**
 * Every queue and job the service uses, with its payload schema, typed once. Producers use
 * `enqueueSettlement`; the worker refuses to start unless every job name has a processor.
 */
import { randomUUID } from 'node:crypto';
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { z } from 'zod';
import type { Config } from '../config.ts';

export const SETTLEMENT_QUEUE = 'settlement';

/** Every `settle-batch` job id starts so (the reconciler finds them by it). */
export const BATCH_JOB_ID_PREFIX = 'batch-';

/** Most operations one `settle-batch` job names. */
export const MAX_BATCH_JOB = 1000;

/** Trace context of the request behind a job, so worker log lines carry it (optional: older jobs lack it). */
const traceFields = {
  requestId: z.string().max(128).optional(),
  traceparent: z.string().max(55).optional(),
};

export const jobPayloads = {
  'settle-fund': z.object({ operationId: z.uuid(), ...traceFields }),
  'settle-transfer': z.object({ operationId: z.uuid(), ...traceFields }),
  /** Cross-shard saga, step 2 (destination database). Step 1 is `settle-transfer`. */
  'saga-credit': z.object({ operationId: z.uuid(), ...traceFields }),
  /** Cross-shard saga, step 3 (source database). */
  'saga-settle': z.object({ operationId: z.uuid(), ...traceFields }),
  /**
   * Transfers accepted together whose wallets share a database: settled together, set-based.
   * `operationId` names the first, for logs; `operationIds` holds them all.
   */
  'settle-batch': z.object({ operationId: z.uuid(), operationIds: z.array(z.uuid()).min(1).max(MAX_BATCH_JOB), ...traceFields }),
} as const;

export type JobName = keyof typeof jobPayloads;
export type JobPayload<N extends JobName> = z.infer<(typeof jobPayloads)[N]>;
export const JOB_NAMES = Object.keys(jobPayloads) as JobName[];

export const jobNameForOperation = (type: 'fund' | 'transfer'): JobName =>
  type === 'fund' ? 'settle-fund' : 'settle-transfer';

/** Backoff between attempts: exponential from 1 s, capped at 60 s, with full jitter. */
export function settlementBackoffMs(attemptsMade: number): number {
  const ceiling = Math.min(60_000, 1000 * 2 ** Math.max(0, attemptsMade - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

export function settlementJobOptions(config: Pick<Config, 'JOB_ATTEMPTS'>): JobsOptions {
  return {
    attempts: config.JOB_ATTEMPTS,
    backoff: { type: 'settlement' },
    removeOnComplete: { age: 3600, count: 10_000 },
    // Failed jobs keep their reason for operators (Bull Board) for a week.
    removeOnFail: { age: 7 * 24 * 3600 },
  };
}

export function createSettlementQueue(
  config: Pick<Config, 'REDIS_PREFIX' | 'JOB_ATTEMPTS'>,
  connection: ConnectionOptions,
): Queue {
  return new Queue(SETTLEMENT_QUEUE, {
    connection,
    prefix: config.REDIS_PREFIX,
    defaultJobOptions: settlementJobOptions(config),
  });
}

/**
 * Enqueues the settlement of an operation. The job id is the operation id, so enqueuing a
 * live job again (reconciler, API retry) is a no-op.
 */
export async function enqueueSettlement(
  queue: Queue,
  operation: { id: string; type: 'fund' | 'transfer'; requestId?: string | null; traceparent?: string | null },
): Promise<void> {
  await queue.add(jobNameForOperation(operation.type), jobDataOf(operation), { jobId: operation.id });
}

function jobDataOf(operation: { id: string; requestId?: string | null; traceparent?: string | null }) {
  return {
    operationId: operation.id,
    ...(operation.requestId ? { requestId: operation.requestId } : {}),
    ...(operation.traceparent ? { traceparent: operation.traceparent } : {}),
  };
}

/**
 * Enqueues the settlement of operations accepted together, in one round trip: transfers that
 * `settlesTogether` says stay in one database go in `settle-batch` jobs of up to MAX_BATCH_JOB,
 * the rest (funds, cross-database transfers) in their own jobs. A batch job's id is new: if it
 * is lost, the reconciler enqueues its operations one by one.
 */
export async function enqueueSettlements(
  queue: Queue,
  operations: readonly { id: string; type: 'fund' | 'transfer'; requestId?: string | null; traceparent?: string | null }[],
  settlesTogether: (operation: { id: string; type: 'fund' | 'transfer' }) => boolean,
): Promise<void> {
  const jobs: { name: JobName; data: unknown; opts: JobsOptions }[] = [];
  const together = operations.filter(settlesTogether);
  const batched = new Set(together.length > 1 ? together : []);
  for (const operation of operations) {
    if (batched.has(operation)) continue;
    jobs.push({ name: jobNameForOperation(operation.type), data: jobDataOf(operation), opts: { jobId: operation.id } });
  }
  if (together.length > 1) {
    for (let i = 0; i < together.length; i += MAX_BATCH_JOB) {
      const chunk = together.slice(i, i + MAX_BATCH_JOB);
      const data: JobPayload<'settle-batch'> = { operationId: chunk[0]!.id, operationIds: chunk.map((o) => o.id) };
      jobs.push({ name: 'settle-batch', data, opts: { jobId: `${BATCH_JOB_ID_PREFIX}${randomUUID()}` } });
    }
  }
  if (jobs.length > 0) await queue.addBulk(jobs);
}

/** Enqueues the next step of a cross-shard saga; its job id is `<operation id>-<step>`. */
export async function enqueueSagaStep(queue: Queue, step: 'credit' | 'settle', operationId: string): Promise<void> {
  const name: JobName = step === 'credit' ? 'saga-credit' : 'saga-settle';
  const data: JobPayload<typeof name> = { operationId };
  await queue.add(name, data, { jobId: `${operationId}-${step}` });
}
