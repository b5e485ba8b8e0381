import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestEnv, ledgerViolations, type TestEnv } from './support/env.ts';

let t: TestEnv;
beforeAll(async () => {
  t = await createTestEnv();
  t.startWorker(); // two workers in this process, 32 concurrent settlements
});
afterAll(() => t?.close());

it('500 concurrent transfers among 10 wallets conserve money and never overdraw', async () => {
  const key = await t.api.adminKey();
  const wallets = await Promise.all(Array.from({ length: 10 }, () => t.api.wallet(key)));
  const funds = await Promise.all(wallets.map((w) => t.api.fund(key, w, '1000')));
  await Promise.all(funds.map((f) => t.api.waitTerminal(key, f.body.id)));

  // Each wallet always pays the same other wallet ((7i + 3) mod 10 is a permutation with no fixed
  // point), so money circulates in cycles, amounts up to 600 against balances of 1000. Wallet 0 pays
  // 600 more each time: it sends 30,000 more than it can ever hold, so some of its transfers must
  // fail for funds whatever order settlement takes (without it, an order exists where all succeed).
  const submitted = await Promise.all(
    Array.from({ length: 500 }, (_, i) => {
      const from = i % 10;
      const amount = 1 + ((i * 37) % 600) + (from === 0 ? 600 : 0);
      return t.api.transfer(key, wallets[from]!, wallets[(i * 7 + 3) % 10]!, String(amount));
    }),
  );
  expect(submitted.every((r) => r.status === 202)).toBe(true);
  const ops = await Promise.all(submitted.map((r) => t.api.waitTerminal(key, r.body.id, 60_000)));

  const succeeded = ops.filter((o) => o.status === 'succeeded');
  const failed = ops.filter((o) => o.status === 'failed');
  expect(succeeded.length + failed.length).toBe(500);
  expect(failed.length).toBeGreaterThan(0);
  expect(failed.every((o) => o.failure.code === 'insufficient_funds')).toBe(true);

  const balances = await Promise.all(wallets.map(async (w) => BigInt((await t.api.request('GET', `/v1/wallets/${w}`, { key })).body.balance)));
  expect(balances.reduce((a, b) => a + b, 0n)).toBe(10_000n);
  expect(balances.every((b) => b >= 0n)).toBe(true);
  expect(await ledgerViolations(t.pool)).toEqual([]);

  const withEntries = await t.pool.query(
    `SELECT DISTINCT operation_id FROM ledger_entries WHERE operation_id = ANY($1::uuid[])`,
    [ops.map((o) => o.id)],
  );
  expect(new Set(withEntries.rows.map((r) => r.operation_id))).toEqual(new Set(succeeded.map((o) => o.id)));
});
