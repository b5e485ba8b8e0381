/**
 * Group commit and batched accept: concurrent settlements of one database share transactions,
 * one operation that breaks its group's transaction fails alone, and POST /v1/transfers/batch
 * accepts up to 1,000 transfers as a unit. The reconciler is held off (10 min), so every
 * operation here must settle through its own jobs: nothing may be dropped by batching.
 */
import { randomUUID } from 'node:crypto';
import { register } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ledgerViolations, type TestEnv } from './support/env.ts';

let t: TestEnv;
let key: string;
beforeAll(async () => {
  t = await createTestEnv({ env: { RECONCILE_PENDING_AFTER_MS: '600000', SETTLE_BATCH_LINGER_MS: '5' } });
  key = await t.api.adminKey();
});
afterAll(() => t?.close());

async function fundedWallets(n: number, amount: string): Promise<string[]> {
  const wallets = await Promise.all(Array.from({ length: n }, () => t.api.wallet(key)));
  const funds = await Promise.all(wallets.map((w) => t.api.fund(key, w, amount)));
  await Promise.all(funds.map((f) => t.api.waitTerminal(key, f.body.id, 30_000)));
  return wallets;
}

async function settleBatchSizes(): Promise<{ count: number; sum: number }> {
  const metric = (await register.getSingleMetric('batch_size')?.get())?.values ?? [];
  const of = (suffix: string) =>
    metric.find((v) => (v as { metricName?: string }).metricName === `batch_size_${suffix}` && v.labels.stage === 'settle')?.value ?? 0;
  return { count: of('count'), sum: of('sum') };
}

/** Waits until every operation is terminal, polling the database (not 1,000 long polls at once). */
async function terminal(ids: string[], timeoutMs = 60_000): Promise<{ id: string; status: string; failure_code: string | null }[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await t.pool.query(`SELECT id, status, failure_code FROM operations WHERE id = ANY($1::uuid[]) AND status IN ('succeeded', 'failed')`, [ids]);
    if (rows.length === ids.length) {
      const byId = new Map(rows.map((r) => [r.id, r]));
      return ids.map((id) => byId.get(id)!);
    }
    if (Date.now() > until) throw new Error(`${ids.length - rows.length} of ${ids.length} operations not terminal after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const balanceOf = async (w: string) => BigInt((await t.api.request('GET', `/v1/wallets/${w}`, { key })).body.balance);

it('settles concurrent transfers on hot wallets in shared transactions, exactly once each', async () => {
  const wallets = await fundedWallets(4, '100000');
  const before = await settleBatchSizes();
  const submitted = await Promise.all(
    Array.from({ length: 400 }, (_, i) => t.api.transfer(key, wallets[i % 4]!, wallets[(i + 1) % 4]!, String(1 + (i % 50)))),
  );
  expect(submitted.every((r) => r.status === 202)).toBe(true);
  const ops = await terminal(submitted.map((r) => r.body.id));
  expect(ops.every((o) => o.status === 'succeeded')).toBe(true);

  const after = await settleBatchSizes();
  const transactions = after.count - before.count;
  expect(after.sum - before.sum).toBeGreaterThanOrEqual(400);
  // Shared transactions: far fewer than one per transfer.
  expect(transactions).toBeLessThan(200);

  const entries = await t.pool.query(`SELECT operation_id, COUNT(*)::int AS n FROM ledger_entries WHERE operation_id = ANY($1::uuid[]) GROUP BY 1`, [
    ops.map((o) => o.id),
  ]);
  expect(entries.rows).toHaveLength(400);
  expect(entries.rows.every((r) => r.n === 2)).toBe(true);
  const total = (await Promise.all(wallets.map(balanceOf))).reduce((a, b) => a + b, 0n);
  expect(total).toBe(400_000n);
  expect(await ledgerViolations(t.pool)).toEqual([]);
});

it('isolates one operation that breaks its group: the rest settle, it waits, nothing is half-applied', async () => {
  const wallets = await fundedWallets(3, '10000');
  // A poisoned transfer: the database refuses its entries (as a bug or a corrupt row would).
  const poisonAmount = '4242';
  await t.pool.query(`
    CREATE OR REPLACE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.amount = ${poisonAmount} OR NEW.amount = -${poisonAmount} THEN RAISE EXCEPTION 'poisoned entry' USING ERRCODE = 'P0001'; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER test_poison BEFORE INSERT ON ledger_entries FOR EACH ROW EXECUTE FUNCTION test_poison();`);
  try {
    // One batch request: its 60 transfers are settled as one group (one settle-batch job).
    const transfers = Array.from({ length: 60 }, (_, i) => ({
      idempotencyKey: randomUUID(),
      fromWalletId: wallets[i % 3]!,
      toWalletId: wallets[(i + 1) % 3]!,
      amount: i === 30 ? poisonAmount : String(10 + i),
    }));
    const res = await t.api.request('POST', '/v1/transfers/batch', { key, body: { transfers } });
    expect(res.status).toBe(202);
    const ids: string[] = res.body.operations.map((o: { id: string }) => o.id);
    const poisonId = ids[30]!;
    const settled = await terminal(ids.filter((_, i) => i !== 30));
    expect(settled.every((o) => o.status === 'succeeded')).toBe(true);

    const poisoned = await t.api.request('GET', `/v1/operations/${poisonId}`, { key });
    expect(poisoned.body.status).toBe('pending');
    const written = await t.pool.query(`SELECT COUNT(*)::int AS n FROM ledger_entries WHERE operation_id = $1`, [poisonId]);
    expect(written.rows[0].n).toBe(0);
    const splits = (await register.getSingleMetric('batch_splits_total')?.get())?.values.find((v) => v.labels.stage === 'settle')?.value ?? 0;
    expect(splits).toBeGreaterThan(0);
    expect(await ledgerViolations(t.pool)).toEqual([]);

    // Fixed: its own job's retry settles it.
    await t.pool.query(`DROP TRIGGER test_poison ON ledger_entries`);
    const healed = await t.api.waitTerminal(key, poisonId, 30_000);
    expect(healed.status).toBe('succeeded');
  } finally {
    await t.pool.query(`DROP TRIGGER IF EXISTS test_poison ON ledger_entries`);
  }
  expect(await ledgerViolations(t.pool)).toEqual([]);
});

describe('POST /v1/transfers/batch', () => {
  const item = (from: string, to: string, amount: string, idempotencyKey: string = randomUUID()) => ({ idempotencyKey, fromWalletId: from, toWalletId: to, amount });
  const countOps = async () => Number((await t.pool.query(`SELECT COUNT(*) FROM operations`)).rows[0].count);

  it('accepts 1,000 transfers as a unit, settles each once, and replays the same operations', async () => {
    const wallets = await fundedWallets(10, '1000000');
    const transfers = Array.from({ length: 1000 }, (_, i) => item(wallets[i % 10]!, wallets[(i * 3 + 1) % 10]!, String(1 + (i % 97))));
    const res = await t.api.request('POST', '/v1/transfers/batch', { key, body: { transfers } });
    expect(res.status).toBe(202);
    expect(res.headers.get('idempotent-replayed')).toBeNull();
    const ids = res.body.operations.map((o: { id: string }) => o.id);
    expect(new Set(ids).size).toBe(1000);
    expect(res.body.operations.every((o: { status: string }) => o.status === 'pending')).toBe(true);
    expect(res.body.operations[7].amount).toBe(transfers[7]!.amount);

    const ops = await terminal(ids);
    const expectedFailures = transfers.filter((x) => x.fromWalletId === x.toWalletId).length;
    expect(ops.filter((o) => o.status === 'succeeded')).toHaveLength(1000 - expectedFailures);
    expect(ops.filter((o) => o.status === 'failed').every((o) => o.failure_code === 'same_wallet')).toBe(true);

    const again = await t.api.request('POST', '/v1/transfers/batch', { key, body: { transfers } });
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.operations.map((o: { id: string }) => o.id)).toEqual(ids);
    // An item is the same request as a single transfer with its key.
    const single = await t.api.transfer(key, transfers[5]!.fromWalletId, transfers[5]!.toWalletId, transfers[5]!.amount, transfers[5]!.idempotencyKey);
    expect(single.status).toBe(202);
    expect(single.body.id).toBe(ids[5]);

    const entries = await t.pool.query(`SELECT COUNT(*)::int AS n FROM ledger_entries WHERE operation_id = ANY($1::uuid[])`, [ids]);
    expect(entries.rows[0].n).toBe(2 * (1000 - expectedFailures));
    const total = (await Promise.all(wallets.map(balanceOf))).reduce((a, b) => a + b, 0n);
    expect(total).toBe(10_000_000n);
    expect(await ledgerViolations(t.pool)).toEqual([]);
  });

  it('refuses the whole batch when one item is refused, and writes nothing', async () => {
    const [a, b] = await fundedWallets(2, '1000');
    const before = await countOps();

    const missing = await t.api.request('POST', '/v1/transfers/batch', {
      key,
      body: { transfers: [item(a!, b!, '1'), item(randomUUID(), b!, '1'), item(b!, a!, '2')] },
    });
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('wallet_not_found');
    expect(missing.body.errors[0].path).toBe('body.transfers.1.fromWalletId');

    const used = item(a!, b!, '5');
    expect((await t.api.transfer(key, a!, b!, '5', used.idempotencyKey)).status).toBe(202);
    const reused = await t.api.request('POST', '/v1/transfers/batch', {
      key,
      body: { transfers: [item(a!, b!, '1'), { ...used, amount: '6' }] },
    });
    expect(reused.status).toBe(422);
    expect(reused.body.code).toBe('idempotency_key_reused');
    // Both at once: the reused key decides the answer, as for one transfer; both are listed.
    const both = await t.api.request('POST', '/v1/transfers/batch', {
      key,
      body: { transfers: [item(randomUUID(), b!, '1'), { ...used, amount: '6' }] },
    });
    expect(both.status).toBe(422);
    expect(both.body.code).toBe('idempotency_key_reused');
    expect(both.body.errors.map((e: { path: string }) => e.path).sort()).toEqual(['body.transfers.0.fromWalletId', 'body.transfers.1.idempotencyKey']);

    const duplicate = await t.api.request('POST', '/v1/transfers/batch', { key, body: { transfers: [item(a!, b!, '1', 'k'), item(b!, a!, '1', 'k')] } });
    expect(duplicate.status).toBe(400);
    const tooMany = await t.api.request('POST', '/v1/transfers/batch', {
      key,
      body: { transfers: Array.from({ length: 1001 }, () => item(a!, b!, '1')) },
    });
    expect(tooMany.status).toBe(400);
    const empty = await t.api.request('POST', '/v1/transfers/batch', { key, body: { transfers: [] } });
    expect(empty.status).toBe(400);

    expect(await countOps()).toBe(before + 1); // only the single transfer above
  });
});

describe('enqueue coalescing (ENQUEUE_BATCH_LINGER_MS)', () => {
  let e: TestEnv;
  beforeAll(async () => {
    e = await createTestEnv({ env: { RECONCILE_PENDING_AFTER_MS: '600000', ENQUEUE_BATCH_LINGER_MS: '300' } });
  });
  afterAll(() => e?.close());

  const enqueueBatches = async () => {
    const values = (await register.getSingleMetric('batch_size')?.get())?.values ?? [];
    const of = (suffix: string) =>
      values.find((v) => (v as { metricName?: string }).metricName === `batch_size_${suffix}` && v.labels.stage === 'enqueue')?.value ?? 0;
    return { count: of('count'), sum: of('sum') };
  };

  it('transfers accepted one after another share enqueues, their 202s do not wait for them, and each settles once', async () => {
    const k = await e.api.adminKey();
    const [a, b] = await Promise.all([e.api.wallet(k), e.api.wallet(k)]);
    await e.api.waitTerminal(k, (await e.api.fund(k, a!, '1000')).body.id, 30_000);
    const before = await enqueueBatches();
    const started = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await e.api.transfer(k, a!, b!, '10'); // one at a time: each its own accept batch
      expect(res.status).toBe(202);
      ids.push(res.body.id);
    }
    // Six answers that each waited for a 300 ms enqueue linger would take 1.8 s.
    expect(performance.now() - started).toBeLessThan(1500);
    const done = await Promise.all(ids.map((id) => e.api.waitTerminal(k, id, 30_000)));
    expect(done.every((o) => o.status === 'succeeded')).toBe(true);
    const after = await enqueueBatches();
    expect(after.sum - before.sum).toBe(6);
    expect(after.count - before.count).toBeLessThanOrEqual(3); // one or two addBulk calls, not six
    expect(BigInt((await e.api.request('GET', `/v1/wallets/${b}`, { key: k })).body.balance)).toBe(60n);
    expect(await ledgerViolations(e.pool)).toEqual([]);
  });
});
