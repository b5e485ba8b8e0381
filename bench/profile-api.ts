/**
 * Profiles one API process under the accept closed loop (workers stopped): writes a V8 CPU
 * profile and prints the functions and files that took the most self time. With `--rate N` it
 * drives the API with the open loop instead (bench/open-loop.ts) and prints its latencies; with
 * `--workers N` the workers and relay run too; `--profile worker` (or `relay`) profiles the
 * first worker (or the relay) instead of the API, `--profile no` none. With
 * `--bulk N` (workers needed) N clients post batches of 1,000 transfers for the duration, and it
 * prints transfers per second from the first accept to the last settlement.
 * Run: node --import tsx bench/profile-api.ts [--duration 10] [--connections 32] [--rate N] [--workers N] [--bulk N] [--profile api|worker|relay|no] [--warm seconds] [--node-flags=--perf-basic-prof]
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { createLedgerlineAdminClient, createLedgerlineClient } from '../src/client/ledgerline-client.ts';
import { cpuSnapshot, cpuSpent } from './cpu.ts';
import { anyOpen, BENCH_TOPIC, freshDatabase, pairPicker, seedOpeningBalances, TUNABLES, waitHttp } from './ledger-setup.ts';
import { openLoop, percentile } from './open-loop.ts';
import { nodeFlagsFor } from '../src/infra/node-flags.ts';

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    rate: { type: 'string', default: '0' },
    workers: { type: 'string', default: '0' },
    bulk: { type: 'string', default: '0' },
    profile: { type: 'string', default: 'yes' },
    // Seconds of closed-loop accept before the measured load (the API's code optimized, as after the bench's earlier phases).
    warm: { type: 'string', default: '0' },
    'node-flags': { type: 'string', default: '' },
  },
});
const PG = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
const DB = 'ledgerline_profile';
const ROOT = new URL('..', import.meta.url).pathname;
const DIR = '/tmp/ledgerline-profile';
const ADMIN = `admin-${randomUUID()}`;
const env = {
  PATH: process.env.PATH,
  NODE_ENV: 'production',
  LOG_LEVEL: 'warn',
  ADMIN_TOKEN: ADMIN,
  DATABASE_URL: `${PG}/${DB}`,
  REDIS_PREFIX: `profile:${process.pid}`,
  KAFKA_TOPIC: BENCH_TOPIC,
  PG_POOL_MAX: '20',
  PORT: '3790',
  ...TUNABLES,
};

execFileSync('bash', ['scripts/services.sh'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
await freshDatabase(PG, DB);
rmSync(DIR, { recursive: true, force: true });
mkdirSync(DIR, { recursive: true });
// `--node-flags=--perf-basic-prof`: the profiled process gets these flags instead of a V8 CPU
// profile (e.g. for `perf record -p <pid>`, which counts CPU time where V8's profile samples wall time).
const profilerFlags = opt['node-flags'] ? opt['node-flags'].split(' ').filter(Boolean) : ['--cpu-prof', `--cpu-prof-dir=${DIR}`];
const api = spawn(process.execPath, [...nodeFlagsFor('src/api/server.ts'), ...(opt.profile === 'yes' || opt.profile === 'api' ? profilerFlags : []), '--import', 'tsx', 'src/api/server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] });
const url = 'http://127.0.0.1:3790';
const others = Array.from({ length: Number(opt.workers) }, () => 'src/workers/main.ts');
if (others.length > 0) others.push('src/events/relay-main.ts');
// `--profile worker` or `--profile relay`: the first worker, or the relay, is profiled instead of the API.
const profiled = (entry: string, i: number) => (opt.profile === 'worker' && i === 0) || (opt.profile === 'relay' && entry.includes('relay'));
const helpers = others.map((entry, i) =>
  spawn(process.execPath, [...nodeFlagsFor(entry), ...(profiled(entry, i) ? profilerFlags : []), '--import', 'tsx', entry], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  }),
);
await waitHttp(`${url}/healthz`);
const { data: created } = await createLedgerlineAdminClient({ baseUrl: url, adminToken: ADMIN }).apiKeys.create({
  name: 'profile',
  rateLimits: { createWallet: 1e9, fund: 1e9, transfer: 1e9, read: 1e9, webhooks: 1e9 },
});
const client = createLedgerlineClient({ baseUrl: url, apiKey: created.key });
const wallets: string[] = [];
for (let i = 0; i < 200; i += 50) wallets.push(...(await Promise.all(Array.from({ length: 50 }, () => client.wallets.create({ currency: 'USD' })))).map((w) => w.data.id));
const db = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
await seedOpeningBalances(db, 1_000_000_000n);
await db.end();
const pair = pairPicker(wallets, false);
if (helpers.length > 0) await sleep(12_000); // the workers and relay start up (compile, connect) before the load
const transferRequest = () => {
  const { from, to } = pair();
  return {
    path: '/v1/transfers',
    headers: { authorization: `Bearer ${created.key}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
    body: JSON.stringify({ fromWalletId: from, toWalletId: to, amount: '1' }),
  };
};
if (Number(opt.warm) > 0) {
  await autocannon({ url, connections: 32, duration: Number(opt.warm), requests: [{ method: 'POST', path: '/v1/transfers', setupRequest: (req) => ({ ...req, ...transferRequest() }) }] });
  const check = new pg.Pool({ connectionString: env.DATABASE_URL, max: 1 });
  while (helpers.length > 0 && (await anyOpen(check))) await sleep(100);
  await check.end();
}
const before = cpuSnapshot();
if (Number(opt.rate) > 0) {
  const r = await openLoop({
    urls: [url],
    rate: Number(opt.rate),
    durationSeconds: Number(opt.duration),
    warmupSeconds: 2, // as in bench/run.ts
    request: transferRequest,
  });
  const at = (sorted: number[], p: number) => percentile(sorted, p)?.toFixed(1);
  const percentiles = (sorted: number[]) => `p50 ${at(sorted, 50)} p90 ${at(sorted, 90)} p99 ${at(sorted, 99)} max ${at(sorted, 100)} ms`;
  process.stderr.write(`open loop ${opt.rate}/s: ${JSON.stringify(r.statuses)} errors ${r.errors} ${JSON.stringify(r.errorKinds)}; ${percentiles(r.latenciesMs)}\n`);
  process.stderr.write(`  worst per second: ${r.perSecond.map((x) => x.maxMs).join(' ')}\n`);
  process.stderr.write(`  sent late by the generator: ${percentiles(r.sendLatenessMs)}\n`);
}
if (Number(opt.bulk) > 0) {
  const started = performance.now();
  const until = Date.now() + Number(opt.duration) * 1000;
  let accepted = 0;
  await Promise.all(
    Array.from({ length: Number(opt.bulk) }, async () => {
      while (Date.now() < until) {
        const transfers = Array.from({ length: 1000 }, () => {
          const { from, to } = pair();
          return { fromWalletId: from, toWalletId: to, amount: '1', idempotencyKey: randomUUID() };
        });
        const res = await fetch(`${url}/v1/transfers/batch`, {
          method: 'POST',
          headers: { authorization: `Bearer ${created.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ transfers }),
        });
        await res.arrayBuffer();
        if (res.status === 202) accepted += transfers.length;
      }
    }),
  );
  const check = new pg.Pool({ connectionString: env.DATABASE_URL, max: 1 });
  while (await anyOpen(check)) await sleep(100);
  await check.end();
  process.stderr.write(`bulk: ${accepted} transfers, ${(accepted / ((performance.now() - started) / 1000)).toFixed(0)}/s accept → settled\n`);
}
const result = Number(opt.rate) > 0 || Number(opt.bulk) > 0 ? undefined : await autocannon({
  url,
  connections: Number(opt.connections),
  duration: Number(opt.duration),
  requests: [
    {
      method: 'POST',
      path: '/v1/transfers',
      setupRequest: (req) => ({ ...req, ...transferRequest() }),
    },
  ],
});
process.stderr.write(`CPU seconds during the load: ${cpuSpent(before, cpuSnapshot()).map((x) => `${x.process} ${x.seconds.toFixed(1)}`).join(' · ')}\n`);
if (result) process.stderr.write(`accept: ${result.requests.average}/s, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, non2xx ${result.non2xx}\n`);
for (const h of helpers) h.kill('SIGTERM');
api.kill('SIGTERM');
await Promise.all([api, ...helpers].map((p) => new Promise((r) => p.once('exit', r))));

if (opt.profile === 'no' || opt['node-flags']) process.exit(0);

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount: number }
const file = readdirSync(DIR).find((f) => f.endsWith('.cpuprofile'))!;
const profile = JSON.parse(readFileSync(`${DIR}/${file}`, 'utf8')) as { nodes: Node[]; samples: number[] };
const total = profile.samples.length;
const byFn = new Map<string, number>();
const byFile = new Map<string, number>();
for (const n of profile.nodes) {
  const where = n.callFrame.url.replace(`file://${ROOT}`, '').replace(/.*node_modules\//, 'nm/');
  const fn = `${n.callFrame.functionName || '(anon)'} ${where}:${n.callFrame.lineNumber}`;
  byFn.set(fn, (byFn.get(fn) ?? 0) + n.hitCount);
  const pkg = where.startsWith('nm/') ? where.split('/').slice(0, where.startsWith('nm/@') ? 3 : 2).join('/') : where || n.callFrame.functionName;
  byFile.set(pkg, (byFile.get(pkg) ?? 0) + n.hitCount);
}
const top = (m: Map<string, number>, n: number) =>
  [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`).join('\n');
process.stdout.write(`profile ${DIR}/${file}, ${total} samples\n\nby package/file:\n${top(byFile, 30)}\n\nby function:\n${top(byFn, 40)}\n`);
