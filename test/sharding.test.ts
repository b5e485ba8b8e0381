/**
 * Four shard databases: same-database transfers settle in one transaction, cross-database ones
 * as a saga (hold, credit, settle) with compensation. Invariants are checked over all databases.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Queue } from 'bullmq';
import { acceptTransferBatch } from '../src/api/accept-transfer-batch.ts';
import { ShardRouter } from '../src/db/shard-router.ts';
import { createLogger } from '../src/infra/logger.ts';
import { createTestEnv, databaseIndexOf, systemViolations, type TestEnv } from './support/env.ts';

const DATABASES = 4;
let t: TestEnv;
let key: string;

beforeAll(async () => {
  t = await createTestEnv({ databases: DATABASES });
  key = await t.api.adminKey();
});
afterAll(() => t?.close());

/** Creates wallets until every database holds at least `perDatabase` of them. */
async function walletsInEveryDatabase(perDatabase: number, currency = 'USD'): Promise<string[][]> {
  const byDb: string[][] = Array.from({ length: DATABASES }, () => []);
  while (byDb.some((list) => list.length < perDatabase)) {
    const id = await t.api.wallet(key, currency);
    byDb[databaseIndexOf(id, DATABASES)]!.push(id);
  }
  return byDb.map((list) => list.slice(0, perDatabase));
}

const wallet = async (id: string) => (await t.api.request('GET', `/v1/wallets/${id}`, { key })).body;

describe('sharded ledger', () => {
  it('puts wallets in every database and an operation in its source wallet shard', async () => {
    const byDb = await walletsInEveryDatabase(1);
    const a = byDb[0]![0];
    const b = byDb[1]![0];
    const fund = await t.api.fund(key, a!, '500');
    expect(fund.body.id.slice(0, 2)).toBe(a!.slice(0, 2));
    const row = await t.pools[databaseIndexOf(a!, DATABASES)]!.query('SELECT id FROM operations WHERE id = $1', [fund.body.id]);
    expect(row.rowCount).toBe(1);
    await t.api.waitTerminal(key, fund.body.id);
    const tr = await t.api.transfer(key, a!, b!, '200');
    expect((await t.api.waitTerminal(key, tr.body.id)).status).toBe('succeeded');
    expect(await wallet(a!)).toMatchObject({ balance: '300', available: '300' });
    expect(await wallet(b!)).toMatchObject({ balance: '200', available: '200' });
    const saga = await t.pools[databaseIndexOf(a!, DATABASES)]!.query('SELECT state FROM transfer_sagas WHERE operation_id = $1', [tr.body.id]);
    expect(saga.rows[0].state).toBe('completed');
    expect(await systemViolations(t.pools)).toEqual([]);
  });

  it('batches racing with one key write one operation, though the key lives in another database', async () => {
    // The operation's database (its source wallet's) comes first in database order, the key's
    // later: a batch that wrote its operation before claiming the key would leave one
    // operation per racer (nothing else in the schema refuses a second one).
    const from = (await walletsInEveryDatabase(1))[0]![0]!;
    const to = (await walletsInEveryDatabase(1))[1]![0]!;
    const { rows } = await t.pools[databaseIndexOf(from, DATABASES)]!.query('SELECT client_id FROM wallets WHERE id = $1', [from]);
    const clientId: string = rows[0].client_id;
    const keyDatabase = (k: string) => Math.floor((ShardRouter.idempotencyShard(clientId, k) * DATABASES) / 256);
    const keys: string[] = [];
    while (keys.length < 12) {
      const k = `race-${randomUUID()}`;
      if (keyDatabase(k) !== databaseIndexOf(from, DATABASES)) keys.push(k);
    }
    for (const k of keys) {
      const body = { transfers: [{ fromWalletId: from, toWalletId: to, amount: '1', idempotencyKey: k }] };
      const answers = await Promise.all(Array.from({ length: 6 }, () => t.api.request('POST', '/v1/transfers/batch', { key, body })));
      expect(answers.filter((a) => a.status !== 202 && a.status !== 409).map((a) => [a.status, a.body])).toEqual([]);
      const named = new Set(answers.filter((a) => a.status === 202).map((a) => a.body.operations[0].id));
      expect(named.size).toBe(1);
      const written = await Promise.all(
        t.pools.map(async (db) => (await db.query('SELECT id FROM operations WHERE client_id = $1 AND idempotency_key = $2', [clientId, k])).rows),
      );
      expect(written.flat().map((r) => r.id)).toEqual([...named]);
    }
  });

  it('a batch that fails at a later database still enqueues what an earlier one committed', async () => {
    const from = (await walletsInEveryDatabase(1))[0]![0]!;
    const to = (await walletsInEveryDatabase(1))[1]![0]!;
    const home = databaseIndexOf(from, DATABASES);
    const { rows } = await t.pools[home]!.query('SELECT client_id FROM wallets WHERE id = $1', [from]);
    const clientId: string = rows[0].client_id;
    const keyIn = (db: number | 'elsewhere', prefix: string) => {
      for (;;) {
        const k = `${prefix}-${randomUUID()}`;
        const at = Math.floor((ShardRouter.idempotencyShard(clientId, k) * DATABASES) / 256);
        if (db === 'elsewhere' ? at !== home : at === db) return { key: k, at };
      }
    };
    const first = keyIn(home, 'kept'); // claimed with its operation in the source wallet's database
    const second = keyIn('elsewhere', 'refuse'); // claimed next, in another database, which fails
    const failing = t.pools[second.at]!;
    await failing.query(`CREATE OR REPLACE FUNCTION test_refuse_key() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.key LIKE 'refuse-%' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$`);
    await failing.query('DROP TRIGGER IF EXISTS test_refuse_key ON idempotency_keys');
    await failing.query('CREATE TRIGGER test_refuse_key BEFORE INSERT ON idempotency_keys FOR EACH ROW EXECUTE FUNCTION test_refuse_key()');
    const shards = ShardRouter.open(t.config, 'batch-partial-test');
    const enqueued: { name: string; data: { operationId: string; operationIds?: string[] } }[] = [];
    const queue = { addBulk: async (jobs: typeof enqueued) => void enqueued.push(...jobs) } as unknown as Queue;
    try {
      const transfer = (k: string) => ({ idempotencyKey: k, requestHash: 'h', fromWalletId: from, toWalletId: to, amount: 1n, reference: null });
      await expect(
        acceptTransferBatch(shards, queue, createLogger(t.config, 'batch-partial-test'), {
          clientId,
          requestId: null,
          traceparent: null,
          transfers: [transfer(first.key), transfer(second.key)],
        }),
      ).rejects.toMatchObject({ cause: { message: 'injected failure' } });
    } finally {
      await failing.query('DROP TRIGGER test_refuse_key ON idempotency_keys');
      await failing.query('DROP FUNCTION test_refuse_key()');
      await shards.close();
    }
    const kept = await t.pools[home]!.query('SELECT id FROM operations WHERE client_id = $1 AND idempotency_key = $2', [clientId, first.key]);
    expect(kept.rows).toHaveLength(1);
    // Its job went out with the failed request, not a reconciler pass later.
    expect(enqueued.flatMap((j) => j.data.operationIds ?? [j.data.operationId])).toEqual([kept.rows[0].id]);
  });

  it('compensates: a refused destination on another shard releases the hold', async () => {
    const usd = await walletsInEveryDatabase(1);
    const a = usd[0]![0];
    const frozen = usd[1]![0];
    const eur = (await walletsInEveryDatabase(1, 'EUR'))[2]![0];
    await t.api.waitTerminal(key, (await t.api.fund(key, a!, '1000')).body.id);
    await t.pools[databaseIndexOf(frozen!, DATABASES)]!.query(`UPDATE wallets SET status = 'frozen' WHERE id = $1`, [frozen]);
    const missing = `${frozen!.slice(0, 2)}${'0'.repeat(6)}-0000-4000-8000-000000000000`;
    const cases: [string, string][] = [
      [frozen!, 'wallet_frozen'],
      [eur!, 'currency_mismatch'],
      [missing, 'wallet_not_found'],
    ];
    for (const [to, code] of cases) {
      const op = await t.api.waitTerminal(key, (await t.api.transfer(key, a!, to, '400')).body.id);
      expect(op).toMatchObject({ status: 'failed', failure: { code } });
      expect(await wallet(a!)).toMatchObject({ balance: '1000', available: '1000' });
    }
    expect(await systemViolations(t.pools)).toEqual([]);
  });

  it('a saga step that finds no operation checks the fence: moved away, it fails and retries on the new map', async () => {
    const { holdFunds, settleHold } = await import('../src/workers/transfer-saga.ts');
    const { newIdInShard } = await import('../src/domain/ids.ts');
    const { openDatabase } = await import('../src/db/client.ts');
    const { sqlState } = await import('../src/db/errors.ts');
    // Shard 200 lives in the last database: fencing it in database 0 touches no real traffic.
    const id = newIdInShard(200);
    const source = openDatabase(t.config.SHARD_DATABASE_URLS[0]!, t.config, 'test');
    try {
      expect(await settleHold(source.db, id, { outcome: 'credited' })).toBeUndefined(); // simply not here
      await t.pools[0]!.query('INSERT INTO fenced_shards (logical_shard) VALUES (200)');
      for (const step of [() => holdFunds(source.db, id), () => settleHold(source.db, id, { outcome: 'credited' })]) {
        expect(await step().then(() => 'returned', (err: unknown) => sqlState(err))).toBe('LL001');
      }
    } finally {
      await t.pools[0]!.query('DELETE FROM fenced_shards WHERE logical_shard = 200');
      await source.pool.end();
    }
  });

  it('a hold lowers available, not balance, until it settles', async () => {
    const quiet = await createTestEnv({ databases: DATABASES, worker: false });
    try {
      const k = await quiet.api.adminKey();
      const ids: string[] = [];
      while (new Set(ids.map((id) => databaseIndexOf(id, DATABASES))).size < 2) ids.push(await quiet.api.wallet(k));
      const a = ids[0]!;
      const b = ids.find((id) => databaseIndexOf(id, DATABASES) !== databaseIndexOf(a, DATABASES))!;
      const db = quiet.pools[databaseIndexOf(a, DATABASES)]!;
      await db.query(`UPDATE wallets SET balance = 1000 WHERE id = $1`, [a]); // seed without a worker
      await db.query(
        `INSERT INTO ledger_entries (id, operation_id, wallet_id, leg, amount, balance_after) VALUES (gen_random_uuid(), gen_random_uuid(), $1, 'credit', 1000, 1000)`,
        [a],
      );
      const tr = await quiet.api.transfer(k, a, b, '300');
      const { holdFunds } = await import('../src/workers/transfer-saga.ts');
      const { openDatabase } = await import('../src/db/client.ts');
      const source = openDatabase(quiet.config.SHARD_DATABASE_URLS[databaseIndexOf(a, DATABASES)]!, quiet.config, 'test');
      expect(await holdFunds(source.db, tr.body.id)).toEqual({ step: 'held', fresh: true });
      expect(await holdFunds(source.db, tr.body.id)).toEqual({ step: 'held', fresh: false });
      await source.pool.end();
      expect((await quiet.api.request('GET', `/v1/wallets/${a}`, { key: k })).body).toMatchObject({ balance: '1000', available: '700' });
      expect((await quiet.api.request('GET', `/v1/operations/${tr.body.id}`, { key: k })).body.status).toBe('processing');
      // Lose every job, as a Redis wipe would: only the reconciler can find the stuck saga now.
      const { Queue } = await import('bullmq');
      const queue = new Queue('settlement', { connection: quiet.redis, prefix: quiet.config.REDIS_PREFIX });
      await queue.obliterate({ force: true });
      await queue.close();
      quiet.startWorker();
      expect((await quiet.api.waitTerminal(k, tr.body.id)).status).toBe('succeeded');
      expect((await quiet.api.request('GET', `/v1/wallets/${a}`, { key: k })).body).toMatchObject({ balance: '700', available: '700' });
    } finally {
      await quiet.close();
    }
  });

  it('answers the balance at a past instant from the entries', async () => {
    const a = (await walletsInEveryDatabase(1))[0]![0];
    await t.api.waitTerminal(key, (await t.api.fund(key, a!, '100')).body.id);
    await new Promise((r) => setTimeout(r, 20));
    const between = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20));
    await t.api.waitTerminal(key, (await t.api.fund(key, a!, '50')).body.id);
    const past = await t.api.request('GET', `/v1/wallets/${a}/balance?at=${encodeURIComponent(between)}`, { key });
    expect(past.body).toMatchObject({ walletId: a, balance: '100', currency: 'USD' });
    const now = await t.api.request('GET', `/v1/wallets/${a}/balance`, { key });
    expect(now.body.balance).toBe('150');
    const before = await t.api.request('GET', `/v1/wallets/${a}/balance?at=2000-01-01T00:00:00Z`, { key });
    expect(before.body.balance).toBe('0');
    expect((await t.api.request('GET', `/v1/wallets/${a}/balance?at=yesterday`, { key })).status).toBe(400);
  });
});

describe('property: random fund/transfer sequences across 4 databases, run concurrently', () => {
  it('conserves money, never overdraws, balances equal entries, leaves no hold', async () => {
    const pool = (await walletsInEveryDatabase(2)).flat();
    const command = fc.oneof(
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('fund' as const), to: fc.nat(pool.length - 1), amount: fc.integer({ min: 1, max: 500 }) }) },
      {
        weight: 4,
        arbitrary: fc.record({
          kind: fc.constant('transfer' as const),
          from: fc.nat(pool.length - 1),
          to: fc.nat(pool.length - 1),
          amount: fc.integer({ min: 1, max: 400 }),
        }),
      },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 20, maxLength: 60 }), async (commands) => {
        const before = await Promise.all(pool.map(async (id) => BigInt((await wallet(id)).balance)));
        const accepted = await Promise.all(
          commands.map((c) =>
            c.kind === 'fund' ? t.api.fund(key, pool[c.to]!, String(c.amount)) : t.api.transfer(key, pool[c.from]!, pool[c.to]!, String(c.amount)),
          ),
        );
        expect(accepted.every((r) => r.status === 202)).toBe(true);
        const ops = await Promise.all(accepted.map((r) => t.api.waitTerminal(key, r.body.id, 60_000)));
        const fundedIn = ops.filter((o) => o.type === 'fund' && o.status === 'succeeded').reduce((s, o) => s + BigInt(o.amount), 0n);
        const after = await Promise.all(pool.map((id) => wallet(id)));
        const total = (xs: bigint[]) => xs.reduce((s, x) => s + x, 0n);
        expect(total(after.map((w) => BigInt(w.balance)))).toBe(total(before) + fundedIn);
        expect(after.every((w) => BigInt(w.available) >= 0n && w.available === w.balance)).toBe(true);
        expect(await systemViolations(t.pools)).toEqual([]);
      }),
      { numRuns: 6 },
    );
  }, 180_000);
});
