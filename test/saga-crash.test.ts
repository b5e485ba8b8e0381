/**
 * Workers killed with SIGKILL at each saga step in turn (FAULT_INJECTION, test builds only),
 * then replaced: every operation ends terminal and each step's effect happens exactly once.
 */
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestEnv, databaseIndexOf, systemViolations, type TestEnv } from './support/env.ts';

const DATABASES = 4;
let current: TestEnv | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

describe.each(['after-hold', 'after-credit', 'after-settle'])('worker killed %s', (point) => {
  it('resumes every saga and applies each step once', async () => {
    const t = await createTestEnv({ databases: DATABASES, worker: false });
    current = t;
    const key = await t.api.adminKey();
    const healthy = t.startWorker(); // funds the wallets, then steps aside
    const wallets: string[] = [];
    while (new Set(wallets.map((id) => databaseIndexOf(id, DATABASES))).size < DATABASES || wallets.length < 6) {
      wallets.push(await t.api.wallet(key));
    }
    const funds = await Promise.all(wallets.map((w) => t.api.fund(key, w, '1000')));
    const funded = await Promise.all(funds.map((f) => t.api.waitTerminal(key, f.body.id)));
    expect(funded.filter((o) => o.status !== 'succeeded')).toEqual([]);
    await healthy.close();

    const faulty = t.spawnWorker({ FAULT_INJECTION: `${point}:1` });
    // Twelve cross-database transfers spread over the sources, each source paying at most
    // 2 x ~110 of its 1000: all must succeed.
    const pairs = Array.from({ length: 12 }, (_, i) => {
      const a = wallets[i % wallets.length]!;
      const b = wallets.find((w) => databaseIndexOf(w, DATABASES) !== databaseIndexOf(a, DATABASES))!;
      return [a, b] as const;
    });
    const submitted = await Promise.all(pairs.map(([a, b], i) => t.api.transfer(key, a, b, String(100 + i))));
    const [, signal] = (await once(faulty, 'exit')) as [number | null, string | null];
    expect(signal).toBe('SIGKILL'); // it really died at the fault point

    t.startWorker();
    const ops = await Promise.all(submitted.map((r) => t.api.waitTerminal(key, r.body.id, 60_000)));
    const bad = ops.filter((o) => o.status !== 'succeeded');
    expect(bad).toEqual([]);
    const balances = await Promise.all(wallets.map(async (w) => BigInt((await t.api.request('GET', `/v1/wallets/${w}`, { key })).body.balance)));
    expect(balances.reduce((s, b) => s + b, 0n)).toBe(BigInt(wallets.length) * 1000n);
    for (const op of ops) {
      let entries = 0;
      for (const pool of t.pools) {
        entries += (await pool.query('SELECT COUNT(*)::int AS n FROM ledger_entries WHERE operation_id = $1', [op.id])).rows[0].n;
      }
      expect(entries).toBe(4); // source debit + clearing credit, clearing debit + destination credit
    }
    expect(await systemViolations(t.pools)).toEqual([]);
  }, 120_000);
});
