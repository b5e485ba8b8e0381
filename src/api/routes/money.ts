import type { IRouter } from 'express';
import type { ApiContext } from '../context.ts';
import { acceptOperation, idempotencyKeyOf, traceOf } from '../accept-operation.ts';
import { operationView } from '../../domain/operation-view.ts';
import { operationsAccepted } from '../../infra/metrics.ts';
import { acceptTransferBatch } from '../accept-transfer-batch.ts';
import { requireClient } from '../auth.ts';
import { requestHash } from '../idempotency.ts';
import { FundBody, TransferBatchBody, TransferBody, WalletIdParams } from '../schemas.ts';
import { validate } from '../validate.ts';

/**
 * POST /v1/wallets/:id/fund, POST /v1/transfers and POST /v1/transfers/batch: accepted now,
 * settled by the workers. Registered on the app itself (`router` is the app), not in a router
 * of their own: the hot path then enters no nested router (one more dispatch loop per request).
 */
export function moneyRoutes(ctx: ApiContext, router: IRouter): void {
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
      operation: {
        type: 'fund',
        amount,
        fromWalletId: null,
        toWalletId: id,
        paymentMethod: body.paymentMethod ?? null,
      },
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
      operation: {
        type: 'transfer',
        amount,
        fromWalletId: body.fromWalletId,
        toWalletId: body.toWalletId,
        reference: body.reference ?? null,
      },
    });
  });

  /** Up to 1,000 transfers accepted as a unit, each with its own key and operation (accept-transfer-batch.ts). */
  router.post('/v1/transfers/batch', async (req, res) => {
    const client = requireClient(req);
    const body = validate(TransferBatchBody, req.body, 'body');
    const accepted = await acceptTransferBatch(ctx.shards, ctx.queue, req.log, {
      clientId: client.id,
      ...traceOf(res),
      transfers: body.transfers.map((t) => ({
        idempotencyKey: t.idempotencyKey,
        // The same hash as POST /v1/transfers: an item and a single transfer with one key are one request.
        requestHash: requestHash('transfer', [t.fromWalletId, t.toWalletId, t.amount, t.reference ?? null]),
        fromWalletId: t.fromWalletId,
        toWalletId: t.toWalletId,
        amount: BigInt(t.amount),
        reference: t.reference ?? null,
      })),
    });
    if (accepted.created > 0) {
      operationsAccepted.inc({ type: 'transfer' }, accepted.created);
      req.log.info({ operations: accepted.operations.length, created: accepted.created }, 'transfer batch accepted');
    }
    if (accepted.created === 0) res.setHeader('Idempotent-Replayed', 'true');
    res.status(202).json({ operations: accepted.operations.map((o) => operationView(o, true)) });
  });
}
