/** Which events analytics counts, and the UTC buckets an instant falls in. */
export const ANALYTICS_EVENT_TYPES = ['wallet.funded', 'wallet.fund_failed', 'transfer.completed', 'transfer.failed'] as const;

export function bucketStart(at: Date, granularity: 'hour' | 'day'): Date {
  const d = new Date(at.getTime());
  d.setUTCMinutes(0, 0, 0);
  if (granularity === 'day') d.setUTCHours(0);
  return d;
}
