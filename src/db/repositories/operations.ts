import { and, asc, eq, inArray, lt, sql } from 'drizzle-orm';
import type { Db } from '../client.ts';
import { idempotencyKeys, operations } from '../schema.ts';

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
