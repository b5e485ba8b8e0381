import { Queue, type ConnectionOptions } from 'bullmq';
import type { Config } from '../../config.ts';

export const WEBHOOK_QUEUE = 'webhooks';
export interface WebhookJob {
  deliveryId: string;
}

/** Delay before retry n (1-based) from the configured schedule; the last delay repeats. */
export function webhookBackoffMs(schedule: readonly number[], attemptsMade: number): number {
  return schedule[Math.min(Math.max(attemptsMade, 1), schedule.length) - 1]!;
}

export function createWebhookQueue(config: Pick<Config, 'REDIS_PREFIX' | 'WEBHOOK_RETRY_SCHEDULE_MS'>, connection: ConnectionOptions): Queue<WebhookJob> {
  return new Queue<WebhookJob>(WEBHOOK_QUEUE, {
    connection,
    prefix: config.REDIS_PREFIX,
    defaultJobOptions: {
      // First try plus one retry per scheduled delay (default: about 28 h in all).
      attempts: config.WEBHOOK_RETRY_SCHEDULE_MS.length + 1,
      backoff: { type: 'webhook' },
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  });
}
