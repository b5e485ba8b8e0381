/**
 * Name locks (src/db/advisory-locks.ts) live in Postgres's two-key advisory space, where the
 * relay's one-key session lock cannot hold them up, and still exclude writers of versions that
 * took `hashtext(name)` in the one-key space.
 */
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockName } from '../src/db/advisory-locks.ts';
import { openDatabase, type Database, type Tx } from '../src/db/client.ts';

const URL = `${process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432'}/postgres`;

describe('lockName', () => {
  let database: Database;
  let other: pg.Client;
  beforeAll(async () => {
    database = openDatabase(URL, { PG_POOL_MAX: 4, PG_CONNECTION_TIMEOUT_MS: 5_000, PG_IDLE_TIMEOUT_MS: 10_000 }, 'advisory-locks-test');
    other = new pg.Client({ connectionString: URL });
    await other.connect();
  });
  afterAll(async () => {
    await other?.end();
    await database?.pool.end();
  });

  const name = (label: string) => `test:${label}:${process.pid}:${Math.random()}`;
  /** Runs `step` in a transaction that gives up on a lock it waits for longer than 300 ms. */
  const impatient = (step: (tx: Tx) => Promise<unknown>) =>
    database.db.transaction(async (tx) => {
      await tx.execute(sql`SET LOCAL lock_timeout = '300ms'`);
      await step(tx);
    });
  const LOCK_TIMEOUT = { code: '55P03' }; // lock_timeout hit: the lock was held
  const LOCK_TIMEOUT_IN_TX = { cause: LOCK_TIMEOUT }; // as drizzle wraps it

  it('two writers of one name exclude each other', async () => {
    const n = name('both-new');
    await database.db.transaction(async (tx) => {
      await lockName(tx, n);
      await expect(impatient((tx2) => lockName(tx2, n))).rejects.toMatchObject(LOCK_TIMEOUT_IN_TX);
      await expect(impatient((tx2) => lockName(tx2, name('another')))).resolves.toBeUndefined();
    });
  });

  it("a writer of an earlier version (hashtext in the one-key space) and this version's exclude each other", async () => {
    const n = name('old-and-new');
    await other.query('BEGIN');
    try {
      await other.query('SELECT pg_advisory_xact_lock(hashtext($1))', [n]);
      await expect(impatient((tx) => lockName(tx, n))).rejects.toMatchObject(LOCK_TIMEOUT_IN_TX);
    } finally {
      await other.query('ROLLBACK');
    }
    await database.db.transaction(async (tx) => {
      await lockName(tx, n);
      await other.query('BEGIN');
      try {
        await other.query(`SET LOCAL lock_timeout = '300ms'`);
        await expect(other.query('SELECT pg_advisory_xact_lock(hashtext($1))', [n])).rejects.toMatchObject(LOCK_TIMEOUT);
      } finally {
        await other.query('ROLLBACK');
      }
    });
  });

  it("a name that hashes to the relay's key is not held up by the relay's session lock", async () => {
    const n = name('collides');
    // No name is known to hash to the relay's key, so the test makes this name's hash the reserved key.
    const { rows } = await other.query<{ h: number }>('SELECT hashtext($1) AS h', [n]);
    const key = rows[0]!.h;
    await other.query('SELECT pg_advisory_lock($1)', [key]); // a session lock, as the relay holds its key
    try {
      // What earlier versions did waits for that session for good…
      await expect(impatient((tx) => tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${n}))`))).rejects.toMatchObject(LOCK_TIMEOUT_IN_TX);
      // …this one takes its lock at once, and still excludes another writer of the name.
      await database.db.transaction(async (tx) => {
        await lockName(tx, n, key);
        await expect(impatient((tx2) => lockName(tx2, n, key))).rejects.toMatchObject(LOCK_TIMEOUT_IN_TX);
      });
    } finally {
      await other.query('SELECT pg_advisory_unlock_all()');
    }
  });
});
