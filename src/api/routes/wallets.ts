import { Router } from 'express';
import { balanceAt, createWallet, findClientWallet, listEntries, walletView, type EntryRow } from '../../db/repositories/wallets.ts';
import type { Db } from '../../db/client.ts';
import { assertNotFenced } from '../../db/repositories/shard-fences.ts';
import { WalletNotFound } from '../../domain/errors.ts';
import { newWalletId } from '../../domain/ids.ts';
import { requireClient } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { HttpProblem } from '../problem.ts';
import { BalanceQuery, CreateWalletBody, EntriesQuery, WalletIdParams } from '../schemas.ts';
import { validate } from '../validate.ts';

const entryView = (e: EntryRow) => ({
  id: e.id,
  operationId: e.operationId,
  walletId: e.walletId,
  direction: e.leg,
  amount: e.amount.toString(),
  balanceAfter: e.balanceAfter?.toString() ?? null,
  createdAt: e.createdAt.toISOString(),
});

const MAX_BIGINT = 2n ** 63n - 1n;
const encodeCursor = (seq: bigint) => Buffer.from(seq.toString()).toString('base64url');
function decodeCursor(cursor: string): bigint {
  const text = Buffer.from(cursor, 'base64url').toString();
  // An entry's seq is a Postgres bigint: a larger number would fail in the query (a 500).
  if (!/^[1-9][0-9]{0,18}$/.test(text) || BigInt(text) > MAX_BIGINT) {
    throw new HttpProblem('validation_failed', 'the query failed validation', [
      { path: 'query.cursor', message: 'must be a cursor returned by a previous page' },
    ]);
  }
  return BigInt(text);
}

/** 404 for a wallet that is not there, unless its shard moved away (then 503: retry). */
async function notFound(db: Db, id: string): Promise<never> {
  await assertNotFenced(db, [id]);
  throw new WalletNotFound(id);
}

export function walletRoutes(ctx: ApiContext): Router {
  const router = Router();

  router.post('/v1/wallets', async (req, res) => {
    const client = requireClient(req);
    const body = validate(CreateWalletBody, req.body, 'body');
    const id = newWalletId();
    const wallet = await createWallet(ctx.shards.forId(id).db, {
      id,
      clientId: client.id,
      currency: body.currency,
      reference: body.reference ?? null,
    });
    req.log.info({ walletId: id }, 'wallet created');
    res.status(201).location(`/v1/wallets/${id}`).json(walletView(wallet));
  });

  router.get('/v1/wallets/:id', async (req, res) => {
    const client = requireClient(req);
    const { id } = validate(WalletIdParams, req.params, 'params');
    const cached = await ctx.walletCache.get(id);
    if ('hit' in cached) {
      // A wallet never changes owner, so the cached owner is as good as the row's.
      if (cached.hit.clientId !== client.id) throw new WalletNotFound(id);
      return void res.json(cached.hit.view);
    }
    const db = ctx.shards.forId(id).db;
    const wallet = await findClientWallet(db, client.id, id);
    if (!wallet) return notFound(db, id);
    const view = walletView(wallet);
    await ctx.walletCache.fill(cached.miss, client.id, view);
    res.json(view);
  });

  router.get('/v1/wallets/:id/balance', async (req, res) => {
    const client = requireClient(req);
    const { id } = validate(WalletIdParams, req.params, 'params');
    const { at } = validate(BalanceQuery, req.query, 'query');
    const db = ctx.shards.forId(id).db;
    const wallet = await findClientWallet(db, client.id, id);
    if (!wallet) return notFound(db, id);
    const instant = at ?? new Date();
    const balance = await balanceAt(db, id, instant);
    res.json({ walletId: id, currency: wallet.currency, balance: balance.toString(), at: instant.toISOString() });
  });

  router.get('/v1/wallets/:id/entries', async (req, res) => {
    const client = requireClient(req);
    const { id } = validate(WalletIdParams, req.params, 'params');
    const query = validate(EntriesQuery, req.query, 'query');
    const db = ctx.shards.forId(id).db;
    const wallet = await findClientWallet(db, client.id, id);
    if (!wallet) return notFound(db, id);
    const rows = await listEntries(db, id, query.limit + 1, query.cursor ? decodeCursor(query.cursor) : undefined);
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    res.json({
      data: page.map(entryView),
      nextCursor: rows.length > query.limit && last ? encodeCursor(last.seq) : null,
    });
  });

  return router;
}
