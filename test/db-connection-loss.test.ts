/**
 * A pooled connection that Postgres terminates (pg_terminate_backend, restart, failover) while
 * it is checked out, between two statements of a transaction, must fail that transaction, not
 * the process: node-postgres emits 'error' on the checked-out client, which crashes a process
 * that has no listener for it (the chaos harness found workers and consumers dying this way).
 */
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { openDatabase } from '../src/db/client.ts';
import { uncaughtDuring } from './support/uncaught.ts';

const PG_BASE = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const database = openDatabase(`${PG_BASE}/postgres`, { PG_POOL_MAX: 2, PG_CONNECTION_TIMEOUT_MS: 5000, PG_IDLE_TIMEOUT_MS: 30_000 }, 'connection-loss-test');
const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
afterAll(async () => {
  await database.pool.end();
  await admin.end();
});

it('a connection terminated mid-transaction fails the transaction, and the pool goes on', async () => {
  await admin.connect();
  const uncaught = await uncaughtDuring(async () => {
    const tx = database.db.transaction(async (t) => {
      const { rows } = await t.execute<{ pid: number }>(sql`SELECT pg_backend_pid() AS pid`);
      await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      await new Promise((r) => setTimeout(r, 300)); // the termination arrives while no query is active
      await t.execute(sql`SELECT 1`);
    });
    await expect(tx).rejects.toThrow();
  }, 0);
  expect(uncaught).toEqual([]);
  const { rows } = await database.pool.query('SELECT 1 AS one');
  expect(rows[0].one).toBe(1);
});
