import { Router } from 'express';
import { sql } from 'drizzle-orm';
import { readBreakerStates } from '../../infra/breaker-state.ts';
import type { ApiContext, CheckStatus } from '../context.ts';

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);

async function check(fn: () => Promise<unknown>): Promise<CheckStatus> {
  try {
    return (await withTimeout(fn(), 2000)) === false ? 'fail' : 'ok';
  } catch {
    return 'fail';
  }
}

export function healthRoutes(ctx: ApiContext): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const [postgres, redis, kafka, gateway] = await Promise.all([
      check(() => Promise.all(ctx.shards.databases.map((d) => d.db.execute(sql`SELECT 1`)))),
      check(() => ctx.redis.ping()),
      check(() => ctx.kafkaReady()),
      // Detail only: the breakers live in the workers, which publish their state to Redis.
      // An open breaker means funds wait and retry; it does not make this API unready.
      withTimeout(readBreakerStates(ctx.redis, ctx.config.REDIS_PREFIX), 2000).then(
        (b) => ({ breaker: b.state, workers: b.workers }),
        () => ({ breaker: 'unknown' as const }),
      ),
    ]);
    const checks = { postgres, redis, kafka };
    const ready = Object.values(checks).every((c) => c === 'ok');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', checks, detail: { gateway } });
  });

  return router;
}
