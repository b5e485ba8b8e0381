/**
 * A transaction whose BEGIN fails (its connection died right after checkout) must give its
 * pooled client back: drizzle-orm 0.45 does not (src/db/drizzle-transaction-fix.ts), and the
 * chaos harness saw the webhooks consumer's pool drained for good after a few Postgres faults.
 */
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { expect, it } from 'vitest';
import '../src/db/client.ts';

it('releases the pooled client when BEGIN fails, and still runs a transaction that begins', async () => {
  const statements: string[] = [];
  let released = 0;
  let failBegin = true;
  const client = {
    query: async (q: { text?: string } | string) => {
      const text = typeof q === 'string' ? q : (q.text ?? '');
      statements.push(text);
      if (failBegin && text.startsWith('begin')) throw Object.assign(new Error('Connection terminated unexpectedly'), { code: '57P01' });
      return { rows: [], rowCount: 0, fields: [], command: '' };
    },
    release: () => {
      released++;
    },
  };
  const pool = new pg.Pool({ max: 1 });
  (pool as unknown as { connect: () => Promise<unknown> }).connect = async () => client;
  const db = drizzle(pool);

  await expect(db.transaction(async () => 'never')).rejects.toThrow();
  expect(released).toBe(1);
  expect(statements).toEqual(['begin']); // no rollback of a transaction that never began

  failBegin = false;
  await expect(db.transaction(async () => 'done')).resolves.toBe('done');
  expect(statements.slice(1)).toEqual(['begin', 'commit']);
  expect(released).toBe(2);
  await pool.end();
});
