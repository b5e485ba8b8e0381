import { sql } from 'drizzle-orm';
import { analyticsBuckets } from '../../db/consumer-schema.ts';
import { ANALYTICS_EVENT_TYPES, bucketStart } from '../../domain/analytics.ts';
import type { ConsumerSpec } from './consumer.ts';

const COUNTED = new Set<string>(ANALYTICS_EVENT_TYPES);

/**
 * Count and volume (minor units) per currency, event type and UTC hour/day of completion.
 * Failed operations count too (their volume is what was attempted).
 */
export function analyticsConsumer(): ConsumerSpec {
  return {
    name: 'analytics',
    async apply(tx, event) {
      if (!COUNTED.has(event.type)) return;
      const { amount, currency, completedAt } = event.data as { amount?: string; currency?: string; completedAt?: string };
      if (typeof amount !== 'string' || !/^[0-9]+$/.test(amount) || typeof currency !== 'string') return;
      const at = new Date(completedAt ?? event.time);
      for (const granularity of ['hour', 'day'] as const) {
        await tx
          .insert(analyticsBuckets)
          .values({ granularity, bucketStart: bucketStart(at, granularity), currency, eventType: event.type, count: 1n, volume: BigInt(amount) })
          .onConflictDoUpdate({
            target: [analyticsBuckets.granularity, analyticsBuckets.bucketStart, analyticsBuckets.currency, analyticsBuckets.eventType],
            set: { count: sql`${analyticsBuckets.count} + 1`, volume: sql`${analyticsBuckets.volume} + excluded.volume` },
          });
      }
    },
  };
}
