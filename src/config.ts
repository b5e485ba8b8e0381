import { z } from 'zod';

/** Parses a comma-separated list, dropping empty items. */
const csv = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x.length > 0));

const intFrom = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);

const schema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    PORT: intFrom(3000, 0),
    ADMIN_TOKEN: z.string().min(16, 'ADMIN_TOKEN must be at least 16 characters').optional(),

    DATABASE_URL: z.string().url().default('postgres://postgres@127.0.0.1:5432/ledgerline'),
    /** One URL per physical database; logical shard s lives in database floor(s*N/256). */
    SHARD_DATABASE_URLS: csv.optional(),
    PG_POOL_MAX: intFrom(20, 1),
    PG_CONNECTION_TIMEOUT_MS: intFrom(5000, 1),
    PG_IDLE_TIMEOUT_MS: intFrom(30_000, 0),

    REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
    /** Prefix of every Redis key the service owns (BullMQ queues included). */
    REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:_-]+$/).default('ledgerline'),
    IDEMPOTENCY_TTL_SECONDS: intFrom(48 * 3600, 86_400),

    KAFKA_BROKERS: csv.default(['127.0.0.1:19092']),
    KAFKA_CLIENT_ID: z.string().default('ledgerline'),
    KAFKA_TOPIC: z.string().regex(/^[A-Za-z0-9._-]+$/).default('ledger.events'),
    /** CloudEvents `source` attribute of every event this deployment emits. */
    EVENT_SOURCE: z.string().default('urn:ledgerline:ledger'),

    WORKER_CONCURRENCY: intFrom(16, 1),
    WORKER_LOCK_DURATION_MS: intFrom(30_000, 1000),
    WORKER_STALLED_INTERVAL_MS: intFrom(30_000, 1000),
    JOB_ATTEMPTS: intFrom(25, 1),
    RECONCILE_INTERVAL_MS: intFrom(5000, 100),
    RECONCILE_PENDING_AFTER_MS: intFrom(30_000, 100),

    /** Test builds only: `<point>:<probability>` makes the worker SIGKILL itself there. */
    FAULT_INJECTION: z.string().regex(/^[a-z-]+:(1|0|0?\.[0-9]+)$/).optional(),

    RELAY_BATCH_SIZE: intFrom(500, 1),
    RELAY_POLL_INTERVAL_MS: intFrom(100, 10),

    /** Rate limits: requests per window per API key and class (per-key overrides in clients.rate_limits). */
    RATE_LIMIT_WINDOW_SECONDS: intFrom(3600, 1),
    RATE_LIMIT_CREATE_WALLET: intFrom(10, 1),
    RATE_LIMIT_FUND: intFrom(50, 1),
    RATE_LIMIT_TRANSFER: intFrom(100, 1),
    RATE_LIMIT_READ: intFrom(1000, 1),
    /** TTL of the GET /v1/wallets/:id cache in Redis; 0 turns the cache off. */
    WALLET_CACHE_TTL_SECONDS: z.coerce.number().int().min(0).max(3600).default(30),
    /** Slow clients: time to send the request headers, and the whole request. */
    HTTP_HEADERS_TIMEOUT_MS: intFrom(10_000, 100),
    HTTP_REQUEST_TIMEOUT_MS: intFrom(40_000, 1000),
  })
  .transform((env) => ({
    ...env,
    SHARD_DATABASE_URLS:
      env.SHARD_DATABASE_URLS && env.SHARD_DATABASE_URLS.length > 0
        ? env.SHARD_DATABASE_URLS
        : [env.DATABASE_URL],
  }))
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === 'production' && !env.ADMIN_TOKEN) {
      ctx.addIssue({ code: 'custom', path: ['ADMIN_TOKEN'], message: 'required in production' });
    }
    if (env.SHARD_DATABASE_URLS.length > 1) {
      // Cross-database transfers need the saga (holds, credit, settle); until it exists the
      // service refuses a layout it cannot settle atomically.
      ctx.addIssue({
        code: 'custom',
        path: ['SHARD_DATABASE_URLS'],
        message: 'more than one physical database is not supported yet (cross-database saga pending)',
      });
    }
  });

export type Config = Readonly<z.infer<typeof schema>>;

/** Parses an environment into a frozen config, or throws an Error naming every bad variable. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const result = schema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `${i.path.join('.') || 'env'}: ${i.message}`);
    throw new Error(`invalid configuration: ${lines.join('; ')}`);
  }
  return Object.freeze(result.data);
}

/** The process's config, parsed once; on a bad variable the process stops with one line. */
export function loadConfig(): Config {
  try {
    return parseConfig(process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(78); // EX_CONFIG
  }
}
