/**
 * Fault tests: workers killed with SIGKILL mid-load (also between the settling commit and the
 * job's completion), and Redis wiped with FLUSHALL under load. Every accepted operation must
 * still end terminal, and no money may move twice.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createTestEnv, ledgerViolations, type TestEnv } from './support/env.ts';
import { startRedisServer } from './support/processes.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function fundedWallets(t: TestEnv, key: string, n: number, amount: string): Promise<string[]> {
  const wallets = await Promise.all(Array.from({ length: n }, () => t.api.wallet(key)));
  const funds = await Promise.all(wallets.map((w) => t.api.fund(key, w, amount)));
  await Promise.all(funds.map((f) => t.api.waitTerminal(key, f.body.id, 60_000)));
  return wallets;
}

/** Submits `n` transfers in waves, returning the ids of the accepted ones. */
async function submitTransfers(t: TestEnv, key: string, wallets: string[], n: number, onWave?: (wave: number) => Promise<void>) {
  const accepted: string[] = [];
  const waves = 10;
  for (let wave = 0; wave < waves; wave++) {
    await onWave?.(wave);
    const batch = await Promise.all(
      Array.from({ length: n / waves }, (_, i) => {
        const k = wave * 1000 + i;
        const from = wallets[k % wallets.length]!;
        const to = wallets[(k + 1 + (k % 3)) % wallets.length]!;
        return t.api.transfer(key, from, to, String(1 + (k % 250)));
      }),
    );
    for (const r of batch) {
      expect([202, 503]).toContain(r.status);
      if (r.status === 202) accepted.push(r.body.id);
    }
    await sleep(100);
  }
  return accepted;
}

async function expectBooksSound(t: TestEnv, key: string, wallets: string[], total: bigint, accepted: string[]) {
  const ops = await t.api.waitAllTerminal(key, accepted, 90_000);
  expect(ops.every((o) => o.status === 'succeeded' || o.status === 'failed')).toBe(true);
  const balances = await Promise.all(wallets.map(async (w) => BigInt((await t.api.request('GET', `/v1/wallets/${w}`, { key })).body.balance)));
  expect(balances.reduce((a, b) => a + b, 0n)).toBe(total);
  expect(await ledgerViolations(t.pool)).toEqual([]);
  const events = await t.pool.query(`SELECT operation_id, COUNT(*)::int AS n FROM outbox WHERE operation_id = ANY($1::uuid[]) GROUP BY 1`, [accepted]);
  expect(events.rowCount).toBe(accepted.length);
  expect(events.rows.every((r) => r.n === 1)).toBe(true);
}

describe('worker killed with SIGKILL mid-load', () => {
  let t: TestEnv;
  afterAll(() => t?.close());

  it('every accepted operation ends terminal and money moves once', async () => {
    t = await createTestEnv({ worker: false });
    const key = await t.api.adminKey();
    // A supervisor restarts workers that die, like a process manager would. Half of them
    // SIGKILL themselves right after a settling commit, before the job is marked complete.
    let stopping = false;
    let deaths = 0;
    const live = new Set<ChildProcess>();
    const launch = (faulty: boolean) => {
      const child = t.spawnWorker(faulty ? { FAULT_INJECTION: 'after-settle:0.03' } : {});
      live.add(child);
      child.on('exit', () => {
        live.delete(child);
        deaths++;
        if (!stopping) launch(faulty);
      });
    };
    launch(true);
    launch(false);

    const wallets = await fundedWallets(t, key, 8, '5000');
    const accepted = await submitTransfers(t, key, wallets, 300, async (wave) => {
      if (wave % 3 === 1) for (const child of live) child.kill('SIGKILL'); // external kills too
    });
    await expectBooksSound(t, key, wallets, 40_000n, accepted);
    stopping = true;
    for (const child of live) child.kill('SIGTERM');
    expect(deaths).toBeGreaterThanOrEqual(3);
  }, 180_000);
});

describe('Redis FLUSHALL under load', () => {
  let t: TestEnv;
  let redisServer: ChildProcess | undefined;
  afterAll(async () => {
    await t?.close();
    redisServer?.kill('SIGTERM');
  });

  it('loses no accepted operation: the reconciler re-enqueues from Postgres', async () => {
    // A private Redis server: FLUSHALL must not touch the other test files' state.
    const server = await startRedisServer();
    redisServer = server.child;
    const probe = new Redis(server.url, { maxRetriesPerRequest: null });
    t = await createTestEnv({ redisUrl: server.url });
    const key = await t.api.adminKey();
    const wallets = await fundedWallets(t, key, 8, '5000');
    let flushed = 0;
    const accepted = await submitTransfers(t, key, wallets, 300, async (wave) => {
      if (wave === 3 || wave === 7) {
        await probe.flushall();
        flushed++;
      }
    });
    expect(flushed).toBe(2);
    await expectBooksSound(t, key, wallets, 40_000n, accepted);
    probe.disconnect();
  }, 180_000);
});
