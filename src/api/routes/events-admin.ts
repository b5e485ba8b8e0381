import { and, asc, eq, gte, lte, type SQL } from 'drizzle-orm';
import { Router } from 'express';
import { analyticsBuckets } from '../../db/consumer-schema.ts';
import { walletView } from '../../db/repositories/wallets.ts';
import { invalidateWallets } from '../wallet-cache.ts';
import { wallets } from '../../db/schema.ts';
import { WalletNotFound } from '../../domain/errors.ts';
import { adminAuth } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { AnalyticsQuery } from '../event-schemas.ts';
import { WalletIdParams } from '../schemas.ts';
import { validate } from '../validate.ts';

/** Operator routes fed by the consumers: analytics aggregates and unfreezing a wallet. */
export function eventsAdminRoutes(ctx: ApiContext): Router {
  const router = Router();
  router.use('/admin', adminAuth(ctx.config.ADMIN_TOKEN));

  router.get('/admin/analytics', async (req, res) => {
    const q = validate(AnalyticsQuery, req.query, 'query');
    const where: SQL[] = [eq(analyticsBuckets.granularity, q.granularity)];
    if (q.currency) where.push(eq(analyticsBuckets.currency, q.currency));
    if (q.from) where.push(gte(analyticsBuckets.bucketStart, q.from));
    if (q.to) where.push(lte(analyticsBuckets.bucketStart, q.to));
    const rows = await ctx.shards.control.db
      .select()
      .from(analyticsBuckets)
      .where(and(...where))
      .orderBy(asc(analyticsBuckets.bucketStart), asc(analyticsBuckets.currency), asc(analyticsBuckets.eventType))
      .limit(5000);
    res.json({
      granularity: q.granularity,
      data: rows.map((r) => ({
        bucketStart: r.bucketStart.toISOString(),
        currency: r.currency,
        eventType: r.eventType,
        count: Number(r.count),
        volume: r.volume.toString(),
      })),
    });
  });

  router.post('/admin/wallets/:id/unfreeze', async (req, res) => {
    const { id } = validate(WalletIdParams, req.params, 'params');
    const [row] = await ctx.shards
      .forId(id)
      .db.update(wallets)
      .set({ status: 'active', updatedAt: new Date() })
      .where(and(eq(wallets.id, id), eq(wallets.kind, 'customer')))
      .returning();
    if (!row) throw new WalletNotFound(id);
    await invalidateWallets(ctx.redis, ctx.config.REDIS_PREFIX, [id]).catch((err: unknown) =>
      req.log.warn({ err }, 'could not invalidate wallet cache; the entry expires within WALLET_CACHE_TTL_SECONDS'),
    );
    req.log.info({ walletId: id }, 'wallet unfrozen by an operator');
    res.json(walletView(row));
  });

  return router;
}
