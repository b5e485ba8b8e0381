/**
 * Statements a pool runs often become server-side prepared statements (src/db/prepared-statements.ts):
 * named after `threshold` runs, bounded per process, and still correct when a statement fails
 * or its connection is replaced.
 */
import { sql } from 'drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/client.ts';
import { StatementNames } from '../src/db/prepared-statements.ts';
import { bigintArray, textArray, uuidArray } from '../src/db/sql.ts';
import { findStaleOpenOperations } from '../src/db/repositories/operations.ts';
import * as schema from '../src/db/schema.ts';
import { internalAccount } from '../src/workers/settle-operation.ts';
import { createTestEnv, type TestEnv } from './support/env.ts';

const PG_BASE = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';

describe('StatementNames', () => {
  it('names a text on its threshold-th run and keeps that name', () => {
    const names = new StatementNames({ maxStatements: 10, threshold: 3 });
    expect([names.nameOf('a'), names.nameOf('a')]).toEqual([undefined, undefined]);
    const name = names.nameOf('a');
    expect(name).toMatch(/^ll_\d+$/);
    expect(names.nameOf('a')).toBe(name);
    for (let i = 0; i < 3; i++) names.nameOf('b');
    expect(names.nameOf('b')).not.toBe(name);
  });

  it('names no more than maxStatements texts, and none when it is 0', () => {
    const two = new StatementNames({ maxStatements: 2, threshold: 1 });
    expect(['x', 'y', 'z'].map((t) => two.nameOf(t) !== undefined)).toEqual([true, true, false]);
    expect(two.size).toBe(2);
    const off = new StatementNames({ maxStatements: 0, threshold: 1 });
    expect(off.nameOf('x')).toBeUndefined();
  });

  it('forgets sightings rather than count an unbounded number of texts', () => {
    const names = new StatementNames({ maxStatements: 10, threshold: 2 });
    names.nameOf('hot');
    for (let i = 0; i < 5000; i++) names.nameOf(`varying ${i}`); // e.g. an IN list per length
    expect(names.nameOf('hot')).toBeUndefined(); // counting started over
    expect(names.nameOf('hot')).toMatch(/^ll_/);
  });
});

describe('a pool with PG_PREPARED_STATEMENTS', () => {
  const database = openDatabase(
    `${PG_BASE}/postgres`,
    { PG_POOL_MAX: 1, PG_CONNECTION_TIMEOUT_MS: 5000, PG_IDLE_TIMEOUT_MS: 30_000, PG_PREPARED_STATEMENTS: 10 },
    'prepared-statements-test',
  );
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  afterAll(async () => {
    await database.pool.end();
    await admin.end();
  });
  const prepared = async () =>
    (await database.db.execute<{ statement: string }>(sql`SELECT statement FROM pg_prepared_statements`)).rows.map((r) => r.statement);
  const double = (n: number) => database.db.execute<{ d: number }>(sql`SELECT ${n}::int * 2 AS d`);

  it('prepares a parameterized statement after three runs, inside transactions too, with the right results', async () => {
    for (let n = 1; n <= 2; n++) expect((await double(n)).rows[0]!.d).toBe(2 * n);
    expect(await prepared()).toEqual([]);
    const inTx = await database.db.transaction(async (tx) => tx.execute<{ d: number }>(sql`SELECT ${21}::int * 2 AS d`));
    expect(inTx.rows[0]!.d).toBe(42);
    expect(await prepared()).toEqual(['SELECT $1::int * 2 AS d']);
    for (let n = 4; n <= 6; n++) expect((await double(n)).rows[0]!.d).toBe(2 * n);
    expect(await prepared()).toHaveLength(1);
  });

  it('a prepared statement that fails fails alone; the connection and the statement go on', async () => {
    const divide = (n: number) => database.db.execute<{ q: number }>(sql`SELECT 10 / ${n}::int AS q`);
    for (let i = 0; i < 3; i++) await divide(5);
    const failure = await divide(0).catch((err: unknown) => err);
    expect((failure as { cause?: { code?: string } }).cause?.code).toBe('22012'); // division_by_zero
    expect((await divide(2)).rows[0]!.q).toBe(5);
  });

  it('binds uuid, bigint and text arrays in binary form as Postgres reads them, nulls included, prepared or not', async () => {
    const ids = ['018f3c1e-0000-7000-8000-000000000001', '018F3C1E-ABCD-7000-8000-00000000000F'];
    const texts = ['plain', 'a,b', '{"quoted"}', 'back\\slash', '', 'NULL', 'é ✓ 🙂', null];
    const select = () =>
      database.db.execute<{ ids: string[]; n: string; big: string; texts: string[]; empty: number }>(
        sql`SELECT ${uuidArray([...ids, null])}::text[] AS ids, ${bigintArray([1n, null, '-3'])}::text AS n,
                   ${bigintArray([9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n])}::text AS big,
                   ${textArray(texts)} AS texts, cardinality(${uuidArray([])}) AS empty`,
      );
    for (let run = 0; run < 4; run++) {
      // the 3rd run prepares the statement; the 4th binds the prepared one
      expect((await select()).rows[0]).toEqual({
        ids: [ids[0], ids[1]!.toLowerCase(), null],
        n: '{1,NULL,-3}',
        big: '{9223372036854775807,-9223372036854775808}',
        texts,
        empty: 0,
      });
    }
    expect(await prepared()).toContainEqual(expect.stringContaining('::uuid[]::text[] AS ids'));
    // Malformed values are refused before anything is sent.
    expect(() => uuidArray(['018f3c1e-0000-7000-8000-00000000000g'])).toThrow(TypeError);
    expect(() => uuidArray(['018f3c1e00007000800000000000000001'])).toThrow(TypeError);
    expect(() => bigintArray([9_223_372_036_854_775_808n])).toThrow(RangeError);
  });

  it('a replaced connection prepares the statement again', async () => {
    await admin.connect();
    const { rows } = await database.db.execute<{ pid: number }>(sql`SELECT pg_backend_pid() AS pid`);
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    await new Promise((r) => setTimeout(r, 200)); // the idle client learns of it and leaves the pool
    expect((await double(50)).rows[0]!.d).toBe(100);
    expect(await prepared()).toContain('SELECT $1::int * 2 AS d');
  });
});

describe('generic plans of the statements that rely on partial indexes', () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = await createTestEnv({ worker: false });
  });
  afterAll(() => t?.close());

  /** The statement `run` sends, its plan when prepared and planned generically (as after five runs). */
  async function genericPlan(run: (db: NodePgDatabase<typeof schema>) => Promise<unknown>, params: string[]): Promise<string> {
    let text = '';
    const db = drizzle(t.pool, { schema, logger: { logQuery: (q) => (text = q) } });
    await run(db);
    const client = await t.pool.connect();
    try {
      await client.query('SET plan_cache_mode = force_generic_plan');
      await client.query(`PREPARE generic_check AS ${text}`);
      const { rows } = await client.query(`EXPLAIN EXECUTE generic_check(${params.join(', ')})`);
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    } finally {
      await client.query('DEALLOCATE ALL; RESET plan_cache_mode');
      client.release();
    }
  }

  it('the reconciler finds stale open operations through operations_open_idx', async () => {
    const plan = await genericPlan((db) => findStaleOpenOperations(db, new Date(), 500), [`'2026-01-01T00:00:00Z'`, '500']);
    expect(plan).toContain('operations_open_idx');
  });

  it('the settlement account is found through wallets_internal_kind_currency_uq', async () => {
    const plan = await genericPlan((db) => internalAccount(db, 'settlement', 'USD'), [`'USD'`]); // its lookup, after the upsert
    expect(plan.split('\n').filter((l) => l.includes('Scan')).every((l) => l.includes('wallets_internal_kind_currency_uq'))).toBe(true);
  });
});
