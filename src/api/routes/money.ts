import { Router } from 'express';
import type { ApiContext } from '../context.ts';
import { acceptOperation, idempotencyKeyOf } from '../accept-operation.ts';
import { FundBody, TransferBody, WalletIdParams } from '../schemas.ts';
import { validate } from '../validate.ts';

/** POST /v1/wallets/:id/fund and POST /v1/transfers: accepted now, settled by the workers. */
export function moneyRoutes(ctx: ApiContext): Router {
  const router = Router();

  router.post('/v1/wallets/:id/fund', async (req, res) => {
    const idempotencyKey = idempotencyKeyOf(req);
    const { id } = validate(WalletIdParams, req.params, 'params');
    const body = validate(FundBody, req.body, 'body');
    const amount = BigInt(body.amount);
    await acceptOperation(ctx, req, res, {
      route: 'fund',
      idempotencyKey,
      canonical: [id, body.amount, body.paymentMethod ?? null],
      ownedWalletId: id,
      build: (wallet) => ({
        type: 'fund',
        amount,
        currency: wallet.currency,
        fromWalletId: null,
        toWalletId: id,
        paymentMethod: body.paymentMethod ?? null,
      }),
    });
  });

  router.post('/v1/transfers', async (req, res) => {
    const idempotencyKey = idempotencyKeyOf(req);
    const body = validate(TransferBody, req.body, 'body');
    const amount = BigInt(body.amount);
    await acceptOperation(ctx, req, res, {
      route: 'transfer',
      idempotencyKey,
      canonical: [body.fromWalletId, body.toWalletId, body.amount, body.reference ?? null],
      ownedWalletId: body.fromWalletId,
      build: (wallet) => ({
        type: 'transfer',
        amount,
        currency: wallet.currency,
        fromWalletId: body.fromWalletId,
        toWalletId: body.toWalletId,
        reference: body.reference ?? null,
      }),
    });
  });

  return router;
}
