/**
 * `npm run bench`: throughput and latency of Ledgerline against plain Postgres, in one run on
 * this machine. Phases:
 *   accept      closed loop at the API (workers stopped): maximum 202/s, fills the queue
 *   settle      workers started: how fast the queued transfers drain (settlement throughput)
 *   bulk        workers running, POST /v1/transfers/batch of 1,000 from 4 clients: submit → terminal
 *   end to end  workers running, closed loop at the API: submit → terminal throughput at our maximum
 *               (the best over the --connections sweep, as for baseline 1)
 *   fixed-rate  workers running, half that maximum as a fixed arrival rate: accept and end-to-end latency
 *   baseline 1  a synchronous express + pg endpoint, one transaction per request (its best over the sweep)
 *   baseline 2  the same ledger transaction in a tight pg loop at 8 connections
 * then checks the books and writes bench/results/<stamp>.{json,md,svg}.
 * Options: --duration s --rate n --wallets n --skew uniform|hot --api n --workers n --connections n[,n...] (default 32,64)
 *          --no-flush (earlier phases' dirty pages are not written out before each timed phase: flushWrites)
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import cliProgress from 'cli-progress';
import pg from 'pg';
import { createLedgerlineAdminClient, createLedgerlineClient } from '../src/client/ledgerline-client.ts';
import { transferOnce } from './baselines/ledger-transaction.ts';
import { cpuSnapshot, cpuSpent, watchOutsiders } from './cpu.ts';
import { anyOpen, BENCH_TOPIC, freshDatabase, pairPicker, seedOpeningBalances, TUNABLES, waitHttp } from './ledger-setup.ts';
import { openLoop, percentile } from './open-loop.ts';
import { nodeFlagsFor } from '../src/infra/node-flags.ts';
import { readHistogram, serverLatency, type Buckets } from './server-latency.ts';

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    rate: { type: 'string', default: '0' },
    wallets: { type: 'string', default: '1000' },
    skew: { type: 'string', default: 'uniform' },
    api: { type: 'string', default: '1' },
    workers: { type: 'string', default: '1' },
    connections: { type: 'string', default: '32,64' },
    // Leaves earlier phases' dirty pages to the kernel (as before flushWrites), to measure what they cost.
    'no-flush': { type: 'boolean', default: false },
  },
});
const DURATION = Number(opt.duration);
const WALLETS = Number(opt.wallets);
const SKEW = opt.skew === 'hot' ? 'hot' : 'uniform';
const APIS = Number(opt.api);
const WORKERS = Number(opt.workers);
// The closed loops compared with each other (end to end, the synchronous baseline) run at every
// one of these and keep their best: a maximum is the rate at the concurrency that saturates that
// system, and the two do not saturate at the same one. The accept phase runs at the first.
const SWEEP = opt.connections.split(',').map(Number).filter((n) => n > 0);
if (SWEEP.length === 0) throw new Error('--connections: one or more positive numbers, comma-separated');
const CONNECTIONS = SWEEP[0]!;
const PG = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const DB = 'ledgerline_bench';
const BASE_DB = 'ledgerline_bench_baseline';
const ADMIN = `bench-admin-${randomUUID()}`;
const ROOT = new URL('..', import.meta.url).pathname;

const bar = new cliProgress.SingleBar({ format: '{phase} |{bar}| {percentage}% {info}' }, cliProgress.Presets.shades_classic);
const children: ChildProcess[] = [];
const log = (line: string) => process.stderr.write(`${line}\n`);

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    ADMIN_TOKEN: ADMIN,
    DATABASE_URL: `${PG}/${DB}`,
    REDIS_PREFIX: `bench:${process.pid}`,
    KAFKA_TOPIC: BENCH_TOPIC,
    PG_POOL_MAX: '20',
    ...TUNABLES,
    ...extra,
  };
}

function start(entry: string, extra: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [...nodeFlagsFor(entry), '--import', 'tsx', entry], { cwd: ROOT, env: env(extra), stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const pct = (sorted: number[], p: number) => percentile(sorted, p) ?? 0;
/** `{ p50, p95, …, max }` of sorted latencies, rounded to 0.1 ms. */
const roundedPercentiles = (sorted: number[], ps: readonly number[]) => ({
  ...Object.fromEntries(ps.map((p) => [`p${p}`, round1(pct(sorted, p))])),
  max: round1(sorted.at(-1) ?? 0),
});

/** A transfer body: uniform, or hot (10 % of wallets take 90 % of transfers). */
function picker(wallets: string[]) {
  const pair = pairPicker(wallets, SKEW === 'hot');
  return () => {
    const { from, to } = pair();
    return { fromWalletId: from, toWalletId: to, amount: String(1 + Math.floor(Math.random() * 100)) };
  };
}

interface LoadResult {
  requests: number;
  ok: number;
  rps: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
}

async function drive(
  phase: string,
  urls: string[],
  path: string,
  headers: Record<string, string>,
  body: () => object,
  options: { connections: number; rate?: number; okStatus: number },
): Promise<LoadResult> {
  bar.start(DURATION, 0, { phase, info: '' });
  const tick = setInterval(() => bar.increment(1), 1000);
  const results = await Promise.all(
    urls.map(
      (url) =>
        autocannon({
          url,
          connections: Math.max(1, Math.floor(options.connections / urls.length)),
          duration: DURATION,
          ...(options.rate ? { overallRate: Math.max(1, Math.floor(options.rate / urls.length)) } : {}),
          requests: [
            {
              method: 'POST',
              path,
              setupRequest: (req) => ({
                ...req,
                headers: { ...headers, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
                body: JSON.stringify(body()),
              }),
            },
          ],
        }) as Promise<autocannon.Result>,
    ),
  );
  clearInterval(tick);
  bar.update(DURATION, { info: 'done' });
  bar.stop();
  const requests = results.reduce((s, r) => s + r.requests.total, 0);
  const ok = results.reduce((s, r) => s + (r.statusCodeStats?.[String(options.okStatus) as '200']?.count ?? 0), 0);
  const worst = (k: 'p50' | 'p97_5' | 'p99' | 'max') => Math.max(...results.map((r) => r.latency[k]));
  return {
    requests,
    ok,
    rps: ok / DURATION,
    latencyMs: { p50: worst('p50'), p95: worst('p97_5'), p99: worst('p99'), max: worst('max') },
  };
}

async function waitSettled(db: pg.Pool): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (!(await anyOpen(db))) return;
    await sleep(100);
  }
}

/**
 * Before a timed phase: the previous phase's events are all published (the relay is idle), and
 * its writes are on disk (flushWrites).
 */
async function waitQuiet(db: pg.Pool): Promise<void> {
  await waitSettled(db);
  for (let i = 0; i < 600; i++) {
    if (!(await db.query(`SELECT EXISTS (SELECT 1 FROM outbox WHERE sent_at IS NULL) AS unsent`)).rows[0].unsent) break;
    await sleep(100);
  }
  flushWrites();
}

/** Dirty page-cache bytes, from /proc/meminfo (0 where there is none). */
function dirtyBytes(): number {
  const kb = /^Dirty:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

/**
 * Before a timed phase: what earlier phases wrote is on disk, so the kernel does not write it
 * back during this one. Postgres 15 extends a table by writing zero pages to the page cache and
 * leaves them there until a checkpoint; the kernel writes dirty pages back once they are 30 s
 * old (vm.dirty_expire_centisecs), in bursts. The fixed-rate phase, 30–60 s after the bulk and
 * end-to-end phases, inherited 130–170 MB of them, and its accept p99 was lower without them
 * (README, Benchmark). At the default --duration every phase is shorter than 30 s, so each pays
 * only for what it writes itself.
 */
function flushWrites(): void {
  if (opt['no-flush']) return;
  const dirty = dirtyBytes();
  const t0 = Date.now();
  execFileSync('sync');
  log(`flushed ${(dirty / 2 ** 20).toFixed(0)} MB of dirty pages in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

const BULK_SIZE = 1000;
const BULK_CLIENTS = 4;

/** Closed loop of POST /v1/transfers/batch (BULK_SIZE transfers each) from BULK_CLIENTS clients. */
async function driveBulk(urls: string[], headers: Record<string, string>, pick: () => object) {
  bar.start(DURATION, 0, { phase: `bulk (${BULK_CLIENTS} clients x ${BULK_SIZE})`, info: '' });
  const tick = setInterval(() => bar.increment(1), 1000);
  const until = Date.now() + DURATION * 1000;
  const latencies: number[] = [];
  let accepted = 0;
  let refused = 0;
  await Promise.all(
    Array.from({ length: BULK_CLIENTS }, async (_, c) => {
      while (Date.now() < until) {
        const transfers = Array.from({ length: BULK_SIZE }, () => ({ ...pick(), idempotencyKey: randomUUID() }));
        const t0 = performance.now();
        const res = await fetch(`${urls[c % urls.length]}/v1/transfers/batch`, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ transfers }),
        });
        await res.arrayBuffer();
        latencies.push(performance.now() - t0);
        if (res.status === 202) accepted += BULK_SIZE;
        else refused++;
      }
    }),
  );
  clearInterval(tick);
  bar.update(DURATION, { info: 'done' });
  bar.stop();
  latencies.sort((a, b) => a - b);
  return {
    batches: latencies.length,
    refusedBatches: refused,
    accepted,
    acceptPerSecond: accepted / DURATION,
    batchLatencyMs: { p50: Math.round(pct(latencies, 50)), p99: Math.round(pct(latencies, 99)), max: Math.round(latencies.at(-1) ?? 0) },
  };
}

async function main(): Promise<void> {
  execFileSync('bash', ['scripts/services.sh'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  log('preparing databases');
  await freshDatabase(PG, DB);
  await freshDatabase(PG, BASE_DB);
  const db = new pg.Pool({ connectionString: `${PG}/${DB}`, max: 4 });

  const ports = Array.from({ length: APIS }, (_, i) => 3700 + i);
  const apis = ports.map((port) => start('src/api/server.ts', { PORT: String(port) }));
  const relay = start('src/events/relay-main.ts');
  await Promise.all(ports.map((p) => waitHttp(`http://127.0.0.1:${p}/healthz`)));
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);

  // Setup goes through the typed client (src/client), like any integrator's code.
  const { data: created } = await createLedgerlineAdminClient({ baseUrl: urls[0]!, adminToken: ADMIN }).apiKeys.create({
    name: 'bench',
    rateLimits: { createWallet: 1e9, fund: 1e9, transfer: 1e9, read: 1e9, webhooks: 1e9 },
  });
  const { key, id: clientId } = created;
  const auth = { authorization: `Bearer ${key}` };
  const client = createLedgerlineClient({ baseUrl: urls[0]!, apiKey: key });

  log(`creating ${WALLETS} wallets`);
  const wallets: string[] = [];
  for (let i = 0; i < WALLETS; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, WALLETS - i) }, () => client.wallets.create({ currency: 'USD' })));
    wallets.push(...batch.map((w) => w.data.id));
  }
  // Seed balances directly (no workers yet): a fund per wallet, settled by the first worker run.
  const seed = 1_000_000_000n;
  await seedOpeningBalances(db, seed);
  const pick = picker(wallets);

  // CPU that processes outside the bench take from here to the last baseline, if any, is named
  // in the report: with it the ratios compare two different machines.
  const outsiders = watchOutsiders();

  // 1. Accept at the maximum rate, workers stopped: the queue fills.
  flushWrites();
  const acceptCpu = cpuSnapshot();
  const accept = await drive('accept (closed loop)', urls, '/v1/transfers', auth, pick, { connections: CONNECTIONS, okStatus: 202 });
  const acceptCpuSpent = cpuSpent(acceptCpu, cpuSnapshot());
  const queued = Number((await db.query(`SELECT COUNT(*) FROM operations WHERE status = 'pending'`)).rows[0].count);

  // 2. Settlement: start the workers with the queue paused, and time the drain from the moment
  //    they are all connected and the queue resumes (process start-up is not settlement).
  const queue = new Queue('settlement', { connection: { host: '127.0.0.1', port: 6379 }, prefix: env({}).REDIS_PREFIX! });
  await queue.pause();
  const workers = Array.from({ length: WORKERS }, () => start('src/workers/main.ts'));
  for (let i = 0; i < 300 && (await queue.getWorkers()).length < WORKERS; i++) await sleep(100);
  flushWrites();
  await queue.resume();
  const t0 = Date.now();
  bar.start(queued, 0, { phase: 'settle (drain)', info: '' });
  // Polled cheaply (anyOpen); the progress bar's count, which scans the open operations, every 2 s.
  for (let polls = 0; await anyOpen(db); polls++) {
    if (polls % 20 === 19) {
      const open = Number((await db.query(`SELECT COUNT(*) FROM operations WHERE status IN ('pending', 'processing')`)).rows[0].count);
      bar.update(queued - open, { info: `${queued - open}/${queued}` });
    }
    await sleep(100);
  }
  bar.update(queued, { info: `${queued}/${queued}` });
  bar.stop();
  const settleSeconds = (Date.now() - t0) / 1000;
  const settle = { operations: queued, seconds: settleSeconds, perSecond: queued / settleSeconds };
  await queue.close();

  // 3. Bulk: POST /v1/transfers/batch of BULK_SIZE transfers from 4 concurrent clients,
  //    workers running; throughput is operations from the first accept to the last terminal.
  await waitQuiet(db);
  const bulkStart = new Date();
  const bulkCpu = cpuSnapshot();
  const bulk = await driveBulk(urls, auth, pick);
  await waitSettled(db);
  const bulkCpuSpent = cpuSpent(bulkCpu, cpuSnapshot());
  const bulkResult = { ...bulk, cpuSeconds: bulkCpuSpent, ...(await throughputSince(db, bulkStart)) };

  // 4. End to end at our maximum: closed loop with the workers running; throughput is
  //    operations from the first accept to the last terminal.
  const endToEndSweep = [];
  for (const connections of SWEEP) {
    await waitQuiet(db);
    const closedStart = new Date();
    const closedCpu = cpuSnapshot();
    const closed = await drive(`end to end (closed loop, ${connections} connections)`, urls, '/v1/transfers', auth, pick, { connections, okStatus: 202 });
    await sleep(1000); // requests the load generator abandoned at its deadline finish their accept
    await waitSettled(db);
    const cpuSeconds = cpuSpent(closedCpu, cpuSnapshot());
    endToEndSweep.push({ connections, accept: closed, cpuSeconds, ...(await throughputSince(db, closedStart)) });
  }
  const endToEnd = endToEndSweep.reduce((best, run) => (run.perSecond > best.perSecond ? run : best));
  const closed = endToEnd.accept;

  // 5. Fixed arrival rate at half that maximum: accept latency and submit → terminal latency.
  const rate = Number(opt.rate) || Math.max(50, Math.floor(closed.rps / 2));
  await waitQuiet(db);
  const phaseStart = new Date();
  bar.start(DURATION, 0, { phase: `fixed rate ${rate}/s (open loop)`, info: '' });
  const fixedTick = setInterval(() => bar.increment(1), 1000);
  // The APIs' first /metrics answer is slow (~0.1 s of lazy compilation and first collections,
  // on the event loop): had the reading at the start of the measured window been the first, its
  // stall would have counted against the phase. Prometheus keeps that path warm in production.
  await readHistogram(urls, 'POST', '/v1/transfers');
  let histogramBefore: Buckets = new Map();
  const open = await openLoop({
    urls,
    rate,
    durationSeconds: DURATION,
    warmupSeconds: 2,
    onMeasure: async () => {
      histogramBefore = await readHistogram(urls, 'POST', '/v1/transfers');
    },
    request: () => ({
      path: '/v1/transfers',
      headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
      body: JSON.stringify(pick()),
    }),
  });
  clearInterval(fixedTick);
  bar.stop();
  // Read before the APIs stop; requests still in flight at the end are left out.
  const server = serverLatency(histogramBefore, await readHistogram(urls, 'POST', '/v1/transfers'));
  const fixed = {
    server,
    worstPerSecondMs: open.perSecond.map((x) => x.maxMs),
    sent: open.sent,
    ok: open.statuses['202'] ?? 0,
    statuses: open.statuses,
    errors: open.errors,
    errorKinds: open.errorKinds,
    latencyMs: roundedPercentiles(open.latenciesMs, [50, 95, 99]),
    // The load generator's own lateness (already inside every latency above): how far its sends
    // trailed their schedule, so its stalls can be told from the API's.
    sendLatenessMs: roundedPercentiles(open.sendLatenessMs, [50, 99]),
  };
  // Requests still in flight when the load generator stops are answered by a graceful stop of
  // the APIs; only then is "no open operations" final.
  for (const c of apis) await stop(c);
  await waitSettled(db);
  const e2eRows = (
    await db.query<{ ms: number }>(
      `SELECT EXTRACT(EPOCH FROM (completed_at - created_at)) * 1000 AS ms FROM operations WHERE created_at >= $1 AND completed_at IS NOT NULL ORDER BY 1`,
      [phaseStart],
    )
  ).rows.map((r) => Number(r.ms));
  const e2e = {
    ...(await throughputSince(db, phaseStart)),
    latencyMs: { p50: pct(e2eRows, 50), p95: pct(e2eRows, 95), p99: pct(e2eRows, 99), max: e2eRows.at(-1) ?? 0 },
  };

  for (const c of [...workers, relay]) await stop(c);

  // The books: a fast wrong run is a failed run.
  const books = await db.query(`
    SELECT
      (SELECT COUNT(*) FROM wallets WHERE kind = 'customer' AND balance < 0) AS negative,
      (SELECT COUNT(*) FROM (SELECT w.id FROM wallets w LEFT JOIN ledger_entries e ON e.wallet_id = w.id WHERE w.kind = 'customer'
         GROUP BY w.id HAVING w.balance <> COALESCE(SUM(e.amount), 0)) x) AS mismatched,
      (SELECT COALESCE(SUM(amount), 0) FROM ledger_entries) AS total,
      (SELECT COALESCE(SUM(balance), 0) FROM wallets WHERE kind = 'customer') AS held,
      (SELECT COUNT(*) FROM operations WHERE status IN ('pending', 'processing')) AS open`);
  const b = books.rows[0];
  const booksOk = Number(b.negative) === 0 && Number(b.mismatched) === 0 && BigInt(b.total) === 0n && BigInt(b.held) === seed * BigInt(WALLETS) && Number(b.open) === 0;
  await db.end();

  // Baselines on a copy of the schema with the same wallets.
  const base = new pg.Pool({ connectionString: `${PG}/${BASE_DB}`, max: 30 });
  await base.query(`INSERT INTO clients (id, name) VALUES ($1, 'bench')`, [clientId]);
  await base.query(`INSERT INTO wallets (id, kind, client_id, currency, balance) SELECT id, 'customer', $1, 'USD', $2 FROM unnest($3::uuid[]) id`, [
    clientId,
    seed.toString(),
    wallets,
  ]);
  const sync = spawn(process.execPath, ['--import', 'tsx', 'bench/baselines/sync-server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, DATABASE_URL: `${PG}/${BASE_DB}`, PORT: '3799', CLIENT_ID: clientId },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(sync);
  await sleep(1500);
  const baseline1Sweep = [];
  for (const connections of SWEEP) {
    flushWrites();
    const baseline1Cpu = cpuSnapshot();
    const run = await drive(`baseline 1: sync express+pg, ${connections} connections`, ['http://127.0.0.1:3799'], '/transfer', {}, pick, { connections, okStatus: 200 });
    // Shows that nothing of ours (a late autovacuum, the relay) took CPU from the baseline.
    baseline1Sweep.push({ connections, ...run, cpuSeconds: cpuSpent(baseline1Cpu, cpuSnapshot()) });
  }
  const baseline1 = baseline1Sweep.reduce((best, run) => (run.rps > best.rps ? run : best));
  await stop(sync);

  flushWrites();
  bar.start(DURATION, 0, { phase: 'baseline 2: pg loop x8', info: '' });
  const until = Date.now() + DURATION * 1000;
  let loopCount = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      const client = await base.connect();
      while (Date.now() < until) {
        const t = pick();
        await transferOnce(client, { clientId, from: t.fromWalletId, to: t.toWalletId, amount: BigInt(t.amount) }).then(
          () => loopCount++,
          () => {},
        );
        if (loopCount % 500 === 0) bar.update(Math.min(DURATION, DURATION - (until - Date.now()) / 1000));
      }
      client.release();
    }),
  );
  bar.update(DURATION);
  bar.stop();
  await base.end();
  const baseline2 = { transactions: loopCount, perSecond: loopCount / DURATION };
  const outsideCpuSeconds = outsiders.stop();

  const report = {
    at: new Date().toISOString(),
    machine: { cores: (await import('node:os')).cpus().length, node: process.version },
    options: { duration: DURATION, wallets: WALLETS, skew: SKEW, api: APIS, workers: WORKERS, connections: SWEEP, rate, flushBetweenPhases: !opt['no-flush'], ...TUNABLES },
    accept: { ...accept, cpuSeconds: acceptCpuSpent },
    settle,
    endToEnd,
    // Every concurrency of the sweep, the best of which is above.
    endToEndSweep: endToEndSweep.map((x) => ({ connections: x.connections, perSecond: x.perSecond, acceptRps: x.accept.rps, acceptLatencyMs: x.accept.latencyMs })),
    fixedRate: { rate, accept: fixed, endToEnd: e2e },
    bulk: bulkResult,
    baseline1,
    baseline1Sweep: baseline1Sweep.map((x) => ({ connections: x.connections, rps: x.rps, latencyMs: x.latencyMs })),
    baseline2,
    ratios: {
      settlementVsPlainPostgres: settle.perSecond / baseline2.perSecond,
      endToEndVsSynchronous: endToEnd.perSecond / baseline1.rps,
      acceptVsSynchronous: accept.rps / baseline1.rps,
      bulkVsPlainPostgres: bulkResult.perSecond / baseline2.perSecond,
    },
    /** CPU seconds processes outside the bench took during its timed phases (≥ 0.5 s each). */
    outsideCpuSeconds,
    books: { ok: booksOk, negative: Number(b.negative), mismatched: Number(b.mismatched), total: String(b.total), open: Number(b.open) },
  };
  writeReport(report);
  if (!booksOk) process.exitCode = 1;
}

/** Operations created since `since`, and their rate from the first accept to the last terminal. */
async function throughputSince(db: pg.Pool, since: Date): Promise<{ operations: number; perSecond: number }> {
  const span = await db.query(
    `SELECT EXTRACT(EPOCH FROM (MAX(completed_at) - MIN(created_at))) AS s, COUNT(*) AS n FROM operations WHERE created_at >= $1`,
    [since],
  );
  const operations = Number(span.rows[0].n);
  return { operations, perSecond: operations / Number(span.rows[0].s) };
}

/** "; the best of 32: 2,900 /s, 64: 3,400 /s" for a sweep of more than one concurrency. */
function sweepNote(sweep: any[] | undefined, rateOf: (x: any) => number): string {
  if (!sweep || sweep.length < 2) return '';
  return `; the best of ${sweep.map((x) => `${x.connections}: ${Math.round(rateOf(x))} /s`).join(', ')}`;
}

/** The throughput targets of the group-commit work, checked on every run. */
function targets(r: any): { name: string; measured: string; met: boolean }[] {
  const x = (n: number) => `${n.toFixed(2)}×`;
  return [
    { name: 'settlement ≥ 2.5× plain Postgres', measured: x(r.ratios.settlementVsPlainPostgres), met: r.ratios.settlementVsPlainPostgres >= 2.5 },
    { name: 'end to end ≥ 3× synchronous', measured: x(r.ratios.endToEndVsSynchronous), met: r.ratios.endToEndVsSynchronous >= 3 },
    {
      name: 'accept p99 < 25 ms at half the maximum rate',
      measured: `${r.fixedRate.accept.latencyMs.p99} ms`,
      met: r.fixedRate.accept.latencyMs.p99 < 25,
    },
    { name: 'bulk ≥ 5× plain Postgres', measured: x(r.ratios.bulkVsPlainPostgres), met: r.ratios.bulkVsPlainPostgres >= 5 },
    ...(r.options.skew === 'hot'
      ? [{ name: 'hot wallets: settlement ≥ 2× plain Postgres on the same skew', measured: x(r.ratios.settlementVsPlainPostgres), met: r.ratios.settlementVsPlainPostgres >= 2 }]
      : []),
  ];
}

const cpuLine = (spent: { process: string; seconds: number }[] | undefined) =>
  (spent ?? []).map((x) => `${x.process} ${x.seconds.toFixed(1)}`).join(' · ');

/** The report's warning when processes outside the bench took CPU during its timed phases. */
function disturbed(outside: { process: string; seconds: number }[] | undefined): string {
  if (!outside?.length) return '';
  return `\n\n**Disturbed:** processes outside the bench took CPU during its timed phases (${cpuLine(outside)} CPU seconds): its phases did not share the machine alike, so this run's ratios are not comparable with others. Run it again on a quiet machine.`;
}

function writeReport(r: any): void {
  mkdirSync(new URL('results/', import.meta.url), { recursive: true });
  const stamp = r.at.replace(/[:.]/g, '-');
  const base = new URL(`results/${stamp}-${r.options.skew}`, import.meta.url).pathname;
  writeFileSync(`${base}.json`, JSON.stringify(r, null, 2));
  const f = (n: number) => n.toFixed(n >= 100 ? 0 : 1);
  const bars: [string, number][] = [
    ['accept 202/s', r.accept.rps],
    ['settle /s', r.settle.perSecond],
    ['end-to-end /s', r.endToEnd.perSecond],
    ['bulk /s', r.bulk.perSecond],
    ['sync express+pg /s', r.baseline1.rps],
    ['pg loop x8 /s', r.baseline2.perSecond],
  ];
  const max = Math.max(...bars.map((x) => x[1]));
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="${40 + bars.length * 34}" font-family="sans-serif" font-size="13">`,
    `<text x="10" y="20" font-weight="bold">Ledgerline bench ${r.at} (${r.options.skew}, ${r.machine.cores} cores)</text>`,
    ...bars.map(([label, v], i) => {
      const y = 36 + i * 34;
      const w = Math.max(2, (v / max) * 400);
      return `<text x="10" y="${y + 17}">${label}</text><rect x="170" y="${y + 4}" width="${w}" height="20" fill="#4a7fb5"/><text x="${175 + w}" y="${y + 19}">${f(v)}</text>`;
    }),
    '</svg>',
  ].join('\n');
  writeFileSync(`${base}.svg`, svg);
  const md = `# Bench ${r.at}

Machine: ${r.machine.cores} cores, Node ${r.machine.node}. Options: ${JSON.stringify(r.options)}.

![chart](./${stamp}-${r.options.skew}.svg)

**Headline:** settlement ${f(r.ratios.settlementVsPlainPostgres)}× plain Postgres (pg loop at 8 connections); bulk ${f(r.ratios.bulkVsPlainPostgres)}× it; end to end ${f(r.ratios.endToEndVsSynchronous)}× the synchronous express + pg endpoint; accept ${f(r.ratios.acceptVsSynchronous)}× it.${disturbed(r.outsideCpuSeconds)}

| target | measured | met |
|---|---|---|
${targets(r)
  .map((t) => `| ${t.name} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`)
  .join('\n')}

| measure | value |
|---|---|
| accept (closed loop, ${[r.options.connections].flat()[0]} connections, workers stopped) | ${f(r.accept.rps)} 202/s; p50 ${r.accept.latencyMs.p50} ms, p99 ${r.accept.latencyMs.p99} ms |
| settlement (drain of ${r.settle.operations} queued transfers, ${r.options.workers} workers) | ${f(r.settle.perSecond)} /s (${f(r.settle.seconds)} s) |
| end to end at our maximum (closed loop, ${r.endToEnd.connections} connections, workers running${sweepNote(r.endToEndSweep, (x: any) => x.perSecond)}) | ${f(r.endToEnd.perSecond)} /s submit → terminal (${r.endToEnd.operations} transfers); accept ${f(r.endToEnd.accept.rps)} 202/s, p50 ${r.endToEnd.accept.latencyMs.p50} ms, p99 ${r.endToEnd.accept.latencyMs.p99} ms |
| accept at a fixed ${r.fixedRate.rate}/s (half of that maximum; open loop, evenly spaced, latency from the scheduled send, after 2 s of warm-up at that rate) | ${r.fixedRate.accept.ok}/${r.fixedRate.accept.sent} answered 202${r.fixedRate.accept.errors ? ` (${r.fixedRate.accept.errors} failed before an answer: ${JSON.stringify(r.fixedRate.accept.errorKinds)})` : ''}; p50 ${r.fixedRate.accept.latencyMs.p50} ms, p95 ${r.fixedRate.accept.latencyMs.p95} ms, p99 ${r.fixedRate.accept.latencyMs.p99} ms, max ${r.fixedRate.accept.latencyMs.max} ms${r.fixedRate.accept.sendLatenessMs ? ` (of which the load generator sent late by p50 ${r.fixedRate.accept.sendLatenessMs.p50}, p99 ${r.fixedRate.accept.sendLatenessMs.p99}, max ${r.fixedRate.accept.sendLatenessMs.max} ms)` : ''} |
| the same requests as the API saw them (its \`http_request_duration_seconds\`, request in → response out, bucket bounds) | ${r.fixedRate.accept.server.requests} requests; p50 ≤ ${r.fixedRate.accept.server.p50AtMostMs} ms, p99 ≤ ${r.fixedRate.accept.server.p99AtMostMs} ms; ${r.fixedRate.accept.server.within.filter((w: { ms: number; percent: number }) => w.ms >= 10 && w.ms <= 100).map((w: { ms: number; percent: number }) => `${w.percent} % within ${w.ms} ms`).join(', ')} |
| end to end (submit → terminal) at that rate | ${f(r.fixedRate.endToEnd.perSecond)} /s; p50 ${f(r.fixedRate.endToEnd.latencyMs.p50)} ms, p95 ${f(r.fixedRate.endToEnd.latencyMs.p95)} ms, p99 ${f(r.fixedRate.endToEnd.latencyMs.p99)} ms, max ${f(r.fixedRate.endToEnd.latencyMs.max)} ms |
| bulk: POST /v1/transfers/batch, ${BULK_CLIENTS} clients × ${BULK_SIZE} transfers, workers running | ${f(r.bulk.perSecond)} /s submit → terminal (${r.bulk.operations} transfers, ${r.bulk.batches} batches, ${r.bulk.refusedBatches} refused); accept ${f(r.bulk.acceptPerSecond)} /s, batch p50 ${r.bulk.batchLatencyMs.p50} ms, p99 ${r.bulk.batchLatencyMs.p99} ms |
| baseline 1: synchronous express + pg, one transaction per request (${r.baseline1.connections} connections${sweepNote(r.baseline1Sweep, (x: any) => x.rps)}) | ${f(r.baseline1.rps)} /s; p50 ${r.baseline1.latencyMs.p50} ms, p99 ${r.baseline1.latencyMs.p99} ms |
| baseline 2: the ledger transaction in a pg loop, 8 connections | ${f(r.baseline2.perSecond)} /s |
| books after the run | ${r.books.ok ? 'sound' : 'BROKEN'}: ${r.books.negative} negative balances, ${r.books.mismatched} balances ≠ entries, entries total ${r.books.total}, ${r.books.open} open operations |

CPU seconds by process over the accept phase (${r.options.duration} s, workers stopped):
${cpuLine(r.accept.cpuSeconds)}

CPU seconds by process over the bulk phase (${r.options.duration} s of load, then until the last transfer was terminal):
${cpuLine(r.bulk.cpuSeconds)}

CPU seconds by process over the end-to-end phase (${r.options.duration} s of load, then until the last transfer was terminal):
${cpuLine(r.endToEnd.cpuSeconds)}

CPU seconds by process over baseline 1 (${r.options.duration} s; our processes stopped, the API idle):
${cpuLine(r.baseline1.cpuSeconds)}

The closed-loop phases use autocannon (its p97.5 is not shown); the fixed-rate phase is an open
loop (bench/open-loop.ts) so a stall counts against every request it delays. Everything ran on the same machine at once
(API, workers, relay, Postgres, Redis, the Kafka mock and the load generator), so ratios are
the figures to compare, not absolute rates.
`;
  writeFileSync(`${base}.md`, md);
  log(`\n${md}\nwritten: ${base}.{json,md,svg}`);
}

main()
  .catch((err) => {
    log(String(err?.stack ?? err));
    process.exitCode = 1;
  })
  .finally(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  });
