import { and, asc, eq, lt, sql } from 'drizzle-orm';
import type { Db, Tx } from '../client.ts';
import { operations } from '../schema.ts';
import { anyId, bigintArray, OPEN_STATUS, textArray, uuidArray } from '../sql.ts';

export type OperationRow = typeof operations.$inferSelect;
export type NewOperation = typeof operations.$inferInsert;

export async function findOperation(db: Db, id: string): Promise<OperationRow | undefined> {
  const [row] = await db.select().from(operations).where(eq(operations.id, id));
  return row;
}

/**
 * Where a page of stale operations ended: the last one's id and its `created_at` as Postgres
 * wrote it (microseconds; a Date keeps milliseconds, and a page's operations often share one
 * timestamp, so a Date cursor would hand the same page back again and again).
 */
export type StaleCursor = { createdAt: string; id: string };

/** Open operations accepted before `olderThan`, oldest first: candidates for re-enqueueing. */
export async function findStaleOpenOperations(
  db: Db,
  olderThan: Date,
  limit: number,
  after?: StaleCursor,
): Promise<(Pick<OperationRow, 'id' | 'type'> & StaleCursor)[]> {
  return db
    .select({ id: operations.id, type: operations.type, createdAt: sql<string>`${operations.createdAt}::text` })
    .from(operations)
    .where(
      and(
        sql`${operations.status} ${OPEN_STATUS}`, // a literal: the partial index operations_open_idx applies (sql.ts)
        lt(operations.createdAt, olderThan),
        after ? sql`(${operations.createdAt}, ${operations.id}) > (${after.createdAt}::timestamptz, ${after.id}::uuid)` : undefined,
      ),
    )
    .orderBy(asc(operations.createdAt), asc(operations.id))
    .limit(limit);
}

type KeyClaim = { clientId: string; key: string; requestHash: string; operationId: string };

/** The claims already recorded for these (client, key) pairs, in one statement. */
export async function findIdempotencyKeys(db: Db | Tx, keys: readonly { clientId: string; key: string }[]): Promise<KeyClaim[]> {
  if (keys.length === 0) return [];
  const { rows } = await db.execute<{ client_id: string; key: string; request_hash: string; operation_id: string }>(sql`
    SELECT k.client_id, k.key, k.request_hash, k.operation_id
    FROM idempotency_keys k
    JOIN unnest(${uuidArray(keys.map((k) => k.clientId))}, ${textArray(keys.map((k) => k.key))}) AS v(client_id, key)
      ON k.client_id = v.client_id AND k.key = v.key`);
  return rows.map(claimOf);
}

const claimOf = (r: { client_id: string; key: string; request_hash: string; operation_id: string }): KeyClaim => ({
  clientId: r.client_id,
  key: r.key,
  requestHash: r.request_hash,
  operationId: r.operation_id,
});

/**
 * The order every statement claims keys in: by client, then key (code units, as JS compares).
 * A claim waits for a concurrent uncommitted claim of the same key; two statements that claim
 * overlapping keys in one order wait for each other instead of deadlocking.
 */
export function inClaimOrder<T extends { clientId: string }>(items: readonly T[], keyOf: (item: T) => string): T[] {
  return items.toSorted((a, b) => {
    if (a.clientId !== b.clientId) return a.clientId < b.clientId ? -1 : 1;
    const [x, y] = [keyOf(a), keyOf(b)];
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

/**
 * Claims many idempotency keys in one statement (ON CONFLICT DO NOTHING), in `inClaimOrder`;
 * returns the claims this statement inserted. Keys already claimed are not returned: read them
 * with `findIdempotencyKeys`.
 */
export async function insertIdempotencyKeys(db: Db | Tx, unordered: readonly KeyClaim[]): Promise<KeyClaim[]> {
  if (unordered.length === 0) return [];
  const claims = inClaimOrder(unordered, (c) => c.key);
  const { rows } = await db.execute<{ client_id: string; key: string; request_hash: string; operation_id: string }>(sql`
    INSERT INTO idempotency_keys (client_id, key, request_hash, operation_id)
    SELECT client_id, key, request_hash, operation_id
    FROM unnest(${uuidArray(claims.map((c) => c.clientId))}, ${textArray(claims.map((c) => c.key))},
                ${textArray(claims.map((c) => c.requestHash))}, ${uuidArray(claims.map((c) => c.operationId))})
      WITH ORDINALITY AS c(client_id, key, request_hash, operation_id, ord)
    ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING client_id, key, request_hash, operation_id`);
  return rows.map(claimOf);
}

/**
 * Records many accepted operations in one statement; an id already present is skipped (a
 * retry or a concurrent duplicate). Returns the rows this statement inserted.
 */
export async function insertOperations(db: Db | Tx, ops: readonly (NewOperation & { id: string })[]): Promise<OperationRow[]> {
  if (ops.length === 0) return [];
  const { rows } = await db.execute<{ id: string; created_at: string | Date; updated_at: string | Date }>(sql`
    INSERT INTO operations (id, client_id, type, amount, currency, from_wallet_id, to_wallet_id, reference, payment_method,
                            idempotency_key, request_hash, request_id, traceparent)
    SELECT * FROM unnest(${uuidArray(ops.map((o) => o.id))}, ${uuidArray(ops.map((o) => o.clientId))}, ${textArray(ops.map((o) => o.type))},
                         ${bigintArray(ops.map((o) => o.amount))}, ${textArray(ops.map((o) => o.currency))},
                         ${uuidArray(ops.map((o) => o.fromWalletId ?? null))}, ${uuidArray(ops.map((o) => o.toWalletId))},
                         ${textArray(ops.map((o) => o.reference ?? null))}, ${textArray(ops.map((o) => o.paymentMethod ?? null))},
                         ${textArray(ops.map((o) => o.idempotencyKey))}, ${textArray(ops.map((o) => o.requestHash))},
                         ${textArray(ops.map((o) => o.requestId ?? null))}, ${textArray(ops.map((o) => o.traceparent ?? null))})
    ON CONFLICT DO NOTHING
    RETURNING id, created_at, updated_at`);
  const byId = new Map(ops.map((o) => [o.id, o]));
  return rows.map((r) => pendingOperation(byId.get(r.id)!, r.created_at, r.updated_at));
}

/** The row of an operation just inserted (status pending), from what was inserted and what Postgres returned. */
function pendingOperation(op: NewOperation & { id: string }, createdAt: string | Date, updatedAt: string | Date): OperationRow {
  return {
    id: op.id,
    clientId: op.clientId,
    type: op.type,
    status: 'pending',
    amount: op.amount,
    currency: op.currency,
    fromWalletId: op.fromWalletId ?? null,
    toWalletId: op.toWalletId,
    reference: op.reference ?? null,
    paymentMethod: op.paymentMethod ?? null,
    idempotencyKey: op.idempotencyKey,
    requestHash: op.requestHash,
    failureCode: null,
    failureMessage: null,
    createdAt: new Date(createdAt),
    updatedAt: new Date(updatedAt),
    completedAt: null,
    requestId: op.requestId ?? null,
    traceparent: op.traceparent ?? null,
  };
}

/** A request to accept an operation whose idempotency key lives in its wallet's database. */
export interface AcceptInOneStatement {
  id: string;
  clientId: string;
  idempotencyKey: string;
  requestHash: string;
  /** The wallet the client must own (a fund's wallet, a transfer's source); the operation takes its currency. */
  ownedWalletId: string;
  type: 'fund' | 'transfer';
  amount: bigint;
  fromWalletId: string | null;
  toWalletId: string;
  reference: string | null;
  paymentMethod: string | null;
  requestId: string | null;
  traceparent: string | null;
}

/**
 * The batched accept's common case in one statement and one commit: checks each request's
 * wallet is its client's, claims the keys (in `inClaimOrder`) and inserts the operations of the
 * claimed ones. Returns the operations it created. A request left out (wallet missing or
 * someone else's, key already claimed, a duplicate key within the batch) wrote nothing and is
 * for the caller to settle step by step. A key being claimed by a concurrent statement makes
 * this one wait for it to commit; then the key is taken, and left out here.
 */
export async function acceptOperations(db: Db, unordered: readonly AcceptInOneStatement[]): Promise<OperationRow[]> {
  if (unordered.length === 0) return [];
  const requests = inClaimOrder(unordered, (r) => r.idempotencyKey);
  const { rows } = await db.execute<{ id: string; currency: string; created_at: string | Date; updated_at: string | Date }>(sql`
    WITH req AS (
      SELECT * FROM unnest(${uuidArray(requests.map((r) => r.id))}, ${uuidArray(requests.map((r) => r.clientId))}, ${textArray(requests.map((r) => r.idempotencyKey))},
                           ${textArray(requests.map((r) => r.requestHash))}, ${uuidArray(requests.map((r) => r.ownedWalletId))}, ${textArray(requests.map((r) => r.type))},
                           ${bigintArray(requests.map((r) => r.amount))}, ${uuidArray(requests.map((r) => r.fromWalletId))}, ${uuidArray(requests.map((r) => r.toWalletId))},
                           ${textArray(requests.map((r) => r.reference))}, ${textArray(requests.map((r) => r.paymentMethod))},
                           ${textArray(requests.map((r) => r.requestId))}, ${textArray(requests.map((r) => r.traceparent))})
        WITH ORDINALITY AS r(id, client_id, key, request_hash, owned_wallet_id, type, amount, from_wallet_id, to_wallet_id, reference,
                             payment_method, request_id, traceparent, ord)
    ),
    owned AS (
      SELECT req.*, w.currency FROM req JOIN wallets w ON w.id = req.owned_wallet_id AND w.kind = 'customer' AND w.client_id = req.client_id
    ),
    claimed AS (
      INSERT INTO idempotency_keys (client_id, key, request_hash, operation_id)
      SELECT client_id, key, request_hash, id FROM owned ORDER BY ord
      ON CONFLICT DO NOTHING
      RETURNING operation_id
    )
    INSERT INTO operations (id, client_id, type, amount, currency, from_wallet_id, to_wallet_id, reference, payment_method,
                            idempotency_key, request_hash, request_id, traceparent)
    SELECT o.id, o.client_id, o.type, o.amount, o.currency, o.from_wallet_id, o.to_wallet_id, o.reference, o.payment_method,
           o.key, o.request_hash, o.request_id, o.traceparent
    FROM owned o JOIN claimed c ON c.operation_id = o.id
    ON CONFLICT DO NOTHING
    RETURNING id, currency, created_at, updated_at`);
  const byId = new Map(requests.map((r) => [r.id, r]));
  return rows.map((row) => pendingOperation({ ...byId.get(row.id)!, currency: row.currency }, row.created_at, row.updated_at));
}

export async function findOperations(db: Db | Tx, ids: readonly string[]): Promise<OperationRow[]> {
  if (ids.length === 0) return [];
  return db.select().from(operations).where(anyId(operations.id, ids));
}
