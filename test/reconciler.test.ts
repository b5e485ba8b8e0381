/**
 * The reconciler under a backlog: transfers still queued in a `settle-batch` job have no job of
 * their own, and must not be enqueued again when they are older than RECONCILE_PENDING_AFTER_MS;
 * transfers whose batch job is gone (Redis lost it) must be. No worker runs here until the end,
 * so the backlog stays put while the reconciler looks at it.
 */
import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { findStaleOpenOperations, type StaleCursor } from '../src/db/repositories/operations.ts';
import { ShardRouter } from '../src/db/shard-router.ts';
import { createLogger } from '../src/infra/logger.ts';
import { createSettlementQueue } from '../src/jobs/catalog.ts';
import { queuedBatchOperations, reconcileOnce } from '../src/workers/reconciler.ts';
import { createTestEnv, ledgerViolations, type TestEnv } from './support/env.ts';

let t: TestEnv;
let shards: ShardRouter;
let queue: Queue;
const logger = createLogger({ LOG_LEVEL: 'silent' }, 'test');

beforeAll(async () => {
  t = await createTestEnv({ worker: false });
  shards = ShardRouter.open(t.config, 'reconciler-test');
  queue = createSettlementQueue(t.config, t.redis);
});
afterAll(async () => {
  await queue?.close();
  await shards?.close();
  await t?.close();
});

/** Accepts `n` transfers in one POST /v1/transfers/batch (one settle-batch job); their ids. */
async function queuedTransfers(key: string, from: string, to: string, n: number): Promise<string[]> {
  const transfers = Array.from({ length: n }, () => ({ fromWalletId: from, toWalletId: to, amount: '1', idempotencyKey: randomUUID() }));
  const res = await t.api.request('POST', '/v1/transfers/batch', { key, body: { transfers } });
  expect(res.status).toBe(202);
  return (res.body.operations as { id: string }[]).map((o) => o.id);
}

it('leaves transfers queued in a batch job to it, and re-enqueues those whose batch job was lost', async () => {
  const key = await t.api.adminKey();
  const [a, b] = [await t.api.wallet(key), await t.api.wallet(key)];
  // A worker settles the fund, then stops: the transfers below stay queued.
  const funder = t.startWorker();
  const fund = await t.api.fund(key, a, '1000');
  await t.api.waitTerminal(key, fund.body.id, 30_000);
  await funder.close();
  const kept = await queuedTransfers(key, a, b, 30);
  const lost = await queuedTransfers(key, a, b, 20);
  const batches = (await queue.getJobs(['waiting'])).filter((j) => j.name === 'settle-batch');
  expect(batches).toHaveLength(2);
  expect(await queuedBatchOperations(queue)).toEqual(new Set([...kept, ...lost]));

  // Pages of stale operations follow each other (each batch's operations share one timestamp,
  // in microseconds): a cursor that lost precision handed the same page back until 20,000.
  const paged: string[] = [];
  for (let after: StaleCursor | undefined; ; ) {
    const page = await findStaleOpenOperations(shards.databases[0]!.db, new Date(), 7, after);
    if (page.length === 0) break;
    paged.push(...page.map((o) => o.id));
    expect(paged.length).toBeLessThanOrEqual(50);
    after = page.at(-1);
  }
  expect(new Set(paged)).toEqual(new Set([...kept, ...lost]));

  // Every one is older than "0 ms": before, each was enqueued a second time (50 jobs for nothing).
  expect(await reconcileOnce(shards, queue, 0, logger)).toBe(0);
  expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 2 });

  // Redis loses the second batch's job: its transfers get jobs of their own, the others still none.
  await batches.find((j) => (j.data as { operationIds: string[] }).operationIds.includes(lost[0]!))!.remove();
  expect(await reconcileOnce(shards, queue, 0, logger)).toBe(lost.length);
  for (const id of lost) expect(await queue.getJob(id)).toBeDefined();
  for (const id of kept) expect(await queue.getJob(id)).toBeUndefined();
  expect(await reconcileOnce(shards, queue, 0, logger)).toBe(0);

  // A worker settles them all, once each.
  t.startWorker();
  const ids = [...kept, ...lost];
  for (const until = Date.now() + 30_000; ; ) {
    const { rows } = await t.pool.query(`SELECT count(*)::int AS n FROM operations WHERE id = ANY($1::uuid[]) AND status = 'succeeded'`, [ids]);
    if (rows[0].n === ids.length) break;
    expect(Date.now()).toBeLessThan(until);
    await new Promise((r) => setTimeout(r, 100));
  }
  const entries = await t.pool.query(`SELECT count(*)::int AS n FROM ledger_entries WHERE operation_id = ANY($1::uuid[])`, [ids]);
  expect(entries.rows[0].n).toBe(2 * ids.length);
  expect(await ledgerViolations(t.pool)).toEqual([]);
}, 60_000);

it('reads every queued batch job (their ids in one MULTI, so none shifts out of view), oldest first', async () => {
  // A queue of its own: no worker, nothing else in it.
  const own = createSettlementQueue({ ...t.config, REDIS_PREFIX: `${t.config.REDIS_PREFIX}:own` }, t.redis);
  try {
    const jobs = Array.from({ length: 250 }, (_, i) => {
      const operationIds = [randomUUID(), randomUUID()];
      return { name: 'settle-batch' as const, data: { operationId: operationIds[0]!, operationIds }, opts: { jobId: `batch-${String(i).padStart(3, '0')}` } };
    });
    await own.addBulk(jobs.slice(0, 240));
    for (const job of jobs.slice(240)) await own.add(job.name, job.data, { ...job.opts, delay: 60_000 });
    await own.add('settle-transfer', { operationId: randomUUID() }, { jobId: randomUUID() }); // not a batch: not read
    expect(await queuedBatchOperations(own)).toEqual(new Set(jobs.flatMap((j) => j.data.operationIds)));
    // Capped: the oldest jobs first (the delayed ones, due later, come after the waiting ones).
    expect(await queuedBatchOperations(own, 100)).toEqual(new Set(jobs.slice(0, 100).flatMap((j) => j.data.operationIds)));
  } finally {
    await own.obliterate({ force: true });
    await own.close();
  }
});
