/**
 * Every queue and job the service uses, with its payload schema, typed once. Producers use
 * `enqueueSettlement`; the worker refuses to start unless every job name has a processor.
 */
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { z } from 'zod';
import type { Config } from '../config.ts';

export const SETTLEMENT_QUEUE = 'settlement';

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
  const name = jobNameForOperation(operation.type);
  const data: JobPayload<typeof name> = {
    operationId: operation.id,
    ...(operation.requestId ? { requestId: operation.requestId } : {}),
    ...(operation.traceparent ? { traceparent: operation.traceparent } : {}),
  };
  await queue.add(name, data, { jobId: operation.id });
}

/** Enqueues the next step of a cross-shard saga; its job id is `<operation id>-<step>`. */
export async function enqueueSagaStep(queue: Queue, step: 'credit' | 'settle', operationId: string): Promise<void> {
  const name: JobName = step === 'credit' ? 'saga-credit' : 'saga-settle';
  const data: JobPayload<typeof name> = { operationId };
  await queue.add(name, data, { jobId: `${operationId}-${step}` });
}
