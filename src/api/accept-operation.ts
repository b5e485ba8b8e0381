import type { Request, Response } from 'express';
import { operationsAccepted } from '../infra/metrics.ts';
import type { AcceptRequest } from './accept-batcher.ts';
import { IdempotencyKeyInvalid, IdempotencyKeyMissing } from '../domain/errors.ts';
import { operationView, type OperationRecord } from '../domain/operation-view.ts';
import type { ApiContext } from './context.ts';
import { requireClient } from './auth.ts';
import { requestHash } from './idempotency.ts';
import { IDEMPOTENCY_KEY } from './schemas.ts';

export function idempotencyKeyOf(req: Request): string {
  const key = req.get('idempotency-key');
  if (key === undefined) throw new IdempotencyKeyMissing();
  if (!IDEMPOTENCY_KEY.test(key)) throw new IdempotencyKeyInvalid();
  return key;
}

/** The request id and child traceparent an accepted operation records (its logs and events carry them). */
export function traceOf(res: Response): { requestId: string | null; traceparent: string | null } {
  return {
    requestId: String(res.getHeader('X-Request-Id') ?? '') || null,
    traceparent: (res.locals.traceparent as string | undefined) ?? null,
  };
}

/** The 202 of an accepted operation; a replay gets the same, rendered as it was when first accepted. */
function sendAccepted(res: Response, operation: OperationRecord, replayed: boolean): void {
  res.setHeader('Location', `/v1/operations/${operation.id}`);
  if (replayed) res.setHeader('Idempotent-Replayed', 'true');
  res.status(202).json(operationView(operation, true));
}

/**
 * Accepts a fund or transfer: the request is validated before this is called; here it joins the
 * batched accept (accept-batcher.ts), which counts its rate limit (one Redis script per batch,
 * when the middleware left that to us: rate-limit.ts), checks the client's wallet, and commits
 * the operation with its idempotency key in its shard (Postgres decides duplicates: a key
 * already used answers the first operation again, or 422 with another body). 202 is answered
 * once the operation is committed; its settlement is enqueued without holding the answer up.
 */
export async function acceptOperation(
  ctx: ApiContext,
  req: Request,
  res: Response,
  spec: {
    route: string;
    idempotencyKey: string;
    canonical: readonly unknown[];
    ownedWalletId: string;
    operation: AcceptRequest['operation'];
  },
): Promise<void> {
  const client = requireClient(req);
  const limit = req.deferredRateLimit;
  const rateLimit = limit && !limit.counted ? limit.ticket : undefined;
  // Counted by the batch from here on (or failed open there): the error handler must not count it again.
  if (limit) limit.counted = true;
  const outcome = await ctx.accept({
    clientId: client.id,
    idempotencyKey: spec.idempotencyKey,
    requestHash: requestHash(spec.route, spec.canonical),
    ownedWalletId: spec.ownedWalletId,
    operation: spec.operation,
    rateLimit,
    ...traceOf(res),
  });
  // Sets RateLimit-* on every answer; throws 429 when the limit refused the request (nothing was written).
  if (outcome.rateLimit) limit?.apply(outcome.rateLimit);
  if (outcome.kind === 'failed') throw outcome.error;
  if (outcome.kind === 'refused') throw new Error('refused by a rate limit that gave no decision');
  const { created, operation } = outcome;
  if (created) {
    operationsAccepted.inc({ type: operation.type });
    // Guarded: req.log makes the request's child logger on first use, which costs CPU on every accept.
    if (ctx.logger.isLevelEnabled('info')) req.log.info({ operationId: operation.id, type: operation.type }, 'operation accepted');
  }
  sendAccepted(res, operation, !created);
}
