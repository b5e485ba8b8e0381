/**
 * A private world per test file: its own database, Redis key prefix (queues included) and
 * Kafka topic, with the real API, worker and relay wired exactly as in production.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Redis } from 'ioredis';
import { parseConfig, type Config } from '../../src/config.ts';
import { migrateDatabase } from '../../src/db/migrate.ts';
import { startApi, type RunningApi } from '../../src/api/start-api.ts';
import { startWorker } from '../../src/workers/start-worker.ts';
import { startRelay } from '../../src/events/start-relay.ts';
import { createLogger } from '../../src/infra/logger.ts';
import { nodeFlagsFor } from '../../src/infra/node-flags.ts';
import { startGatewaySim, type RunningGatewaySim } from '../../src/gateway-sim/start-gateway-sim.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ENTRIES = {
  api: 'src/api/server.ts',
  worker: 'src/workers/main.ts',
  relay: 'src/events/relay-main.ts',
} as const;
const PG_BASE = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';

export interface TestEnv {
  config: Config;
  env: Record<string, string>;
  /** The first (control) database. */
  pool: pg.Pool;
  /** Every shard database, in SHARD_DATABASE_URLS order. */
  pools: pg.Pool[];
  redis: Redis;
  baseUrl: string;
  /** The in-process API's HTTP server (its request listener is the express app). */
  apiServer: import('node:http').Server;
  api: ApiClient;
  /** This world's payment gateway simulator (in-process, ephemeral port; GATEWAY_URL points at it). */
  gateway: RunningGatewaySim;
  startWorker: () => { close: () => Promise<void> };
  startRelay: () => { close: () => Promise<void> };
  /** A worker in its own OS process, for crash tests. */
  spawnWorker: (extraEnv?: Record<string, string>) => ChildProcess;
  /** Any process of the service in its own OS process, with this world's environment. */
  spawnProcess: (entry: keyof typeof ENTRIES, extraEnv?: Record<string, string>) => ChildProcess;
  close: () => Promise<void>;
}

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface ApiClient {
  request<T = any>(
    method: string,
    path: string,
    options?: { body?: unknown; rawBody?: string; key?: string; idempotencyKey?: string; headers?: Record<string, string> },
  ): Promise<ApiResponse<T>>;
  adminKey(name?: string): Promise<string>;
  wallet(key: string, currency?: string): Promise<string>;
  fund(key: string, walletId: string, amount: string, idempotencyKey?: string): Promise<ApiResponse>;
  transfer(key: string, from: string, to: string, amount: string, idempotencyKey?: string): Promise<ApiResponse>;
  waitTerminal(key: string, operationId: string, timeoutMs?: number): Promise<any>;
  /** waitTerminal for many operations, at most 32 long polls at once (as a well-behaved client would). */
  waitAllTerminal(key: string, operationIds: readonly string[], timeoutMs?: number): Promise<any[]>;
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

export function makeApiClient(baseUrl: string): ApiClient {
  const client: ApiClient = {
    async request(method, path, options = {}) {
      const headers: Record<string, string> = { ...(options.headers ?? {}) };
      if (options.key) headers.authorization = `Bearer ${options.key}`;
      if (options.idempotencyKey !== undefined) headers['idempotency-key'] = options.idempotencyKey;
      let body: string | undefined;
      if (options.rawBody !== undefined) body = options.rawBody;
      else if (options.body !== undefined) body = JSON.stringify(options.body);
      if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
        headers['content-type'] = 'application/json';
      }
      const res = await fetch(`${baseUrl}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // leave as text
      }
      return { status: res.status, headers: res.headers, body: parsed as any };
    },
    async adminKey(name = 'test-client') {
      const res = await client.request('POST', '/admin/api-keys', {
        body: { name },
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      if (res.status !== 201) throw new Error(`api key: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.key as string;
    },
    async wallet(key, currency = 'USD') {
      const res = await client.request('POST', '/v1/wallets', { key, body: { currency } });
      if (res.status !== 201) throw new Error(`wallet: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.id as string;
    },
    fund(key, walletId, amount, idempotencyKey = uniqueName('fund')) {
      return client.request('POST', `/v1/wallets/${walletId}/fund`, { key, idempotencyKey, body: { amount } });
    },
    transfer(key, from, to, amount, idempotencyKey = uniqueName('tr')) {
      return client.request('POST', '/v1/transfers', {
        key,
        idempotencyKey,
        body: { fromWalletId: from, toWalletId: to, amount },
      });
    },
    async waitAllTerminal(key, operationIds, timeoutMs = 60_000) {
      const out: any[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(32, operationIds.length) }, async () => {
          while (next < operationIds.length) {
            const i = next++;
            out[i] = await client.waitTerminal(key, operationIds[i]!, timeoutMs);
          }
        }),
      );
      return out;
    },
    async waitTerminal(key, operationId, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const res = await client.request('GET', `/v1/operations/${operationId}?wait=5`, { key });
        if (res.status !== 200) throw new Error(`operation: ${res.status} ${JSON.stringify(res.body)}`);
        if (res.body.status === 'succeeded' || res.body.status === 'failed') return res.body;
        if (Date.now() > deadline) throw new Error(`operation ${operationId} still ${res.body.status}`);
      }
    },
  };
  return client;
}

export interface TestEnvOptions {
  /** Start a worker in-process (default true). */
  worker?: boolean;
  /** Start the outbox relay in-process (default false). */
  relay?: boolean;
  redisUrl?: string;
  /** Physical shard databases (default 1). */
  databases?: number;
  env?: Record<string, string>;
  /**
   * Keep the production rate-limit defaults (10/50/100/1000 per hour). Otherwise every class
   * allows 10^6 per hour, because most suites send hundreds of requests with one key.
   */
  realRateLimits?: boolean;
}

const HIGH_RATE_LIMITS = {
  RATE_LIMIT_CREATE_WALLET: '1000000',
  RATE_LIMIT_FUND: '1000000',
  RATE_LIMIT_TRANSFER: '1000000',
  RATE_LIMIT_READ: '1000000',
  RATE_LIMIT_WEBHOOKS: '1000000',
};

export async function createTestEnv(options: TestEnvOptions = {}): Promise<TestEnv> {
  const base = uniqueName('ll_test');
  const dbNames = Array.from({ length: options.databases ?? 1 }, (_, i) => (i === 0 ? base : `${base}_s${i}`));
  const urls = dbNames.map((name) => `${PG_BASE}/${name}`);
  const tag = randomBytes(4).toString('hex');
  const gateway = await startGatewaySim({ port: 0 });
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    PORT: '0',
    ADMIN_TOKEN,
    DATABASE_URL: urls[0]!,
    SHARD_DATABASE_URLS: urls.join(','),
    REDIS_URL: options.redisUrl ?? 'redis://127.0.0.1:6379',
    REDIS_PREFIX: `lltest:${tag}`,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:19092',
    KAFKA_TOPIC: `lltest.${tag}.events`,
    // Several worlds share one server (max_connections 100): keep each world's pools small.
    PG_POOL_MAX: (options.databases ?? 1) > 1 ? '3' : '6',
    WORKER_LOCK_DURATION_MS: '5000',
    WORKER_STALLED_INTERVAL_MS: '2000',
    RECONCILE_INTERVAL_MS: '1000',
    RECONCILE_PENDING_AFTER_MS: '3000',
    RELAY_POLL_INTERVAL_MS: '50',
    GATEWAY_URL: gateway.url,
    ...(options.realRateLimits ? {} : HIGH_RATE_LIMITS),
    ...options.env,
  };
  const config = parseConfig(env);
  await Promise.all(urls.map((url) => migrateDatabase(url)));
  const logger = createLogger(config, 'test');
  const api: RunningApi = await startApi(config, logger);
  const baseUrl = `http://127.0.0.1:${api.port}`;
  const closers: (() => Promise<void>)[] = [];
  const children = new Set<ChildProcess>();
  const start = (f: typeof startWorker) => () => {
    const running = f(config, logger);
    closers.push(running.close);
    return running;
  };
  if (options.worker ?? true) start(startWorker)();
  if (options.relay) start(startRelay)();

  const pools = urls.map((url) => new pg.Pool({ connectionString: url, max: 3 }));
  for (const p of pools) p.on('error', () => {}); // DROP DATABASE ... FORCE at close ends its sessions
  const pool = pools[0]!;
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });

  const self: TestEnv = {
    config,
    env,
    pool,
    pools,
    redis,
    baseUrl,
    apiServer: api.server,
    api: makeApiClient(baseUrl),
    gateway,
    startWorker: start(startWorker),
    startRelay: start(startRelay),
    spawnWorker(extraEnv = {}) {
      return self.spawnProcess('worker', extraEnv);
    },
    spawnProcess(entry, extraEnv = {}) {
      const child = spawn(process.execPath, [...nodeFlagsFor(ENTRIES[entry]), '--import', 'tsx', ENTRIES[entry]], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', ...env, ...extraEnv },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      // Keep the last log lines (and keep the pipe drained so the child never blocks on it).
      const lines: string[] = [];
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        lines.push(...chunk.split('\n').filter(Boolean));
        if (lines.length > 200) lines.splice(0, lines.length - 200);
      });
      (child as ChildProcess & { logLines: string[] }).logLines = lines;
      children.add(child);
      child.on('exit', () => children.delete(child));
      return child;
    },
    async close() {
      for (const child of children) child.kill('SIGKILL');
      await api.close();
      for (const close of closers.reverse()) await close().catch(() => {});
      await gateway.close();
      await Promise.all(pools.map((p) => p.end()));
      const keys = await redis.keys(`${config.REDIS_PREFIX}:*`).catch(() => [] as string[]);
      if (keys.length > 0) await redis.del(...keys).catch(() => {});
      redis.disconnect();
      const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
      await admin.connect();
      for (const name of dbNames) await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    },
  };
  return self;
}

/** Checks that hold in each database on its own, whatever moved between databases. */
async function databaseViolations(pool: pg.Pool): Promise<string[]> {
  const problems: string[] = [];
  const neg = await pool.query(`SELECT id FROM wallets WHERE kind = 'customer' AND (balance < 0 OR balance - held < 0)`);
  if (neg.rowCount) problems.push(`negative balances: ${neg.rows.map((r) => r.id).join(', ')}`);
  const mismatch = await pool.query(`
    SELECT w.id FROM wallets w LEFT JOIN ledger_entries e ON e.wallet_id = w.id
    WHERE w.kind = 'customer' GROUP BY w.id HAVING w.balance <> COALESCE(SUM(e.amount), 0)`);
  if (mismatch.rowCount) problems.push(`balance != sum of entries: ${JSON.stringify(mismatch.rows.map((r) => r.id))}`);
  const total = await pool.query(`SELECT COALESCE(SUM(amount), 0) AS total FROM ledger_entries`);
  if (BigInt(total.rows[0].total) !== 0n) problems.push(`entries do not sum to zero: ${total.rows[0].total}`);
  return problems;
}

/** Books check of one database holding every operation's entries (no shards moved). */
export async function ledgerViolations(pool: pg.Pool): Promise<string[]> {
  const problems = await databaseViolations(pool);
  const unbalancedOps = await pool.query(`
    SELECT operation_id FROM ledger_entries GROUP BY operation_id HAVING SUM(amount) <> 0 OR COUNT(*) <> 2`);
  if (unbalancedOps.rowCount) problems.push(`operations with unbalanced entries: ${unbalancedOps.rowCount}`);
  const entriesVsStatus = await pool.query(`
    SELECT o.id FROM operations o LEFT JOIN ledger_entries e ON e.operation_id = o.id
    GROUP BY o.id HAVING (o.status = 'succeeded') <> (COUNT(e.seq) = 2) OR (o.status <> 'succeeded' AND COUNT(e.seq) > 0)`);
  if (entriesVsStatus.rowCount) problems.push(`succeeded operations are not exactly those with entries: ${entriesVsStatus.rowCount}`);
  return problems;
}

/** Which of `n` databases holds a wallet or operation id (the router's rule, restated). */
export const databaseIndexOf = (id: string, n: number) => Math.floor((Number.parseInt(id.slice(0, 2), 16) * n) / 256);

/**
 * Books check over every shard database: each database's own books, plus what only holds
 * across them once every operation is terminal: clearing nets to zero, no hold is left, and a
 * destination credit exists exactly for the cross-shard transfers that succeeded.
 */
export async function systemViolations(pools: pg.Pool[]): Promise<string[]> {
  const problems: string[] = [];
  for (const [i, pool] of pools.entries()) problems.push(...(await databaseViolations(pool)).map((p) => `db${i}: ${p}`));
  // Per operation, over all databases: entries sum to zero; succeeded operations have two
  // entries (one database) or four (cross-shard: two per side); failed ones none.
  const sums = new Map<string, { sum: bigint; n: number }>();
  const statuses = new Map<string, string>();
  for (const pool of pools) {
    for (const r of (await pool.query(`SELECT operation_id, SUM(amount)::text AS s, COUNT(*)::int AS n FROM ledger_entries GROUP BY 1`)).rows) {
      const acc = sums.get(r.operation_id) ?? { sum: 0n, n: 0 };
      sums.set(r.operation_id, { sum: acc.sum + BigInt(r.s), n: acc.n + r.n });
    }
    for (const r of (await pool.query(`SELECT id, status FROM operations`)).rows) statuses.set(r.id, r.status);
  }
  const unbalanced = [...sums].filter(([, v]) => v.sum !== 0n);
  if (unbalanced.length > 0) problems.push(`operations whose entries do not sum to zero: ${unbalanced.length}`);
  for (const [id, status] of statuses) {
    const n = sums.get(id)?.n ?? 0;
    if (status === 'succeeded' ? n !== 2 && n !== 4 : n !== 0) problems.push(`operation ${id} is ${status} with ${n} entries`);
  }
  let clearing = 0n;
  const credited = new Set<string>();
  const succeeded = new Set<string>();
  const crossShard = new Set<string>();
  for (const pool of pools) {
    const c = await pool.query(`SELECT COALESCE(SUM(e.amount), 0) AS s FROM ledger_entries e JOIN wallets w ON w.id = e.wallet_id WHERE w.kind = 'clearing'`);
    clearing += BigInt(c.rows[0].s);
    const held = await pool.query(`SELECT COUNT(*)::int AS n FROM wallets WHERE held <> 0`);
    if (held.rows[0].n > 0) problems.push(`holds left behind: ${held.rows[0].n}`);
    for (const r of (await pool.query(`SELECT operation_id FROM saga_credits WHERE outcome = 'credited'`)).rows) credited.add(r.operation_id);
    for (const r of (await pool.query(`SELECT s.operation_id, o.status FROM transfer_sagas s JOIN operations o ON o.id = s.operation_id`)).rows) {
      crossShard.add(r.operation_id);
      if (r.status === 'succeeded') succeeded.add(r.operation_id);
    }
  }
  if (clearing !== 0n) problems.push(`clearing accounts do not net to zero: ${clearing}`);
  const mismatched = [...crossShard].filter((id) => credited.has(id) !== succeeded.has(id));
  if (mismatched.length > 0) problems.push(`cross-shard credits disagree with outcomes: ${mismatched.join(', ')}`);
  return problems;
}


/** Resolves when a spawned process has logged a line containing `message` (pino JSON). */
export async function waitForLog(child: ChildProcess, message: string, timeoutMs = 30_000): Promise<void> {
  const lines = (child as ChildProcess & { logLines?: string[] }).logLines ?? [];
  const deadline = Date.now() + timeoutMs;
  while (!lines.some((l) => l.includes(`"msg":"${message}"`))) {
    if (Date.now() > deadline) throw new Error(`no "${message}" in the child's log`);
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`child exited before "${message}"`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
