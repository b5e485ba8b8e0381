import { Resolver } from 'node:dns';
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
    /** How often every process reloads the moved-shard map from the control database. */
    SHARD_MAP_REFRESH_MS: intFrom(1000, 50),
    PG_POOL_MAX: intFrom(20, 1),
    PG_CONNECTION_TIMEOUT_MS: intFrom(5000, 1),
    PG_IDLE_TIMEOUT_MS: intFrom(600_000, 0),
    /** Distinct statements a pool prepares (each after its 3rd run, once per connection); 0 = none. */
    PG_PREPARED_STATEMENTS: intFrom(200, 0),

    REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
    /** Prefix of every Redis key the service owns (BullMQ queues included). */
    REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9:_-]+$/).default('ledgerline'),

    KAFKA_BROKERS: csv.default(['127.0.0.1:19092']),
    KAFKA_CLIENT_ID: z.string().default('ledgerline'),
    KAFKA_TOPIC: z.string().regex(/^[A-Za-z0-9._-]+$/).default('ledger.events'),
    /** CloudEvents `source` attribute of every event this deployment emits. */
    EVENT_SOURCE: z.string().default('urn:ledgerline:ledger'),

    /** Jobs a worker process runs at once; concurrent settle jobs of one database share transactions. */
    WORKER_CONCURRENCY: intFrom(128, 1),
    /** Group commit in workers: most operations per settling transaction. */
    SETTLE_BATCH_MAX: intFrom(1024, 1),
    /** How long the first operation of an idle database waits for others to share its transaction. */
    SETTLE_BATCH_LINGER_MS: intFrom(2, 0),
    /** Settling transactions per database per worker process at once (more queue up for the next). */
    SETTLE_BATCH_IN_FLIGHT: intFrom(1, 1),
    /** Batched accept in the API: most requests per shared round trip. */
    ACCEPT_BATCH_MAX: intFrom(256, 1),
    /**
     * How long the first request of an idle API process waits for others to share its round
     * trips. 0: only for those read in the same turn of the event loop (no timer, no extra wake-up).
     */
    ACCEPT_BATCH_LINGER_MS: intFrom(0, 0),
    /**
     * Accept batches per API process at once (more queue up for the next). One: requests that
     * arrive while a batch is in Postgres wait for it and go together, as Nagle's algorithm
     * does, so at moderate rates a request shares its round trips instead of making its own.
     */
    ACCEPT_BATCH_IN_FLIGHT: intFrom(1, 1),
    /**
     * Niceness of the worker and relay processes (0: as started). On a machine they share with the
     * API its requests get a core first; alone on a machine it changes nothing. Consumers keep
     * theirs: a consumer that falls behind under load must catch up before the broker's retention.
     */
    BACKGROUND_NICE: z.coerce.number().int().min(0).max(19).default(10),
    /** How long operations committed by an idle API process wait for others to share one enqueue (`addBulk`, settle-batch jobs). */
    ENQUEUE_BATCH_LINGER_MS: intFrom(50, 0),
    WORKER_LOCK_DURATION_MS: intFrom(30_000, 1000),
    WORKER_STALLED_INTERVAL_MS: intFrom(30_000, 1000),
    JOB_ATTEMPTS: intFrom(25, 1),
    RECONCILE_INTERVAL_MS: intFrom(5000, 100),
    RECONCILE_PENDING_AFTER_MS: intFrom(30_000, 100),

    /** Test builds only: `<point>:<probability>` makes the worker SIGKILL itself there. */
    FAULT_INJECTION: z.string().regex(/^[a-z-]+:(1|0|0?\.[0-9]+)$/).optional(),

    RELAY_BATCH_SIZE: intFrom(500, 1),
    RELAY_POLL_INTERVAL_MS: intFrom(100, 10),
    /**
     * Published outbox rows older than this are deleted by the active relay (fractions allowed;
     * 0 keeps them forever). Unpublished rows are never deleted. Keep it longer than the topic's
     * retention: a consumer that fell behind the topic is recovered from these rows
     * (docs/operations.md, ConsumerSkippedEvents). The audit log keeps every event.
     */
    OUTBOX_RETENTION_HOURS: z.coerce.number().min(0).default(720),

    /** Payment gateway: base URL the workers charge through, behind a circuit breaker. */
    GATEWAY_URL: z.string().url().default('http://127.0.0.1:4010'),
    /** Port the gateway simulator (`npm run gateway-sim`) listens on. */
    GATEWAY_SIM_PORT: intFrom(4010, 0),
    GATEWAY_TIMEOUT_MS: intFrom(3000, 1),
    BREAKER_ERROR_THRESHOLD_PERCENT: intFrom(50, 1),
    BREAKER_RESET_TIMEOUT_MS: intFrom(30_000, 1),
    /** Calls in the rolling window before the breaker may open. */
    BREAKER_VOLUME_THRESHOLD: intFrom(5, 0),
    BREAKER_ROLLING_WINDOW_MS: intFrom(10_000, 100),
    /** kafkajs request timeout; a broker silent for longer fails the request (and is retried). */
    KAFKA_REQUEST_TIMEOUT_MS: intFrom(10_000, 100),

    /** Consumer groups are `<prefix>.<topic>.<consumer>`. */
    CONSUMER_GROUP_PREFIX: z.string().regex(/^[A-Za-z0-9._-]+$/).default('ledgerline'),
    /** A consumer silent this long (crashed) is evicted from its group and its partitions move. */
    CONSUMER_SESSION_TIMEOUT_MS: intFrom(30_000, 1000),
    /**
     * The longest the group coordinator waits for members to rejoin in a rebalance; a member that
     * does not rejoin in time (one busy with a message, or one that died mid-rebalance) is dropped
     * from the group. A consumer restarted after a crash can wait up to this long for the member it
     * replaces before it is given partitions again.
     */
    CONSUMER_REBALANCE_TIMEOUT_MS: intFrom(60_000, 1000),
    /** Fraud rules: more than VELOCITY_MAX transfers out of a wallet within the window. */
    FRAUD_VELOCITY_MAX: intFrom(20, 1),
    FRAUD_VELOCITY_WINDOW_SECONDS: intFrom(60, 1),
    /** A single fund or transfer of at least this many minor units (any currency). */
    FRAUD_AMOUNT_THRESHOLD_MINOR: z.coerce.bigint().positive().default(1_000_000n),
    /** A transfer out of at least DRAIN_PERCENT % of a fund received within the window. */
    FRAUD_DRAIN_WINDOW_SECONDS: intFrom(300, 1),
    FRAUD_DRAIN_PERCENT: intFrom(90, 1),
    /** Policy: freeze the wallet an alert is about (an operator unfreezes it). */
    FRAUD_FREEZE_ON_SUSPICION: z
      .enum(['true', 'false', '1', '0'])
      .default('false')
      .transform((v) => v === 'true' || v === '1'),

    /** Webhook delivery: per-request timeout, parallel deliveries per process, retry delays. */
    WEBHOOK_TIMEOUT_MS: intFrom(10_000, 100),
    WEBHOOK_CONCURRENCY: intFrom(50, 1),
    /** Delays before each retry; the default (Standard Webhooks' schedule) spans about 28 h. */
    WEBHOOK_RETRY_SCHEDULE_MS: csv
      .pipe(z.array(z.string().regex(/^[0-9]+$/, 'delays are integers (ms)').transform(Number)).min(1))
      .default([5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]),
    /** Allow http and private/loopback targets (unset: allowed except in production). */
    WEBHOOK_ALLOW_PRIVATE_URLS: z.enum(['true', 'false', '1', '0']).optional(),
    /** DNS servers (IP[:port], [IPv6]:port; comma-separated) that resolve webhook hosts in production; unset: /etc/resolv.conf's. */
    WEBHOOK_DNS_SERVERS: csv
      .refine((servers) => {
        try {
          new Resolver().setServers(servers);
          return true;
        } catch {
          return false;
        }
      }, 'each server is an IP address, with an optional port (IPv6 with a port: [addr]:port)')
      .default([]),
    /** Worker, relay and consumer processes serve GET /metrics here; 0 = a free port (logged). The API serves /metrics on PORT. */
    METRICS_PORT: intFrom(0, 0),
    /** Rate limits: requests per window per API key and class (per-key overrides in clients.rate_limits). */
    RATE_LIMIT_WINDOW_SECONDS: intFrom(3600, 1),
    RATE_LIMIT_CREATE_WALLET: intFrom(10, 1),
    RATE_LIMIT_FUND: intFrom(50, 1),
    RATE_LIMIT_TRANSFER: intFrom(100, 1),
    RATE_LIMIT_READ: intFrom(1000, 1),
    /** POSTs that register webhook endpoints or redeliver. */
    RATE_LIMIT_WEBHOOKS: intFrom(100, 1),
    /** TTL of the GET /v1/wallets/:id cache in Redis; 0 turns the cache off. */
    // The contract promises reads at most 30 s old (API.md), so no longer.
    WALLET_CACHE_TTL_SECONDS: z.coerce.number().int().min(0).max(30).default(30),
    /** Slow clients: time to send the request headers, and the whole request. */
    HTTP_HEADERS_TIMEOUT_MS: intFrom(10_000, 100),
    HTTP_REQUEST_TIMEOUT_MS: intFrom(40_000, 1000),
  })
  .transform((env) => ({
    ...env,
    WEBHOOK_ALLOW_PRIVATE_URLS:
      env.WEBHOOK_ALLOW_PRIVATE_URLS === undefined
        ? env.NODE_ENV !== 'production'
        : env.WEBHOOK_ALLOW_PRIVATE_URLS === 'true' || env.WEBHOOK_ALLOW_PRIVATE_URLS === '1',
    SHARD_DATABASE_URLS:
      env.SHARD_DATABASE_URLS && env.SHARD_DATABASE_URLS.length > 0
        ? env.SHARD_DATABASE_URLS
        : [env.DATABASE_URL],
  }))
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === 'production' && !env.ADMIN_TOKEN) {
      ctx.addIssue({ code: 'custom', path: ['ADMIN_TOKEN'], message: 'required in production' });
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
