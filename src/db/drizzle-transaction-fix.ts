/**
 * drizzle-orm 0.45's node-postgres `transaction()` runs BEGIN before the try/finally that
 * releases the pooled client: a BEGIN that fails (the connection died right after checkout, as
 * on pg_terminate_backend or a Postgres restart) leaks the client for the life of the process,
 * and after PG_POOL_MAX such failures every checkout times out (drizzle-orm issues #6023 and
 * #6241, fixed in open pull requests; found by the chaos harness). Until a release has the fix,
 * this replaces the method with the same code, BEGIN inside the try. Remove it on upgrade.
 */
import { sql } from 'drizzle-orm';
import { NodePgSession, NodePgTransaction } from 'drizzle-orm/node-postgres';
import type { PgTransactionConfig } from 'drizzle-orm/pg-core';
import pg from 'pg';

interface SessionInternals {
  client: pg.Pool | pg.PoolClient | pg.Client;
  dialect: unknown;
  schema: unknown;
  options: unknown;
}
type Transaction = NodePgTransaction<Record<string, never>, Record<string, never>>;

const patched = NodePgSession.prototype as unknown as {
  transaction: (this: SessionInternals, fn: (tx: Transaction) => Promise<unknown>, config?: PgTransactionConfig) => Promise<unknown>;
};

/** drizzle's own rendering of isolation level, access mode and deferrable (an internal method). */
const configSql = (tx: Transaction, config: PgTransactionConfig) =>
  (tx as unknown as { getTransactionConfigSQL: (c: PgTransactionConfig) => ReturnType<typeof sql> }).getTransactionConfigSQL(config);

patched.transaction = async function (fn, config) {
  const isPool = this.client instanceof pg.Pool || Object.getPrototypeOf(this.client).constructor.name.includes('Pool');
  const client = isPool ? await (this.client as pg.Pool).connect() : this.client;
  const session = isPool ? new NodePgSession(client as never, this.dialect as never, this.schema as never, this.options as never) : this;
  const tx: Transaction = new NodePgTransaction(this.dialect as never, session as never, this.schema as never);
  let began = false;
  try {
    await tx.execute(sql`begin${config ? sql` ${configSql(tx, config)}` : undefined}`);
    began = true;
    const result = await fn(tx);
    await tx.execute(sql`commit`);
    return result;
  } catch (error) {
    if (began) await tx.execute(sql`rollback`);
    throw error;
  } finally {
    if (isPool) (client as pg.PoolClient).release();
  }
};
