/**
 * `npm run bench:sweep`: settlement throughput of the workers alone over a grid of the group-commit
 * tunables, against the plain-Postgres loop measured in the same run. Each point: a fresh
 * database with WALLETS funded wallets and OPERATIONS pending transfers, queued either as one
 * job per operation (how the reconciler and funds enqueue) or as `settle-batch` jobs of
 * ACCEPT_GROUP (how the batched accept enqueues under load); the workers start with the queue
 * paused and the drain is timed from resume to the last terminal operation.
 * Writes bench/results/<stamp>-settlement-sweep.{json,md}; the figures behind the defaults.
 * Options: --operations n --wallets n --workers n --skew uniform|hot
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import pg from 'pg';
import { transferOnce } from './baselines/ledger-transaction.ts';
import { BENCH_TOPIC, freshDatabase, pairPicker, seedOpeningBalances } from './ledger-setup.ts';

const { values: opt } = parseArgs({
  options: {
    operations: { type: 'string', default: '10000' },
    wallets: { type: 'string', default: '1000' },
    workers: { type: 'string', default: '2' },
    skew: { type: 'string', default: 'uniform' },
  },
});
const OPERATIONS = Number(opt.operations);
const WALLETS = Number(opt.wallets);
const WORKERS = Number(opt.workers);
const HOT = opt.skew === 'hot';
const ACCEPT_GROUP = 16;
const PG = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const URL_ = `${PG}/ledgerline_sweep`;
const CLIENT = '00000000-0000-4000-8000-000000000001';
const ROOT = new URL('..', import.meta.url).pathname;
const log = (line: string) => process.stderr.write(`${line}\n`);

interface Point {
  jobs: 'single' | 'batch';
  WORKER_CONCURRENCY: number;
  SETTLE_BATCH_MAX: number;
  SETTLE_BATCH_LINGER_MS: number;
  SETTLE_BATCH_IN_FLIGHT: number;
}

const grid: Point[] = [];
for (const jobs of ['single', 'batch'] as const) {
  for (const WORKER_CONCURRENCY of [32, 128]) {
    for (const SETTLE_BATCH_MAX of [64, 256]) grid.push({ jobs, WORKER_CONCURRENCY, SETTLE_BATCH_MAX, SETTLE_BATCH_LINGER_MS: 2, SETTLE_BATCH_IN_FLIGHT: 2 });
  }
}
for (const SETTLE_BATCH_MAX of [512, 1024]) grid.push({ jobs: 'batch', WORKER_CONCURRENCY: 128, SETTLE_BATCH_MAX, SETTLE_BATCH_LINGER_MS: 2, SETTLE_BATCH_IN_FLIGHT: 2 });
grid.push({ jobs: 'batch', WORKER_CONCURRENCY: 128, SETTLE_BATCH_MAX: 256, SETTLE_BATCH_LINGER_MS: 0, SETTLE_BATCH_IN_FLIGHT: 2 });
grid.push({ jobs: 'batch', WORKER_CONCURRENCY: 128, SETTLE_BATCH_MAX: 256, SETTLE_BATCH_LINGER_MS: 2, SETTLE_BATCH_IN_FLIGHT: 1 });
grid.push({ jobs: 'batch', WORKER_CONCURRENCY: 128, SETTLE_BATCH_MAX: 256, SETTLE_BATCH_LINGER_MS: 2, SETTLE_BATCH_IN_FLIGHT: 4 });

async function freshLedger(): Promise<{ db: pg.Pool; wallets: string[]; ids: string[] }> {
  await freshDatabase(PG, 'ledgerline_sweep');
  const db = new pg.Pool({ connectionString: URL_, max: 8 });
  // The next point drops this database (WITH FORCE): a client still closing then reports it here.
  db.on('error', () => {});
  await db.query(`INSERT INTO clients (id, name) VALUES ($1, 'sweep')`, [CLIENT]);
  await db.query(`INSERT INTO wallets (id, kind, client_id, currency) SELECT gen_random_uuid(), 'customer', $1, 'USD' FROM generate_series(1, $2)`, [
    CLIENT,
    WALLETS,
  ]);
  await seedOpeningBalances(db, 1_000_000_000n);
  const wallets = (await db.query(`SELECT id FROM wallets WHERE kind = 'customer' ORDER BY id`)).rows.map((r) => r.id as string);
  const pick = pairPicker(wallets, HOT);
  const pairs = Array.from({ length: OPERATIONS }, pick);
  const { rows } = await db.query(
    `INSERT INTO operations (id, client_id, type, amount, currency, from_wallet_id, to_wallet_id, idempotency_key, request_hash)
     SELECT gen_random_uuid(), $1, 'transfer', 1 + (n % 100), 'USD', f, t, 'k' || n, 'h' FROM unnest($2::uuid[], $3::uuid[]) WITH ORDINALITY AS v(f, t, n)
     RETURNING id`,
    [CLIENT, pairs.map((p) => p.from), pairs.map((p) => p.to)],
  );
  return { db, wallets, ids: rows.map((r) => r.id as string) };
}

async function drain(point: Point): Promise<{ perSecond: number; seconds: number; transactions: number }> {
  const { db, ids } = await freshLedger();
  const prefix = `sweep:${process.pid}`;
  const queue = new Queue('settlement', { connection: { host: '127.0.0.1', port: 6379 }, prefix });
  await queue.obliterate({ force: true });
  await queue.pause();
  const jobs =
    point.jobs === 'batch'
      ? Array.from({ length: Math.ceil(ids.length / ACCEPT_GROUP) }, (_, i) => {
          const group = ids.slice(i * ACCEPT_GROUP, (i + 1) * ACCEPT_GROUP);
          return { name: 'settle-batch', data: { operationId: group[0], operationIds: group }, opts: { jobId: `b-${i}` } };
        })
      : ids.map((id) => ({ name: 'settle-transfer', data: { operationId: id }, opts: { jobId: id } }));
  for (let i = 0; i < jobs.length; i += 1000) await queue.addBulk(jobs.slice(i, i + 1000));
  const env = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'production',
    ADMIN_TOKEN: 'sweep-admin-token-0123456789',
    LOG_LEVEL: 'warn',
    DATABASE_URL: URL_,
    REDIS_PREFIX: prefix,
    KAFKA_TOPIC: BENCH_TOPIC,
    RECONCILE_PENDING_AFTER_MS: '600000',
    ...Object.fromEntries(Object.entries(point).filter(([k]) => k !== 'jobs').map(([k, v]) => [k, String(v)])),
  };
  const workers = Array.from({ length: WORKERS }, () =>
    spawn(process.execPath, ['--import', 'tsx', 'src/workers/main.ts'], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] }),
  );
  for (let i = 0; i < 300 && (await queue.getWorkers()).length < WORKERS; i++) await sleep(100);
  await queue.resume();
  const t0 = Date.now();
  for (;;) {
    const open = Number((await db.query(`SELECT COUNT(*) FROM operations WHERE status = 'pending'`)).rows[0].count);
    if (open === 0) break;
    await sleep(50);
  }
  const seconds = (Date.now() - t0) / 1000;
  const tx = await db.query(`SELECT COUNT(DISTINCT created_at)::int AS n FROM outbox`);
  await Promise.all(workers.map((w) => new Promise((r) => (w.kill('SIGTERM'), w.once('exit', r)))));
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  await db.end();
  return { perSecond: ids.length / seconds, seconds, transactions: tx.rows[0].n };
}

async function plainPostgres(seconds = 8): Promise<number> {
  const { db, wallets } = await freshLedger();
  const pick = pairPicker(wallets, HOT);
  const until = Date.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      const c = await db.connect();
      while (Date.now() < until) {
        const { from, to } = pick();
        await transferOnce(c, { clientId: CLIENT, from, to, amount: 1n }).then(() => n++, () => {});
      }
      c.release();
    }),
  );
  await db.end();
  return n / seconds;
}

async function main(): Promise<void> {
  const results: (Point & { perSecond: number; seconds: number; transactions: number })[] = [];
  const before = await plainPostgres();
  log(`plain Postgres (pg loop x8): ${before.toFixed(0)} /s`);
  for (const point of grid) {
    const r = await drain(point);
    log(`${JSON.stringify(point)} → ${r.perSecond.toFixed(0)} /s in ${r.transactions} transactions`);
    results.push({ ...point, ...r });
  }
  const after = await plainPostgres();
  log(`plain Postgres (pg loop x8) again: ${after.toFixed(0)} /s`);
  const baseline = (before + after) / 2;
  const at = new Date().toISOString();
  const stamp = at.replace(/[:.]/g, '-');
  mkdirSync(new URL('results/', import.meta.url), { recursive: true });
  const base = new URL(`results/${stamp}-settlement-sweep-${HOT ? 'hot' : 'uniform'}`, import.meta.url).pathname;
  writeFileSync(`${base}.json`, JSON.stringify({ at, options: { OPERATIONS, WALLETS, WORKERS, skew: HOT ? 'hot' : 'uniform' }, baseline: { before, after }, results }, null, 2));
  const md = `# Settlement sweep ${at}

${OPERATIONS} queued transfers among ${WALLETS} wallets (${HOT ? 'hot: 10 % of wallets take 90 %' : 'uniform'}), ${WORKERS} worker processes,
drained from a paused queue. Plain Postgres (the ledger transaction in a pg loop at 8 connections, same
skew) before and after: ${before.toFixed(0)} and ${after.toFixed(0)} /s; ratios use their mean.

| jobs | WORKER_CONCURRENCY | SETTLE_BATCH_MAX | LINGER_MS | IN_FLIGHT | settled /s | × plain Postgres | transactions |
|---|---|---|---|---|---|---|---|
${results
  .map(
    (r) =>
      `| ${r.jobs === 'batch' ? `settle-batch of ${ACCEPT_GROUP}` : 'one per operation'} | ${r.WORKER_CONCURRENCY} | ${r.SETTLE_BATCH_MAX} | ${r.SETTLE_BATCH_LINGER_MS} | ${r.SETTLE_BATCH_IN_FLIGHT} | ${r.perSecond.toFixed(0)} | ${(r.perSecond / baseline).toFixed(2)} | ${r.transactions} |`,
  )
  .join('\n')}
`;
  writeFileSync(`${base}.md`, md);
  log(`\n${md}\nwritten: ${base}.{json,md}`);
}

await main();
