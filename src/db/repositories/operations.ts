import { and, asc, eq, inArray, lt, sql } from 'drizzle-orm';
import type { Db } from '../client.ts';
import { operations } from '../schema.ts';

export type OperationRow = typeof operations.$inferSelect;
export type NewOperation = typeof operations.$inferInsert;

/**
 * Records an accepted operation. Postgres is the truth for idempotency: if the client already
 * used this key, nothing is inserted and the existing operation is returned instead.
 */
export async function insertOperation(
  db: Db,
  op: NewOperation,
): Promise<{ created: true; operation: OperationRow } | { created: false; operation: OperationRow }> {
  const [inserted] = await db
    .insert(operations)
    .values(op)
    .onConflictDoNothing({ target: [operations.clientId, operations.idempotencyKey] })
    .returning();
  if (inserted) return { created: true, operation: inserted };
  const existing = await findOperationByKey(db, op.clientId, op.idempotencyKey);
  if (!existing) throw new Error('idempotency conflict without an existing operation');
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
