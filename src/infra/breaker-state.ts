import type { Redis } from 'ioredis';

/**
 * Breaker state shared through Redis. The circuit breaker lives in each worker process; the
 * API cannot see it. Each worker writes its state into one hash field (with an expiry inside
 * the value, refreshed periodically), and /readyz reads the hash, ignoring fields whose
 * worker stopped refreshing them. It is detail for operators: it never fails readiness.
 */
export type BreakerState = 'closed' | 'half_open' | 'open';

export const breakerStateKey = (redisPrefix: string) => `${redisPrefix}:gateway:breakers`;

export interface BreakerReport {
  state: BreakerState;
  expiresAt: number;
}

export async function publishBreakerState(
  redis: Redis,
  redisPrefix: string,
  workerId: string,
  state: BreakerState,
  ttlMs: number,
): Promise<void> {
  const report: BreakerReport = { state, expiresAt: Date.now() + ttlMs };
  await redis.hset(breakerStateKey(redisPrefix), workerId, JSON.stringify(report));
}

export async function removeBreakerState(redis: Redis, redisPrefix: string, workerId: string): Promise<void> {
  await redis.hdel(breakerStateKey(redisPrefix), workerId);
}

/**
 * Summary over live workers: `open` if any worker's breaker is open, else `half_open` if any
 * is, else `closed`; `unknown` when no worker reported. Expired fields are pruned.
 */
export async function readBreakerStates(
  redis: Redis,
  redisPrefix: string,
): Promise<{ state: BreakerState | 'unknown'; workers: Record<BreakerState, number> }> {
  const key = breakerStateKey(redisPrefix);
  const all = await redis.hgetall(key);
  const workers: Record<BreakerState, number> = { closed: 0, half_open: 0, open: 0 };
  const stale: string[] = [];
  const now = Date.now();
  for (const [field, raw] of Object.entries(all)) {
    try {
      const report = JSON.parse(raw) as BreakerReport;
      if (report.expiresAt < now || !(report.state in workers)) stale.push(field);
      else workers[report.state]++;
    } catch {
      stale.push(field);
    }
  }
  if (stale.length > 0) await redis.hdel(key, ...stale).catch(() => 0);
  const state =
    workers.open > 0 ? 'open' : workers.half_open > 0 ? 'half_open' : workers.closed > 0 ? 'closed' : 'unknown';
  return { state, workers };
}
