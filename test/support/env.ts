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
  pool: pg.Pool;
  redis: Redis;
  baseUrl: string;
  /** The in-process API's HTTP server (its request listener is the express app). */
  apiServer: import('node:http').Server;
  api: ApiClient;
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
};

export async function createTestEnv(options: TestEnvOptions = {}): Promise<TestEnv> {
  const dbName = uniqueName('ll_test');
  const tag = randomBytes(4).toString('hex');
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    PORT: '0',
    ADMIN_TOKEN,
    DATABASE_URL: `${PG_BASE}/${dbName}`,
    REDIS_URL: options.redisUrl ?? 'redis://127.0.0.1:6379',
    REDIS_PREFIX: `lltest:${tag}`,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:19092',
    KAFKA_TOPIC: `lltest.${tag}.events`,
    PG_POOL_MAX: '10',
    WORKER_LOCK_DURATION_MS: '5000',
    WORKER_STALLED_INTERVAL_MS: '2000',
    RECONCILE_INTERVAL_MS: '1000',
    RECONCILE_PENDING_AFTER_MS: '3000',
    RELAY_POLL_INTERVAL_MS: '50',
    ...(options.realRateLimits ? {} : HIGH_RATE_LIMITS),
    ...options.env,
  };
  const config = parseConfig(env);
  await migrateDatabase(config.DATABASE_URL);
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

  const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 4 });
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });

  const self: TestEnv = {
    config,
    env,
    pool,
    redis,
    baseUrl,
    apiServer: api.server,
    api: makeApiClient(baseUrl),
    startWorker: start(startWorker),
    startRelay: start(startRelay),
    spawnWorker(extraEnv = {}) {
      return self.spawnProcess('worker', extraEnv);
    },
    spawnProcess(entry, extraEnv = {}) {
      const child = spawn(process.execPath, ['--import', 'tsx', ENTRIES[entry]], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', ...env, ...extraEnv },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      children.add(child);
      child.on('exit', () => children.delete(child));
      return child;
    },
    async close() {
      for (const child of children) child.kill('SIGKILL');
      await api.close();
      for (const close of closers.reverse()) await close().catch(() => {});
      await pool.end();
      const keys = await redis.keys(`${config.REDIS_PREFIX}:*`).catch(() => [] as string[]);
      if (keys.length > 0) await redis.del(...keys).catch(() => {});
      redis.disconnect();
      const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
      await admin.end();
    },
  };
  return self;
}

/** Books check straight from SQL: returns the violations found (empty when the ledger is sound). */
export async function ledgerViolations(pool: pg.Pool): Promise<string[]> {
  const problems: string[] = [];
  const neg = await pool.query(`SELECT id FROM wallets WHERE kind = 'customer' AND (balance < 0 OR balance - held < 0)`);
  if (neg.rowCount) problems.push(`negative balances: ${neg.rows.map((r) => r.id).join(', ')}`);
  const mismatch = await pool.query(`
    SELECT w.id, w.balance, COALESCE(SUM(e.amount), 0) AS sum
    FROM wallets w LEFT JOIN ledger_entries e ON e.wallet_id = w.id
    WHERE w.kind = 'customer' GROUP BY w.id HAVING w.balance <> COALESCE(SUM(e.amount), 0)`);
  if (mismatch.rowCount) problems.push(`balance != sum of entries: ${JSON.stringify(mismatch.rows.map((r) => r.id))}`);
  const total = await pool.query(`SELECT COALESCE(SUM(amount), 0) AS total FROM ledger_entries`);
  if (BigInt(total.rows[0].total) !== 0n) problems.push(`entries do not sum to zero: ${total.rows[0].total}`);
  const unbalancedOps = await pool.query(`
    SELECT operation_id FROM ledger_entries GROUP BY operation_id HAVING SUM(amount) <> 0 OR COUNT(*) <> 2`);
  if (unbalancedOps.rowCount) problems.push(`operations with unbalanced entries: ${unbalancedOps.rowCount}`);
  const entriesVsStatus = await pool.query(`
    SELECT o.id, o.status, COUNT(e.seq) AS n FROM operations o LEFT JOIN ledger_entries e ON e.operation_id = o.id
    GROUP BY o.id HAVING (o.status = 'succeeded') <> (COUNT(e.seq) = 2) OR (o.status <> 'succeeded' AND COUNT(e.seq) > 0)`);
  if (entriesVsStatus.rowCount) problems.push(`succeeded operations are not exactly those with entries: ${entriesVsStatus.rowCount}`);
  return problems;
}
