import { sql } from 'drizzle-orm';
import type { Db } from '../client.ts';

/**
 * Total settled balance of customer wallets per currency in one database (a scan of
 * `wallets`: run at scrape time, every 15 s or so, by the worker processes only).
 */
export async function customerBalanceTotals(db: Db): Promise<{ currency: string; totalMinor: bigint }[]> {
  const result = await db.execute<{ currency: string; total: string }>(
    sql`SELECT currency, COALESCE(SUM(balance), 0)::text AS total FROM wallets WHERE kind = 'customer' GROUP BY currency`,
  );
  return result.rows.map((r) => ({ currency: r.currency, totalMinor: BigInt(r.total) }));
}

/** Unsent outbox rows and the age of the oldest (both from the partial index on unsent rows). */
export async function outboxLag(db: Db): Promise<{ unsent: number; oldestAgeSeconds: number }> {
  const result = await db.execute<{ unsent: string; age: string | null }>(sql`
    SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL)::text AS unsent,
           (SELECT EXTRACT(EPOCH FROM now() - created_at) FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 1)::text AS age`);
  const row = result.rows[0];
  return { unsent: Number(row?.unsent ?? 0), oldestAgeSeconds: Math.max(0, Number(row?.age ?? 0)) };
}
