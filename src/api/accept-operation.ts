import type { Request, Response } from 'express';
import { operationsAccepted } from '../infra/metrics.ts';
import { findAccepted, type AcceptRequest } from './accept-batcher.ts';
import { IdempotencyKeyInFlight, IdempotencyKeyInvalid, IdempotencyKeyMissing, IdempotencyKeyReused } from '../domain/errors.ts';
import { operationView, type OperationRecord } from '../domain/operation-view.ts';
import type { ApiContext } from './context.ts';
import { requireClient } from './auth.ts';
import { requestHash, type BeginResult, type StoredResponse } from './idempotency.ts';
import { decide } from './rate-limit.ts';
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
function acceptedResponse(operation: OperationRecord): StoredResponse {
  return { status: 202, headers: { Location: `/v1/operations/${operation.id}` }, body: operationView(operation, true) };
}

function send(res: Response, response: StoredResponse, replayed: boolean): void {
  for (const [k, v] of Object.entries(response.headers)) res.setHeader(k, v);
  if (replayed) res.setHeader('Idempotent-Replayed', 'true');
  res.status(response.status).json(response.body);
}

/**
 * Claims the idempotency key in Redis; with the request's rate limit in the same round trip
 * when the middleware left it to us (rate-limit.ts), throwing 429 when the limit refuses it.
 */
async function claimKey(ctx: ApiContext, req: Request, clientId: string, idempotencyKey: string, hash: string): Promise<BeginResult> {
  const limit = req.deferredRateLimit;
  if (!limit || limit.counted) return ctx.idempotency.begin(clientId, idempotencyKey, hash);
  const { window, claim } = await ctx.idempotency.countAndBegin(limit.ticket, clientId, idempotencyKey, hash);
  limit.counted = true;
  if (window) limit.apply(decide(limit.ticket, window));
  return claim;
}

/**
 * A retry of a request whose key Redis holds as claimed with the same body: the first answer
 * if its operation is committed (Postgres keeps the answers; Redis holds only the claim, for
 * IN_FLIGHT_TTL_MS), else 409 in flight.
 */
async function replayCommitted(ctx: ApiContext, res: Response, clientId: string, idempotencyKey: string, hash: string): Promise<void> {
  const accepted = await findAccepted(ctx.shards, clientId, idempotencyKey);
  if (!accepted) throw new IdempotencyKeyInFlight();
  if (accepted.requestHash !== hash) throw new IdempotencyKeyReused();
  send(res, acceptedResponse(accepted.operation), true);
}

/**
 * Accepts a fund or transfer: the request is validated before this is called; here the key is
 * claimed in Redis (with the rate limit, in one round trip), then the batched accept
 * (accept-batcher.ts) checks the client's wallet, commits the operation in its shard (Postgres
 * decides duplicates) and enqueues its settlement, and 202 is answered.
 * A request that fails before the commit releases the key, so a corrected retry can use it.
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
  const hash = requestHash(spec.route, spec.canonical);
  const claim = await claimKey(ctx, req, client.id, spec.idempotencyKey, hash);
  if (claim.kind === 'replay') return send(res, claim.response, true);
  if (claim.kind === 'in_flight') return replayCommitted(ctx, res, client.id, spec.idempotencyKey, hash);
  if (claim.kind === 'reused') throw new IdempotencyKeyReused();

  let committed = false;
  try {
    const { created, operation } = await ctx.accept({
      clientId: client.id,
      idempotencyKey: spec.idempotencyKey,
      requestHash: hash,
      ownedWalletId: spec.ownedWalletId,
      operation: spec.operation,
      ...traceOf(res),
    });
    committed = true;
    if (created) {
      operationsAccepted.inc({ type: operation.type });
      // Guarded: req.log makes the request's child logger on first use, which costs CPU on every accept.
      if (ctx.logger.isLevelEnabled('info')) req.log.info({ operationId: operation.id, type: operation.type }, 'operation accepted');
    }
    // Nothing more goes to Redis: a retry finds the claim and is answered from Postgres.
    send(res, acceptedResponse(operation), !created);
  } finally {
    if (!committed && claim.kind === 'new') await ctx.idempotency.release(client.id, spec.idempotencyKey, claim.token);
  }
}
