/**
 * Prometheus metrics of every Ledgerline process, on prom-client's global `register` (other
 * modules register theirs there too, e.g. the gateway breaker). Metrics are module singletons,
 * so api, worker and relay can share one Node process in tests without double registration.
 *
 * Gauges whose value lives elsewhere (queue depth, outbox lag, pools, total balance) are read
 * at scrape time from the sources a process registers with the `observe*` functions, with a
 * timeout: a scrape never hangs on a dependency that is away (the last value stays).
 *
 * Labels stay low-cardinality: route patterns, operation types, failure codes, queue names,
 * job states, database indexes, consumer groups and partitions; never ids or amounts.
 */
import type { Queue } from 'bullmq';
import type { Consumer } from 'kafkajs';
import type { Pool } from 'pg';
import { collectDefaultMetrics, Counter, Gauge, Histogram, register } from 'prom-client';

export { register };

collectDefaultMetrics({ register });

const SOURCE_TIMEOUT_MS = 2000;

async function withTimeout<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<T>((_, reject) => {
        timer = setTimeout(() => reject(new Error('metrics source timeout')), SOURCE_TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Registers a source in a set; the returned function removes it (on shutdown). */
function addTo<T>(set: Set<T>, item: T): () => void {
  set.add(item);
  return () => set.delete(item);
}

// --- API ------------------------------------------------------------------------------------

/** Every HTTP response answered with status >= 400, by route pattern (the seed's metric). */
export const httpErrors = new Counter({
  name: 'error_rate_total',
  help: 'HTTP responses with status >= 400, by route pattern and status class',
  labelNames: ['endpoint', 'status_class'] as const,
});

export const httpRequests = new Counter({
  name: 'http_requests_total',
  help: 'HTTP responses, by route pattern, method and status class',
  labelNames: ['endpoint', 'method', 'status_class'] as const,
});

export const httpDuration = new Histogram({
  name: 'http_request_duration_seconds',
  help: 'Time from request to response, by route pattern',
  labelNames: ['endpoint', 'method'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
});

export const concurrentConnections = new Gauge({
  name: 'concurrent_connections',
  help: 'Open TCP connections to the API server',
});

export const operationsAccepted = new Counter({
  name: 'operations_accepted_total',
  help: 'Operations committed by the API (202, not replays), by type',
  labelNames: ['type'] as const,
});

// --- settlement (worker) ----------------------------------------------------------------------

/** Ledger entries written on customer wallets: a fund is 1 credit, a transfer 1 debit + 1 credit. */
export const transactions = new Counter({
  name: 'transactions_total',
  help: 'Ledger entries written on customer wallets, by direction (credit | debit)',
  labelNames: ['type'] as const,
});

export const operationsSettled = new Counter({
  name: 'operations_settled_total',
  help: 'Operations this process moved to a terminal status, by type and status',
  labelNames: ['type', 'status'] as const,
});

export const transferErrors = new Counter({
  name: 'transfer_errors_total',
  help: 'Operations that ended failed, by type and failure code',
  labelNames: ['type', 'code'] as const,
});

export const transferDuration = new Histogram({
  name: 'transfer_duration_seconds',
  help: 'Time from acceptance (operation created) to terminal status (completed), by type and status',
  labelNames: ['type', 'status'] as const,
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
});

export const jobWait = new Histogram({
  name: 'job_wait_seconds',
  help: 'Time a job waited in its queue before its first attempt started',
  labelNames: ['queue', 'name'] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
});

export const jobRun = new Histogram({
  name: 'job_run_seconds',
  help: 'Time one job attempt ran, by outcome (completed | failed)',
  labelNames: ['queue', 'name', 'outcome'] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
});

export const jobsFailed = new Counter({
  name: 'jobs_failed_total',
  help: 'Failed job attempts; final="true" when no attempt is left (the job failed for good)',
  labelNames: ['queue', 'name', 'final'] as const,
});

export const jobsStalled = new Counter({
  name: 'jobs_stalled_total',
  help: 'Jobs whose worker stopped renewing the lock (it died or blocked); BullMQ re-runs them',
  labelNames: ['queue'] as const,
});

export const reconcilerRepairs = new Counter({
  name: 'reconciler_repairs_total',
  help: 'Jobs the reconciler re-added or retried for operations left open too long',
});

const queues = new Set<Queue>();
const JOB_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed', 'waiting-children'] as const;

export const queueJobs = new Gauge({
  name: 'queue_jobs',
  help: 'Jobs in a BullMQ queue by state (read at scrape time)',
  labelNames: ['queue', 'state'] as const,
  async collect() {
    await Promise.all(
      [...queues].map(async (queue) => {
        try {
          const counts = await withTimeout(queue.getJobCounts(...JOB_STATES));
          for (const state of JOB_STATES) this.set({ queue: queue.name, state }, counts[state] ?? 0);
        } catch {
          // Redis away: keep the last values; the queue alerts fire on absent or stale data.
        }
      }),
    );
  },
});

/** Reports the queue's job counts by state at each scrape. */
export const observeQueue = (queue: Queue): (() => void) => addTo(queues, queue);

// --- money and outbox (read from Postgres at scrape time) -------------------------------------

export interface BalanceSource {
  /** Total settled balance of customer wallets per currency, in minor units. */
  totals: () => Promise<{ currency: string; totalMinor: bigint }[]>;
}
const balanceSources = new Set<BalanceSource>();

export const walletBalanceTotal = new Gauge({
  name: 'wallet_balance_total',
  help: 'Total settled balance of customer wallets, minor units, by currency (every database summed)',
  labelNames: ['currency'] as const,
  async collect() {
    const sums = new Map<string, bigint>();
    try {
      for (const source of balanceSources) {
        for (const row of await withTimeout(source.totals())) {
          sums.set(row.currency, (sums.get(row.currency) ?? 0n) + row.totalMinor);
        }
      }
    } catch {
      return; // keep the last values
    }
    // float64 is exact up to 2^53 minor units (9e13 USD in cents), beyond any balance here.
    for (const [currency, total] of sums) this.set({ currency }, Number(total));
  },
});

/** Reports total customer balance at each scrape (a SUM query; one source per process). */
export const observeBalances = (source: BalanceSource): (() => void) => addTo(balanceSources, source);

export interface OutboxSource {
  database: string;
  /** Unsent rows and the age of the oldest one (0 when none). */
  lag: () => Promise<{ unsent: number; oldestAgeSeconds: number }>;
}
const outboxSources = new Set<OutboxSource>();

/**
 * One read of every outbox source per scrape, shared by the two outbox gauges (prom-client
 * collects metrics concurrently, so each gauge awaits the same snapshot).
 */
let outboxSnapshot: { at: number; data: Promise<Map<OutboxSource, { unsent: number; oldestAgeSeconds: number } | undefined>> } | undefined;
function readOutboxSources(): Promise<Map<OutboxSource, { unsent: number; oldestAgeSeconds: number } | undefined>> {
  if (outboxSnapshot && Date.now() - outboxSnapshot.at < 1000) return outboxSnapshot.data;
  const data = Promise.all(
    [...outboxSources].map(async (source) => [source, await withTimeout(source.lag()).catch(() => undefined)] as const),
  ).then((entries) => new Map(entries));
  outboxSnapshot = { at: Date.now(), data };
  return data;
}

export const outboxUnsent = new Gauge({
  name: 'outbox_unsent_events',
  help: 'Outbox rows not yet published to Kafka, by database',
  labelNames: ['database'] as const,
  async collect() {
    // A source that failed keeps its last value.
    for (const [source, lag] of await readOutboxSources()) if (lag) this.set({ database: source.database }, lag.unsent);
  },
});

export const outboxOldestAge = new Gauge({
  name: 'outbox_oldest_unsent_age_seconds',
  help: 'Age of the oldest unpublished outbox row, by database (0 when all are sent)',
  labelNames: ['database'] as const,
  async collect() {
    for (const [source, lag] of await readOutboxSources()) if (lag) this.set({ database: source.database }, lag.oldestAgeSeconds);
  },
});

/** Reports outbox lag at each scrape. */
export const observeOutbox = (source: OutboxSource): (() => void) => addTo(outboxSources, source);

export const outboxPublished = new Counter({
  name: 'outbox_events_published_total',
  help: 'Outbox rows published to Kafka by this relay, by database',
  labelNames: ['database'] as const,
});

export const outboxPruned = new Counter({
  name: 'outbox_events_pruned_total',
  help: 'Published outbox rows deleted after OUTBOX_RETENTION_HOURS by this relay, by database',
  labelNames: ['database'] as const,
});

export const outboxPublishFailures = new Counter({
  name: 'outbox_publish_failures_total',
  help: 'Relay batches that failed to publish (retried with backoff), by database',
  labelNames: ['database'] as const,
});

// --- Postgres pools ---------------------------------------------------------------------------

const pools = new Map<Pool, { pool: string; database: string }>();

export const pgPoolConnections = new Gauge({
  name: 'pg_pool_connections',
  help: 'Postgres pool clients by state: total (open), idle, waiting (callers queued for a client)',
  labelNames: ['pool', 'database', 'state'] as const,
  collect() {
    this.reset();
    for (const [pool, labels] of pools) {
      this.set({ ...labels, state: 'total' }, pool.totalCount);
      this.set({ ...labels, state: 'idle' }, pool.idleCount);
      this.set({ ...labels, state: 'waiting' }, pool.waitingCount);
    }
  },
});

export const pgPoolMax = new Gauge({
  name: 'pg_pool_max',
  help: 'Configured maximum clients of a Postgres pool',
  labelNames: ['pool', 'database'] as const,
});

/** Reports a pool's usage at each scrape; `pool` names the process role (api, worker, relay). */
export function observePool(pool: Pool, labels: { pool: string; database: string }, max: number): () => void {
  pools.set(pool, labels);
  pgPoolMax.set(labels, max);
  return () => {
    pools.delete(pool);
    pgPoolMax.remove(labels);
  };
}

// --- Kafka consumers and webhooks (used by the consumer processes) ----------------------------

export const consumerLag = new Gauge({
  name: 'kafka_consumer_lag',
  help: 'Messages between a consumer group committed position and the partition high watermark',
  labelNames: ['group', 'topic', 'partition'] as const,
});

export const consumerMessages = new Counter({
  name: 'kafka_consumer_messages_total',
  help: 'Messages a consumer group processed, by topic',
  labelNames: ['group', 'topic'] as const,
});

/**
 * Counted from kafkajs's "Offset out of range, resetting to default offset" (see
 * `src/events/kafka.ts`): the group's position was no longer in the broker's log (it fell
 * behind retention), kafkajs moved it to the earliest offset left, and the events in between
 * were never consumed by that group.
 */
export const consumerOffsetResets = new Counter({
  name: 'kafka_consumer_offset_resets_total',
  help: "Times a consumer group's position was no longer in the broker's log and was reset (the events in between were skipped by that group)",
  labelNames: ['group'] as const,
});

/** The kafkajs log message that reports a reset (kafkajs 2.x, consumerGroup.js). */
export const OFFSET_RESET_MESSAGE = 'Offset out of range, resetting to default offset';

/**
 * Feeds `kafka_consumer_lag` and `kafka_consumer_messages_total` from a kafkajs consumer's
 * END_BATCH_PROCESS events (lag = high watermark − last offset of the batch − 1). Every
 * consumer process calls this once after creating its consumer. Also starts the group's
 * `kafka_consumer_offset_resets_total` at 0, so that its first reset is an increase.
 */
export function instrumentConsumer(consumer: Consumer, group: string): () => void {
  consumerOffsetResets.inc({ group }, 0);
  const remove = consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
    const { topic, partition, offsetLag, batchSize } = event.payload;
    consumerLag.set({ group, topic, partition: String(partition) }, Number(offsetLag));
    consumerMessages.inc({ group, topic }, batchSize);
  });
  return remove;
}

export const webhookDeliveries = new Counter({
  name: 'webhook_deliveries_total',
  help: 'Webhook delivery attempts by outcome: delivered (2xx), failed (non-2xx/timeout, retried), gone (410, endpoint disabled), exhausted (no retry left)',
  labelNames: ['outcome'] as const,
});

export const webhookDeliveryDuration = new Histogram({
  name: 'webhook_delivery_duration_seconds',
  help: 'Time of one webhook HTTP attempt',
  labelNames: ['outcome'] as const,
  buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
});

export type WebhookOutcome = 'delivered' | 'failed' | 'gone' | 'exhausted';

/** Records one webhook delivery attempt (called by the webhook consumer). */
export function recordWebhookDelivery(outcome: WebhookOutcome, seconds: number): void {
  webhookDeliveries.inc({ outcome });
  webhookDeliveryDuration.observe({ outcome }, seconds);
}

export const batchSize = new Histogram({
  name: 'batch_size',
  help: 'Items per group commit: operations per settling transaction (settle), requests per accept round trip (accept), operations per addBulk of the API (enqueue)',
  labelNames: ['stage'] as const,
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
});

export const batchSplits = new Counter({
  name: 'batch_splits_total',
  help: 'Group transactions that failed and were split to isolate the operation that failed them, by stage',
  labelNames: ['stage'] as const,
});
