import { asc, getTableColumns, isNull, sql } from 'drizzle-orm';
import type { Pool } from 'pg';
import type { Producer } from 'kafkajs';
import { Histogram } from 'prom-client';
import { RELAY_LOCK_KEY } from '../db/advisory-locks.ts';
import type { Db } from '../db/client.ts';
import { outbox } from '../db/schema.ts';
import { bigintArray } from '../db/sql.ts';
import type { Logger } from '../infra/logger.ts';
import { outboxPruned, outboxPublished, outboxPublishFailures } from '../infra/metrics.ts';
import { sleep } from '../infra/sleep.ts';
import { traceIdOf } from '../infra/trace.ts';

const publishLag = new Histogram({
  name: 'ledgerline_outbox_publish_lag_seconds',
  help: 'Time from an outbox row commit to its acknowledgement by the broker',
  buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
});

export interface RelayOptions {
  topic: string;
  source: string;
  batchSize: number;
}

/**
 * Publishes one batch of unsent outbox rows in commit order (CloudEvents 1.0 Kafka binding,
 * binary mode: `ce_*` headers, key = wallet id) and marks them sent. If publishing fails the
 * rows stay unsent and are published again: at least once, consumers dedupe on `ce_id`.
 * Returns how many rows it published.
 */
export async function relayBatch(db: Db, producer: Producer, options: RelayOptions, logger?: Logger): Promise<number> {
  const rows = await db
    // The payload as Postgres stored it (text): parsing and re-serializing it would only cost CPU.
    .select({ ...getTableColumns(outbox), payload: sql<string>`${outbox.payload}::text` })
    .from(outbox)
    .where(isNull(outbox.sentAt))
    .orderBy(asc(outbox.seq))
    .limit(options.batchSize);
  if (rows.length === 0) return 0;
  await producer.send({
    topic: options.topic,
    acks: -1,
    messages: rows.map((row) => ({
      key: row.key,
      value: row.payload,
      headers: {
        ce_specversion: '1.0',
        ce_id: row.eventId,
        ce_type: row.type,
        ce_source: options.source,
        ce_time: row.createdAt.toISOString(),
        ce_subject: row.key,
        'content-type': 'application/json',
        // W3C Trace Context of the request behind the event (Kafka header convention).
        ...(row.traceparent ? { traceparent: row.traceparent } : {}),
      },
    })),
  });
  await db
    .update(outbox)
    .set({ sentAt: new Date() })
    .where(sql`${outbox.seq} = ANY(${bigintArray(rows.map((r) => r.seq))})`);
  const ackedAt = Date.now();
  for (const row of rows) publishLag.observe((ackedAt - row.createdAt.getTime()) / 1000);
  if (logger?.isLevelEnabled('info')) {
    // One line per event, so a transfer can be followed from the API through the worker to Kafka.
    for (const row of rows) {
      logger.info(
        { operationId: row.operationId, requestId: row.requestId, traceId: traceIdOf(row.traceparent), eventId: row.eventId, type: row.type },
        'event published',
      );
    }
  }
  return rows.length;
}

/** Rows one prune statement looks at (the oldest from where it starts): a few milliseconds of work. */
export const PRUNE_WINDOW = 5000;

/** What one prune statement saw and did. */
export interface PrunedWindow {
  /** Rows deleted: published before the cutoff. */
  deleted: number;
  /** Rows looked at; fewer than the window means the end of the table. */
  seen: number;
  /** The last `seq` looked at. */
  last: bigint | undefined;
  /** The smallest `seq` looked at and left (not yet published, or published after the cutoff). */
  kept: bigint | undefined;
}

/**
 * Deletes the rows published before `cutoff` among the `window` oldest outbox rows from `seq`
 * `from` on, in one statement (10 s at most). It reads the primary key from `from`, never the
 * whole table. A row not yet published is never deleted.
 */
export async function pruneOutbox(db: Db, cutoff: Date, from = 0n, window = PRUNE_WINDOW): Promise<PrunedWindow> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SET LOCAL statement_timeout = '10s'`);
    const { rows } = await tx.execute<{ deleted: number; seen: number; last: string | null; kept: string | null }>(sql`
      WITH oldest AS MATERIALIZED (
        SELECT seq, sent_at < ${cutoff.toISOString()}::timestamptz AS expired
        FROM outbox WHERE seq >= ${from.toString()}::bigint ORDER BY seq LIMIT ${window}
      ), gone AS (
        DELETE FROM outbox o USING oldest WHERE o.seq = oldest.seq AND oldest.expired RETURNING 1
      )
      SELECT (SELECT count(*) FROM gone)::int AS deleted, (SELECT count(*) FROM oldest)::int AS seen,
             (SELECT max(seq) FROM oldest)::text AS last, (SELECT min(seq) FROM oldest WHERE expired IS NOT TRUE)::text AS kept`);
    const row = rows[0]!;
    return {
      deleted: row.deleted,
      seen: row.seen,
      last: row.last === null ? undefined : BigInt(row.last),
      kept: row.kept === null ? undefined : BigInt(row.kept),
    };
  });
}

/**
 * The active relay's retention: deletes published rows older than `retentionMs`, one window
 * between two publish batches. A run of windows goes on back to back while they come back full
 * and delete something, each starting past the last; then the next run is due a minute later
 * (or a retention, if shorter) and starts at the oldest row the run left, so it does not walk
 * again over the index entries of rows it deleted (they stay until a vacuum). The relay
 * publishes in `seq` order, so the rows left are the ones published since the cutoff, and the
 * odd one not yet published when a window saw it.
 *
 * While the relay works off a backlog (`busy`), publishing comes first: at most one window per
 * `busyIntervalMs`, so a relay that never catches up (every batch full) still prunes, slowly.
 */
export class OutboxPruner {
  private dueAt = 0;
  private lastStepAt = -Infinity;
  private from = 0n;
  private runKept: bigint | undefined;

  constructor(
    private readonly db: Db,
    private readonly retentionMs: number,
    private readonly window = PRUNE_WINDOW,
    private readonly busyIntervalMs = 10_000,
  ) {}

  /** Prunes one window if one is due and returns how many rows it deleted. */
  async step(now = Date.now(), busy = false): Promise<number> {
    if (now < this.dueAt || (busy && now - this.lastStepAt < this.busyIntervalMs)) return 0;
    this.lastStepAt = now;
    this.dueAt = now + Math.min(60_000, this.retentionMs); // also after a failure
    const w = await pruneOutbox(this.db, new Date(now - this.retentionMs), this.from, this.window);
    if (w.kept !== undefined && (this.runKept === undefined || w.kept < this.runKept)) this.runKept = w.kept;
    if (w.seen === this.window && w.deleted > 0) {
      this.from = w.last! + 1n;
      this.dueAt = 0;
    } else {
      this.from = this.runKept ?? (w.last === undefined ? this.from : w.last + 1n);
      this.runKept = undefined;
    }
    return w.deleted;
  }
}

/**
 * Runs the relay for one database until `signal` aborts. Only the holder of the database's
 * advisory lock publishes (one active relay per shard database, so order per wallet holds);
 * others wait as hot standbys. Broker errors back off and retry.
 */
export async function runRelay(
  database: { db: Db; pool: Pool },
  producer: Producer,
  options: RelayOptions & { pollIntervalMs: number; database?: string; retentionMs?: number },
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  let backoffMs = 200;
  const labels = { database: options.database ?? '0' };
  while (!signal.aborted) {
    const lockClient = await database.pool.connect().catch((err: unknown) => {
      logger.warn({ err }, 'relay cannot reach its database');
      return undefined;
    });
    if (!lockClient) {
      await sleep(backoffMs, signal);
      backoffMs = Math.min(backoffMs * 2, 10_000);
      continue;
    }
    // A checked-out client is not covered by the pool's error listener: a server-side
    // termination (57P01, failover) while we hold the lock session would crash the process.
    const onClientError = (err: Error) => logger.warn({ err: err.message }, 'relay lock session lost');
    lockClient.on('error', onClientError);
    try {
      // The lock lives as long as this session. If this host dies or is cut off, Postgres would
      // keep the session, and so the lock, until the kernel's TCP keepalive gives up (two hours
      // by default) and no standby could take over: on this session it probes after 10 s idle
      // and drops the peer after 3 unanswered probes 5 s apart (no effect over a Unix socket).
      await lockClient.query('SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3');
      const { rows } = await lockClient.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [RELAY_LOCK_KEY]);
      if (!rows[0]?.locked) {
        await sleep(1000, signal);
        continue;
      }
      logger.info('relay active');
      const pruner = options.retentionMs ? new OutboxPruner(database.db, options.retentionMs) : undefined;
      while (!signal.aborted) {
        try {
          await lockClient.query('SELECT 1'); // still holding the session (and the lock)?
          const sent = await relayBatch(database.db, producer, options, logger);
          outboxPublished.inc(labels, sent);
          backoffMs = 200;
          const caughtUp = sent < options.batchSize;
          if (pruner) {
            const pruned = await pruner.step(Date.now(), !caughtUp).catch((err: unknown) => {
              logger.warn({ err }, 'outbox prune failed; trying again later');
              return 0;
            });
            if (pruned > 0) {
              outboxPruned.inc(labels, pruned);
              logger.debug({ pruned }, 'outbox pruned');
            }
          }
          if (caughtUp) await sleep(options.pollIntervalMs, signal);
        } catch (err) {
          outboxPublishFailures.inc(labels);
          logger.warn({ err, backoffMs }, 'relay batch failed; backing off');
          await sleep(backoffMs, signal);
          backoffMs = Math.min(backoffMs * 2, 10_000);
          await producer.connect().catch(() => {}); // no-op when connected
          const alive = await lockClient.query('SELECT 1').then(() => true, () => false);
          if (!alive) break;
        }
      }
    } catch (err) {
      logger.warn({ err }, 'relay lost its lock session');
      await sleep(backoffMs, signal);
    } finally {
      await lockClient.query('SELECT pg_advisory_unlock_all()').catch(() => {});
      lockClient.release(true);
    }
  }
}
