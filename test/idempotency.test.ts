import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { settleOperation } from '../src/workers/settle-operation.ts';
import { openDatabase } from '../src/db/client.ts';
import { acceptOperations, insertIdempotencyKeys } from '../src/db/repositories/operations.ts';
import { logicalShardOf, newIdInShard } from '../src/domain/ids.ts';
import { createTestEnv, ledgerViolations, type TestEnv } from './support/env.ts';

let t: TestEnv;
let key: string;

beforeAll(async () => {
  t = await createTestEnv();
  key = await t.api.adminKey();
});
afterAll(() => t?.close());

describe('Idempotency-Key', () => {
  it('replays the first response for the same key and body', async () => {
    const a = await t.api.wallet(key);
    const first = await t.api.fund(key, a, '700', 'fund-once');
    expect(first.status).toBe(202);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    await t.api.waitTerminal(key, first.body.id);
    const again = await t.api.fund(key, a, '700', 'fund-once');
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('location')).toBe(first.headers.get('location'));
    expect(again.body).toEqual(first.body);
    expect((await t.api.request('GET', `/v1/wallets/${a}`, { key })).body.balance).toBe('700');
  });

  it('keeps nothing in Redis for a key: Postgres claims it with the operation and answers its retries', async () => {
    const a = await t.api.wallet(key);
    const idemBefore = await t.redis.keys(`${t.config.REDIS_PREFIX}:idem:*`);
    const first = await t.api.fund(key, a, '300', 'pg-only');
    expect(await t.redis.keys(`${t.config.REDIS_PREFIX}:idem:*`)).toEqual(idemBefore);
    const claim = await t.pool.query(`SELECT operation_id FROM idempotency_keys WHERE key = 'pg-only'`);
    expect(claim.rows.map((r) => r.operation_id)).toEqual([first.body.id]);
    const again = await t.api.fund(key, a, '300', 'pg-only');
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('location')).toBe(first.headers.get('location'));
    expect(again.body).toEqual(first.body);
    const other = await t.api.fund(key, a, '301', 'pg-only');
    expect(other.status).toBe(422);
    expect(other.body.code).toBe('idempotency_key_reused');
  });

  it('refuses the same key with a different body (422), on any route', async () => {
    const a = await t.api.wallet(key);
    const b = await t.api.wallet(key);
    await t.api.fund(key, a, '100', 'k-422');
    const res = await t.api.fund(key, a, '101', 'k-422');
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('idempotency_key_reused');
    const cross = await t.api.transfer(key, a, b, '100', 'k-422');
    expect(cross.body.code).toBe('idempotency_key_reused');
  });

  it('keys are per client', async () => {
    const other = await t.api.adminKey('other');
    const a = await t.api.wallet(key);
    const b = await t.api.wallet(other);
    const mine = await t.api.fund(key, a, '5', 'shared-key');
    const theirs = await t.api.fund(other, b, '5', 'shared-key');
    expect(theirs.status).toBe(202);
    expect(theirs.body.id).not.toBe(mine.body.id);
  });

  it('does not consume the key when validation fails', async () => {
    const a = await t.api.wallet(key);
    expect((await t.api.fund(key, a, '-1', 'fix-me')).status).toBe(400);
    const fixed = await t.api.fund(key, a, '1', 'fix-me');
    expect(fixed.status).toBe(202);
    expect(fixed.headers.get('idempotent-replayed')).toBeNull();
  });

  it('a reused key is 422 even when the new body names a wallet that is not the client\'s', async () => {
    const other = await t.api.adminKey('reuse-foreign');
    const a = await t.api.wallet(key);
    const b = await t.api.wallet(key);
    const foreign = await t.api.wallet(other);
    expect((await t.api.transfer(key, a, b, '1', 'k-expired')).status).toBe(202);
    for (const [from, to] of [[foreign, b], ['00000000-0000-7000-8000-000000000000', b]] as const) {
      const reused = await t.api.transfer(key, from, to, '1', 'k-expired');
      expect(reused.status).toBe(422);
      expect(reused.body.code).toBe('idempotency_key_reused');
    }
    // A fresh key naming a wallet that is not the client's is still 404.
    expect((await t.api.transfer(key, foreign, b, '1', 'k-fresh-foreign')).body.code).toBe('wallet_not_found');
  });

  it('concurrent duplicates make one operation; the others wait for its commit and replay it', async () => {
    const a = await t.api.wallet(key);
    const b = await t.api.wallet(key);
    await t.api.waitTerminal(key, (await t.api.fund(key, a, '1000')).body.id);
    const results = await Promise.all(Array.from({ length: 20 }, () => t.api.transfer(key, a, b, '10', 'race-key')));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(202));
    const fresh = results.filter((r) => r.headers.get('idempotent-replayed') === null);
    expect(fresh).toHaveLength(1);
    const ids = new Set(results.filter((r) => r.status === 202).map((r) => r.body.id));
    expect(ids.size).toBe(1);
    const rows = await t.pool.query(`SELECT COUNT(*)::int AS n FROM operations WHERE idempotency_key = 'race-key'`);
    expect(rows.rows[0].n).toBe(1);
    await t.api.waitTerminal(key, [...ids][0]!);
    expect((await t.api.request('GET', `/v1/wallets/${b}`, { key })).body.balance).toBe('10');
  });
});

describe('concurrent claims of overlapping keys', () => {
  it('two statements claiming the same keys in opposite orders wait for each other, never deadlock', async () => {
    const database = openDatabase(t.config.DATABASE_URL, { ...t.config, PG_POOL_MAX: 4 }, 'test');
    try {
      const wallet = await t.api.wallet(key);
      const clientId = (await t.pool.query(`SELECT client_id FROM wallets WHERE id = $1`, [wallet])).rows[0].client_id as string;
      const request = (idempotencyKey: string) => ({
        id: newIdInShard(logicalShardOf(wallet)),
        clientId,
        idempotencyKey,
        requestHash: `h-${idempotencyKey}`,
        ownedWalletId: wallet,
        type: 'fund' as const,
        amount: 1n,
        fromWalletId: null,
        toWalletId: wallet,
        reference: null,
        paymentMethod: null,
        requestId: null,
        traceparent: null,
      });
      const claim = (k: string) => ({ clientId, key: k, requestHash: `h-${k}`, operationId: newIdInShard(logicalShardOf(wallet)) });
      for (let round = 0; round < 5; round++) {
        const keys = Array.from({ length: 40 }, (_, i) => `order-${round}-${String(i).padStart(2, '0')}`);
        // A transaction holds the first and the last key, so the three statements below all
        // start waiting, and all go on together once it commits.
        const gate = await t.pool.connect();
        await gate.query('BEGIN');
        await gate.query(`INSERT INTO idempotency_keys (client_id, key, request_hash, operation_id) VALUES ($1, $2, 'g', $3), ($1, $4, 'g', $5)`, [
          clientId,
          keys[0],
          newIdInShard(logicalShardOf(wallet)),
          keys.at(-1),
          newIdInShard(logicalShardOf(wallet)),
        ]);
        // The batched accept's statement against itself, and against a bulk batch's claims.
        const claiming = Promise.all([
          acceptOperations(database.db, keys.map(request)),
          acceptOperations(database.db, keys.toReversed().map(request)),
          insertIdempotencyKeys(database.db, keys.toReversed().map(claim)),
        ]);
        await new Promise((r) => setTimeout(r, 200));
        await gate.query('COMMIT');
        gate.release();
        const [a, b, c] = await claiming;
        // Every other key was claimed once, by one of the three.
        expect(a.length + b.length + c.length).toBe(keys.length - 2);
      }
    } finally {
      await database.pool.end();
    }
  }, 60_000);
});

describe('redelivery', () => {
  it('a job delivered twice (and settled concurrently) moves money once', async () => {
    const a = await t.api.wallet(key);
    const b = await t.api.wallet(key);
    await t.api.waitTerminal(key, (await t.api.fund(key, a, '500')).body.id);
    const op = await t.api.transfer(key, a, b, '300');
    await t.api.waitTerminal(key, op.body.id);

    // Deliver the same job again through the queue, as a stalled-job retry would.
    const queue = new Queue('settlement', { connection: t.redis, prefix: t.config.REDIS_PREFIX });
    const old = await queue.getJob(op.body.id);
    await old?.remove();
    const again = await queue.add('settle-transfer', { operationId: op.body.id }, { jobId: op.body.id });
    await expect.poll(async () => (await queue.getJob(again.id!))?.returnvalue?.outcome, { timeout: 10_000 }).toBe('already_terminal');
    await queue.close();

    // And settle it directly, many times at once.
    const database = openDatabase(t.config.DATABASE_URL, t.config, 'test');
    const results = await Promise.all(Array.from({ length: 5 }, () => settleOperation(database.db, op.body.id)));
    await database.pool.end();
    expect(results.every((r) => r.outcome === 'already_terminal')).toBe(true);

    expect((await t.api.request('GET', `/v1/wallets/${a}`, { key })).body.balance).toBe('200');
    expect((await t.api.request('GET', `/v1/wallets/${b}`, { key })).body.balance).toBe('300');
    const entries = await t.pool.query('SELECT COUNT(*)::int AS n FROM ledger_entries WHERE operation_id = $1', [op.body.id]);
    expect(entries.rows[0].n).toBe(2);
    const events = await t.pool.query('SELECT COUNT(*)::int AS n FROM outbox WHERE operation_id = $1', [op.body.id]);
    expect(events.rows[0].n).toBe(1);
  });

  it('concurrent first deliveries settle once', async () => {
    const quiet = await createTestEnv({ worker: false });
    try {
      const k = await quiet.api.adminKey();
      const a = await quiet.api.wallet(k);
      const fund = await quiet.api.fund(k, a, '900');
      // As the gateway step leaves it: a fund is credited only with an approved charge.
      await quiet.pool.query(`INSERT INTO gateway_charges (operation_id, status) VALUES ($1, 'approved')`, [fund.body.id]);
      const database = openDatabase(quiet.config.DATABASE_URL, quiet.config, 'test');
      const results = await Promise.all(Array.from({ length: 8 }, () => settleOperation(database.db, fund.body.id)));
      await database.pool.end();
      expect(results.filter((r) => r.outcome === 'settled')).toHaveLength(1);
      expect((await quiet.api.request('GET', `/v1/wallets/${a}`, { key: k })).body.balance).toBe('900');
      expect(await ledgerViolations(quiet.pool)).toEqual([]);
    } finally {
      await quiet.close();
    }
  });
});
