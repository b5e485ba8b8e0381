import { and, asc, eq, inArray, lt, sql } from 'drizzle-orm';
import type { Db, Tx } from '../client.ts';
import { idempotencyKeys, operations } from '../schema.ts';
import { anyId, param } from '../sql.ts';

export type OperationRow = typeof operations.$inferSelect;
export type NewOperation = typeof operations.$inferInsert;

/**
 * Claims an idempotency key for an operation id in the key's home database. Returns the
 * operation id the key names: the new one, or the one a previous request with this key claimed.
 */
export async function claimIdempotencyKey(
  db: Db,
  claim: { clientId: string; key: string; requestHash: string; operationId: string },
): Promise<{ operationId: string; requestHash: string }> {
  const [inserted] = await db.insert(idempotencyKeys).values(claim).onConflictDoNothing().returning();
  if (inserted) return { operationId: inserted.operationId, requestHash: inserted.requestHash };
  const [existing] = await db
    .select()
    .from(idempotencyKeys)
    .where(and(eq(idempotencyKeys.clientId, claim.clientId), eq(idempotencyKeys.key, claim.key)));
  if (!existing) throw new Error('idempotency key conflict without a row');
  return { operationId: existing.operationId, requestHash: existing.requestHash };
}

/**
 * Records an accepted operation under the id its idempotency key names. If it is already there
 * (a retry, or a concurrent duplicate), nothing is inserted and the existing row is returned.
 */
export async function insertOperation(
  db: Db,
  op: NewOperation & { id: string },
): Promise<{ created: boolean; operation: OperationRow }> {
  const [inserted] = await db.insert(operations).values(op).onConflictDoNothing().returning();
  if (inserted) return { created: true, operation: inserted };
  const existing = (await findOperation(db, op.id)) ?? (await findOperationByKey(db, op.clientId, op.idempotencyKey));
  if (!existing) throw new Error('operation conflict without an existing operation');
  return { created: false, operation: existing };
}

export async function findOperationByKey(db: Db, clientId: string, key: string): Promise<OperationRow | undefined> {
  const [row] = await db
    .select()
    .from(operations)
    .where(and(eq(operations.clientId, clientId), eq(operations.idempotencyKey, key)));
  return row;
}

export async function findOperation(db: Db, id: string): Promise<OperationRow | undefined> {
  const [row] = await db.select().from(operations).where(eq(operations.id, id));
  return row;
}

/** Open operations accepted before `olderThan`, oldest first: candidates for re-enqueueing. */
export async function findStaleOpenOperations(
  db: Db,
  olderThan: Date,
  limit: number,
  after?: { createdAt: Date; id: string },
): Promise<Pick<OperationRow, 'id' | 'type' | 'createdAt'>[]> {
  return db
    .select({ id: operations.id, type: operations.type, createdAt: operations.createdAt })
    .from(operations)
    .where(
      and(
        inArray(operations.status, ['pending', 'processing']),
        lt(operations.createdAt, olderThan),
        after ? sql`(${operations.createdAt}, ${operations.id}) > (${after.createdAt}, ${after.id})` : undefined,
      ),
    )
    .orderBy(asc(operations.createdAt), asc(operations.id))
    .limit(limit);
}

/**
 * Claims many idempotency keys in one statement (ON CONFLICT DO NOTHING); returns the claims
 * this statement inserted. Keys already claimed are not returned: read them with `findKeys`.
 */
export async function insertIdempotencyKeys(
  db: Db | Tx,
  claims: readonly { clientId: string; key: string; requestHash: string; operationId: string }[],
): Promise<{ clientId: string; key: string; requestHash: string; operationId: string }[]> {
  if (claims.length === 0) return [];
  const { rows } = await db.execute<{ client_id: string; key: string; request_hash: string; operation_id: string }>(sql`
    INSERT INTO idempotency_keys (client_id, key, request_hash, operation_id)
    SELECT * FROM unnest(${param(claims.map((c) => c.clientId))}::uuid[], ${param(claims.map((c) => c.key))}::text[],
                         ${param(claims.map((c) => c.requestHash))}::text[], ${param(claims.map((c) => c.operationId))}::uuid[])
    ON CONFLICT DO NOTHING
    RETURNING client_id, key, request_hash, operation_id`);
  return rows.map((r) => ({ clientId: r.client_id, key: r.key, requestHash: r.request_hash, operationId: r.operation_id }));
}

/**
 * Records many accepted operations in one statement; an id already present is skipped (a
 * retry or a concurrent duplicate). Returns the rows this statement inserted.
 */
export async function insertOperations(db: Db | Tx, ops: readonly (NewOperation & { id: string })[]): Promise<OperationRow[]> {
  if (ops.length === 0) return [];
  const col = <T>(pick: (op: NewOperation & { id: string }) => T) => param(ops.map(pick));
  const { rows } = await db.execute<{ id: string; created_at: string | Date; updated_at: string | Date }>(sql`
    INSERT INTO operations (id, client_id, type, amount, currency, from_wallet_id, to_wallet_id, reference, payment_method,
                            idempotency_key, request_hash, request_id, traceparent)
    SELECT * FROM unnest(${col((o) => o.id)}::uuid[], ${col((o) => o.clientId)}::uuid[], ${col((o) => o.type)}::text[],
                         ${col((o) => o.amount.toString())}::bigint[], ${col((o) => o.currency)}::text[],
                         ${col((o) => o.fromWalletId ?? null)}::uuid[], ${col((o) => o.toWalletId)}::uuid[],
                         ${col((o) => o.reference ?? null)}::text[], ${col((o) => o.paymentMethod ?? null)}::text[],
                         ${col((o) => o.idempotencyKey)}::text[], ${col((o) => o.requestHash)}::text[],
                         ${col((o) => o.requestId ?? null)}::text[], ${col((o) => o.traceparent ?? null)}::text[])
    ON CONFLICT DO NOTHING
    RETURNING id, created_at, updated_at`);
  const byId = new Map(ops.map((o) => [o.id, o]));
  return rows.map((r) => {
    const op = byId.get(r.id)!;
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
      createdAt: new Date(r.created_at),
      updatedAt: new Date(r.updated_at),
      completedAt: null,
      requestId: op.requestId ?? null,
      traceparent: op.traceparent ?? null,
    };
  });
}

export async function findOperations(db: Db | Tx, ids: readonly string[]): Promise<OperationRow[]> {
  if (ids.length === 0) return [];
  return db.select().from(operations).where(anyId(operations.id, ids));
}
