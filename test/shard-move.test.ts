/**
 * `npm run shard:move` moves a logical shard to another database under load: clients keep
 * going (retrying 503s with the same Idempotency-Key), nothing is lost or doubled, and the
 * books of every database still balance.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { PoolClient } from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { moveShard, WRITERS_BARRIER } from '../src/db/shard-move.ts';
import { ShardRouter } from '../src/db/shard-router.ts';
import { startConsumerProcess } from '../src/events/consumers/start-consumer.ts';
import { createLogger } from '../src/infra/logger.ts';
import { createTestEnv, databaseIndexOf, systemViolations, uniqueName, type TestEnv } from './support/env.ts';

const DATABASES = 4;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
let t: TestEnv;
beforeAll(async () => {
  t = await createTestEnv({ databases: DATABASES, relay: true, env: { SHARD_MAP_REFRESH_MS: '200' } });
  t.startWorker();
});
afterAll(() => t?.close());

it('moves a shard under load; every operation ends terminal and the books balance', async () => {
  const key = await t.api.adminKey();
  const wallets = await Promise.all(Array.from({ length: 16 }, () => t.api.wallet(key)));
  const funds = await Promise.all(wallets.map((w) => t.api.fund(key, w, '10000')));
  await Promise.all(funds.map((f) => t.api.waitTerminal(key, f.body.id)));
  const moving = wallets[0]!;
  const shard = Number.parseInt(moving.slice(0, 2), 16);
  const from = databaseIndexOf(moving, DATABASES);
  const to = (from + 1) % DATABASES;

  // Load: transfers to and from the moving shard's wallet and among the others, plus funds.
  let stop = false;
  const accepted: string[] = [];
  let retried503 = 0;
  const client = async (n: number) => {
    for (let i = 0; !stop; i++) {
      const a = i % 3 === 0 ? moving : wallets[(n + i) % wallets.length]!;
      const b = i % 3 === 1 ? moving : wallets[(n + 2 * i + 1) % wallets.length]!;
      const idem = uniqueName('mv');
      for (let attempt = 0; attempt < 50; attempt++) {
        const res = a === b ? await t.api.fund(key, a, '7', idem) : await t.api.transfer(key, a, b, String(1 + (i % 50)), idem);
        if (res.status === 202) {
          accepted.push(res.body.id);
          break;
        }
        expect(res.status, JSON.stringify(res.body)).toBe(503); // the only refusal allowed: retry later
        retried503++;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const load = Promise.all([0, 1, 2, 3].map(client));
  load.catch(() => {}); // awaited below; failures surface there
  await new Promise((r) => setTimeout(r, 1500));

  const mover = spawn(process.execPath, ['--import', 'tsx', 'src/db/shard-move-main.ts', String(shard), String(to)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...t.env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  mover.stdout.on('data', (d) => (output += String(d)));
  mover.stderr.on('data', (d) => (output += String(d)));
  const [code] = (await once(mover, 'exit')) as [number];
  if (code !== 0) stop = true;
  expect(code, output).toBe(0);
  expect(output).toContain('shard move done');
  await new Promise((r) => setTimeout(r, 1500)); // load goes on against the new map
  stop = true;
  await load;

  const ops = await Promise.all(accepted.map((id) => t.api.waitTerminal(key, id, 60_000)));
  expect(ops.filter((o) => o.status !== 'succeeded' && o.status !== 'failed')).toEqual([]);
  expect(ops.filter((o) => o.status === 'failed' && o.failure.code !== 'insufficient_funds')).toEqual([]);
  expect(accepted.length).toBeGreaterThan(20);

  // The wallet lives in the target database only, and reads and writes reach it there.
  expect((await t.pools[to]!.query('SELECT 1 FROM wallets WHERE id = $1', [moving])).rowCount).toBe(1);
  expect((await t.pools[from]!.query('SELECT 1 FROM wallets WHERE id = $1', [moving])).rowCount).toBe(0);
  const after = await t.api.fund(key, moving, '1');
  expect((await t.api.waitTerminal(key, after.body.id)).status).toBe('succeeded');

  const all = await Promise.all([...funds.map((f) => f.body.id), ...accepted, after.body.id].map((id) => t.api.waitTerminal(key, id)));
  const fundedIn = all.filter((o) => o.type === 'fund' && o.status === 'succeeded').reduce((s, o) => s + BigInt(o.amount), 0n);
  const balances = await Promise.all(wallets.map(async (w) => BigInt((await t.api.request('GET', `/v1/wallets/${w}`, { key })).body.balance)));
  expect(balances.reduce((s, b) => s + b, 0n)).toBe(fundedIn);
  expect(await systemViolations(t.pools)).toEqual([]);
  console.log(`shard ${shard} moved ${from} -> ${to}; ${accepted.length} operations under load, ${retried503} retried 503s`);

  // A consumer started now reads the moved wallet in its new database: the webhooks consumer
  // finds its owner and makes the delivery (looked for in the old database, it would drop it).
  const endpoint = await t.api.request('POST', '/v1/webhook-endpoints', { key, body: { url: 'http://127.0.0.1:9/hook', events: ['wallet.funded'] } });
  expect(endpoint.status).toBe(201);
  const webhooks = await startConsumerProcess('webhooks', t.config, createLogger(t.config, 'shard-move-test'), { metricsServer: false });
  try {
    const deliveries = () => t.pool.query('SELECT 1 FROM webhook_deliveries WHERE endpoint_id = $1 AND body LIKE $2', [endpoint.body.id, `%${after.body.id}%`]);
    await expect.poll(async () => (await deliveries()).rowCount, { timeout: 30_000, interval: 250 }).toBe(1);
  } finally {
    await webhooks.close();
  }
}, 150_000);

/** A writer's session and the barrier's, in the shard database 0, rolled back and released after `fn`. */
async function withWriterAndBarrier(fn: (writer: PoolClient, barrier: () => Promise<{ done: Promise<unknown> }>) => Promise<void>): Promise<void> {
  const pool = t.pools[0]!;
  const writer = await pool.connect();
  const session = await pool.connect();
  // Starts the barrier in its own transaction; resolves once it waits for a lock the writer holds.
  const barrier = async () => {
    const pid = (await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    await session.query('BEGIN');
    const done = session.query(WRITERS_BARRIER).then(() => session.query('COMMIT')).then(() => 'locked', (err: unknown) => err);
    for (let i = 0; i < 100; i++) {
      const { rows } = await pool.query<{ w: string | null }>('SELECT wait_event_type AS w FROM pg_stat_activity WHERE pid = $1', [pid]);
      if (rows[0]?.w === 'Lock') return { done };
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('the barrier never waited for the writer');
  };
  try {
    await fn(writer, barrier);
  } finally {
    await writer.query('ROLLBACK').catch(() => {});
    await session.query('ROLLBACK').catch(() => {});
    writer.release();
    session.release();
  }
}

/** Takes `lock` in the writer's transaction: a deadlock with the barrier would take deadlock_timeout (1 s) to break. */
async function promptly(writer: PoolClient, lock: string): Promise<void> {
  const started = Date.now();
  await writer.query(lock);
  expect(Date.now() - started).toBeLessThan(900);
}

it('the barrier waits for an accept that holds idempotency_keys, and the accept goes on: no deadlock', () =>
  withWriterAndBarrier(async (accept, barrier) => {
    // The table locks of an accept statement, in its order: its key claim, then its operation.
    await accept.query('BEGIN');
    await accept.query('LOCK TABLE idempotency_keys IN ROW EXCLUSIVE MODE');
    const { done } = await barrier();
    // With the barrier holding operations already (wallets, operations, … order) this waited for
    // it while it waited for us, until Postgres's deadlock_timeout (1 s) failed one of the two.
    await promptly(accept, 'LOCK TABLE operations IN ROW EXCLUSIVE MODE');
    await accept.query('COMMIT');
    expect(await done).toBe('locked');
  }));

it("the barrier waits for a fund's gateway record, and the fund's step goes on: no deadlock", () =>
  withWriterAndBarrier(async (writer, barrier) => {
    // A charge record being written (recordApproved): the barrier waits for it to commit.
    await writer.query('BEGIN');
    await writer.query('LOCK TABLE gateway_charges IN ROW EXCLUSIVE MODE');
    let { done } = await barrier();
    await writer.query('COMMIT');
    expect(await done).toBe('locked');
    // A gateway step in its order (the operation, then its record) against the barrier: no deadlock.
    await writer.query('BEGIN');
    await writer.query('LOCK TABLE operations IN ROW EXCLUSIVE MODE');
    ({ done } = await barrier());
    await promptly(writer, 'LOCK TABLE gateway_charges IN ROW EXCLUSIVE MODE');
    await writer.query('COMMIT');
    expect(await done).toBe('locked');
  }));

it('one unfinished move per shard: two runs started together end with one move and balanced books', async () => {
  const key = await t.api.adminKey();
  const wallet = await t.api.wallet(key);
  await t.api.waitTerminal(key, (await t.api.fund(key, wallet, '2500')).body.id);
  const shard = Number.parseInt(wallet.slice(0, 2), 16);
  const to = (databaseIndexOf(wallet, DATABASES) + 1) % DATABASES;
  // A second open move of a shard is refused by the database itself…
  const { rows: open } = await t.pool.query(`SELECT COUNT(*)::int AS n FROM shard_moves WHERE state <> 'done'`);
  expect(open[0].n).toBe(0);
  await t.pool.query(`INSERT INTO shard_moves (id, logical_shard, from_database, to_database, state) VALUES (gen_random_uuid(), $1, 0, 1, 'copying')`, [shard]);
  await expect(
    t.pool.query(`INSERT INTO shard_moves (id, logical_shard, from_database, to_database, state) VALUES (gen_random_uuid(), $1, 0, 2, 'copying')`, [shard]),
  ).rejects.toThrow(/shard_moves_one_open_uq/);
  await t.pool.query(`DELETE FROM shard_moves WHERE logical_shard = $1 AND state <> 'done'`, [shard]);
  // …and two runs of the command at once: one moves the shard (the other resumes it or is refused).
  const logger = createLogger(t.config, 'shard-move-test');
  const routers = [ShardRouter.open(t.config, 'mv-a'), ShardRouter.open(t.config, 'mv-b')];
  try {
    const runs = await Promise.allSettled(routers.map((r) => moveShard(r, shard, to, logger)));
    expect(runs.some((r) => r.status === 'fulfilled'), runs.map((r) => (r.status === 'rejected' ? String(r.reason) : 'moved')).join('; ')).toBe(true);
    for (const r of runs) if (r.status === 'rejected') expect(String(r.reason)).toMatch(/at the same time|unfinished move|already lives/);
  } finally {
    await Promise.all(routers.map((r) => r.close()));
  }
  const moves = await t.pool.query(`SELECT state FROM shard_moves WHERE logical_shard = $1 AND to_database = $2`, [shard, to]);
  expect(moves.rows.map((r) => r.state)).toEqual(['done']);
  expect((await t.pools[to]!.query('SELECT balance::text FROM wallets WHERE id = $1', [wallet])).rows[0]?.balance).toBe('2500');
  expect(await systemViolations(t.pools)).toEqual([]);
}, 60_000);
