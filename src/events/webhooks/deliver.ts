import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { recordWebhookDelivery } from '../../infra/metrics.ts';
import { and, asc, eq, lt, sql } from 'drizzle-orm';
import { UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Webhook } from 'standardwebhooks';
import type { Config } from '../../config.ts';
import type { Database } from '../../db/client.ts';
import { webhookAttempts, webhookDeliveries, webhookEndpoints } from '../../db/consumer-schema.ts';
import type { Logger } from '../../infra/logger.ts';
import { sleep } from '../../infra/sleep.ts';
import { doesNotResolve, publicOnlyLookup, webhookUrlProblem } from './url-policy.ts';
import { WEBHOOK_QUEUE, webhookBackoffMs, type WebhookJob } from './webhook-queue.ts';

/**
 * Sends one delivery: signs the stored body (Standard Webhooks: webhook-id = event id, so
 * retries carry the same id), POSTs with a per-request timeout, logs the attempt. 2xx ends it;
 * 410 disables the endpoint; anything else throws, and BullMQ retries on the schedule.
 */
export async function attemptDelivery(
  config: Config,
  database: Database,
  job: Pick<Job<WebhookJob>, 'id' | 'data' | 'attemptsMade' | 'opts'>,
): Promise<'succeeded' | 'failed' | 'skipped'> {
  const { db } = database;
  const [row] = await db
    .select({ delivery: webhookDeliveries, endpoint: webhookEndpoints })
    .from(webhookDeliveries)
    .innerJoin(webhookEndpoints, eq(webhookEndpoints.id, webhookDeliveries.endpointId))
    .where(eq(webhookDeliveries.id, job.data.deliveryId));
  // A manual retry starts a new generation (job `<id>-g<n>`): a job of an earlier one, still
  // waiting for its retry delay, neither sends again nor ends the delivery the retry re-armed.
  const generation = generationOf(job.id);
  if (!row || row.delivery.status !== 'pending' || (generation !== undefined && generation !== row.delivery.generation)) return 'skipped';
  const { delivery, endpoint } = row;
  const finish = async (status: 'succeeded' | 'failed', error?: string) => {
    await db
      .update(webhookDeliveries)
      .set({ status, completedAt: new Date(), updatedAt: new Date(), ...(error ? { lastError: error } : {}) })
      .where(and(eq(webhookDeliveries.id, delivery.id), eq(webhookDeliveries.generation, delivery.generation)));
  };
  if (endpoint.status !== 'active') {
    await finish('failed', 'endpoint disabled');
    return 'failed';
  }

  const started = Date.now();
  let statusCode: number | null = null;
  let error: string | null = null;
  // A host name is resolved once, by the connection (publicOnlyLookup), not here as well.
  const urlProblem = await webhookUrlProblem(endpoint.url, config.WEBHOOK_ALLOW_PRIVATE_URLS, { resolve: false });
  if (urlProblem) {
    error = `target not allowed: ${urlProblem}`;
  } else {
    const timestamp = new Date();
    const signature = new Webhook(endpoint.secret).sign(delivery.eventId, timestamp, delivery.body);
    const signal = AbortSignal.timeout(config.WEBHOOK_TIMEOUT_MS);
    try {
      statusCode = await postWebhook(
        endpoint.url,
        {
          'content-type': 'application/json',
          'user-agent': 'Ledgerline-Webhooks/1',
          'webhook-id': delivery.eventId,
          'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
          'webhook-signature': signature,
        },
        delivery.body,
        { signal, allowPrivate: config.WEBHOOK_ALLOW_PRIVATE_URLS, dnsServers: config.WEBHOOK_DNS_SERVERS },
      );
    } catch (err) {
      const { code, message } = err as NodeJS.ErrnoException;
      if (signal.aborted) error = `timed out after ${config.WEBHOOK_TIMEOUT_MS} ms`;
      else if (code === 'ENOTPUBLIC') error = `target not allowed: ${message}`;
      else if (code === 'ENOTFOUND') error = `target not allowed: ${doesNotResolve(new URL(endpoint.url).hostname)}`;
      else error = message;
    }
  }
  const durationMs = Date.now() - started;
  await db.transaction(async (tx) => {
    // The attempt went out, so it is logged and counted whatever happened meanwhile; the last
    // status and error stay the live generation's (a manual retry during this attempt started another).
    const live = sql`${webhookDeliveries.generation} = ${delivery.generation}`;
    await tx.insert(webhookAttempts).values({ deliveryId: delivery.id, statusCode, error, durationMs });
    await tx
      .update(webhookDeliveries)
      .set({
        attempts: sql`${webhookDeliveries.attempts} + 1`,
        lastStatusCode: sql`CASE WHEN ${live} THEN ${statusCode}::integer ELSE ${webhookDeliveries.lastStatusCode} END`,
        lastError: sql`CASE WHEN ${live} THEN ${error}::text ELSE ${webhookDeliveries.lastError} END`,
        updatedAt: new Date(),
      })
      .where(eq(webhookDeliveries.id, delivery.id));
  });

  if (statusCode !== null && statusCode >= 200 && statusCode < 300) {
    recordWebhookDelivery('delivered', durationMs / 1000);
    await finish('succeeded');
    return 'succeeded';
  }
  if (statusCode === 410) {
    recordWebhookDelivery('gone', durationMs / 1000);
    await db
      .update(webhookEndpoints)
      .set({ status: 'disabled', disabledReason: 'the endpoint answered 410 Gone', updatedAt: new Date() })
      .where(eq(webhookEndpoints.id, endpoint.id));
    await finish('failed', 'endpoint answered 410 Gone; endpoint disabled');
    return 'failed';
  }
  const reason = error ?? `endpoint answered ${statusCode}`;
  const attempts = job.opts.attempts ?? 1;
  const lastAttempt = job.attemptsMade + 1 >= attempts;
  recordWebhookDelivery(lastAttempt ? 'exhausted' : 'failed', durationMs / 1000);
  if (lastAttempt) {
    await finish('failed', `${reason} (gave up after ${attempts} attempts)`);
    throw new UnrecoverableError(reason);
  }
  throw new Error(reason);
}

/**
 * POSTs one delivery and resolves with the response's status (its body is not read). The
 * connection's address is checked as it is resolved (publicOnlyLookup); redirects are not
 * followed (a 3xx is an answer like any other non-2xx).
 */
export function postWebhook(
  url: string,
  headers: Record<string, string>,
  body: string,
  options: { signal: AbortSignal; allowPrivate: boolean; dnsServers?: readonly string[] },
): Promise<number> {
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      target,
      { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, signal: options.signal, lookup: publicOnlyLookup(options.allowPrivate, options.dnsServers) },
      (res) => {
        resolve(res.statusCode ?? 0);
        res.destroy(); // what the endpoint sends back is not read (however much it would send)
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The BullMQ worker sending deliveries, WEBHOOK_CONCURRENCY at a time (a slow endpoint holds one slot, for at most the timeout). */
export function createWebhookWorker(config: Config, database: Database, connection: Redis, logger: Logger): Worker<WebhookJob> {
  const worker = new Worker<WebhookJob>(
    WEBHOOK_QUEUE,
    async (job) => {
      await attemptDelivery(config, database, job);
    },
    {
      connection,
      prefix: config.REDIS_PREFIX,
      concurrency: config.WEBHOOK_CONCURRENCY,
      settings: { backoffStrategy: (attemptsMade: number) => webhookBackoffMs(config.WEBHOOK_RETRY_SCHEDULE_MS, attemptsMade) },
    },
  );
  worker.on('failed', (job, err) => logger.info({ deliveryId: job?.data.deliveryId, attempt: job?.attemptsMade, err: err.message }, 'webhook attempt failed'));
  worker.on('error', (err) => logger.warn({ err }, 'webhook worker error'));
  return worker;
}

/** How long an enqueued pending delivery may go untouched before its job is looked for in Redis. */
const LOST_AFTER_MS = 10_000;
/** How often the dispatcher looks for deliveries whose job Redis lost. */
const REARM_EVERY_MS = 5_000;

const jobIdOf = (d: { id: string; generation: number }) => `${d.id}-g${d.generation}`;
/** The generation a delivery job was enqueued for (`<id>-g<n>`); undefined for another id. */
function generationOf(jobId: string | undefined): number | undefined {
  const match = jobId ? /-g(\d+)$/.exec(jobId) : null;
  return match ? Number(match[1]) : undefined;
}

/** Pending deliveries, the status as a literal: the partial index webhook_deliveries_unqueued_idx then applies in a prepared statement's generic plan (src/db/sql.ts). */
const PENDING = sql`${webhookDeliveries.status} = 'pending'`;

/**
 * Enqueues again every pending delivery whose current generation was enqueued, but whose job is
 * no longer in Redis (restart without persistence, FLUSHALL, eviction), looking only at those
 * untouched since `olderThan`. A job still waiting for its retry delay is there, so it is left
 * alone; one that failed for good ends its delivery as failed. Returns how many it enqueued again.
 */
export async function rearmLostDeliveries(database: Database, queue: Queue<WebhookJob>, olderThan: Date, limit = 500): Promise<number> {
  const stale = await database.db
    .select({ id: webhookDeliveries.id, generation: webhookDeliveries.generation })
    .from(webhookDeliveries)
    .where(
      and(
        PENDING,
        eq(webhookDeliveries.enqueuedGeneration, webhookDeliveries.generation),
        lt(webhookDeliveries.updatedAt, olderThan),
      ),
    )
    .orderBy(asc(webhookDeliveries.updatedAt))
    .limit(limit);
  let rearmed = 0;
  for (const d of stale) {
    const job = await queue.getJob(jobIdOf(d));
    if (job) {
      // Failed for good without ending its delivery (its last attempt died before recording,
      // or BullMQ failed it as stalled): end it now, or it would stay pending until Redis drops
      // the failed job days later.
      if ((await job.getState()) === 'failed') {
        await database.db
          .update(webhookDeliveries)
          .set({ status: 'failed', completedAt: new Date(), updatedAt: new Date(), lastError: `gave up: ${job.failedReason ?? 'the delivery job failed'}`.slice(0, 500) })
          .where(and(eq(webhookDeliveries.id, d.id), eq(webhookDeliveries.generation, d.generation), PENDING));
      }
      continue;
    }
    await queue.add('deliver', { deliveryId: d.id }, { jobId: jobIdOf(d) });
    rearmed++;
  }
  return rearmed;
}

/**
 * Enqueues every pending delivery whose current generation has no job yet, as job
 * `<delivery id>-g<generation>` (so enqueuing twice after a crash is a no-op). Deliveries are
 * created by the consumer and re-armed by manual retries; this loop is their only way into
 * Redis, so it also enqueues again those whose job Redis lost (rearmLostDeliveries).
 */
export async function runDeliveryDispatcher(
  database: Database,
  queue: Queue<WebhookJob>,
  intervalMs: number,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  let lastRearm = Date.now();
  while (!signal.aborted) {
    try {
      const due = await database.db
        .select({ id: webhookDeliveries.id, generation: webhookDeliveries.generation })
        .from(webhookDeliveries)
        .where(and(PENDING, lt(webhookDeliveries.enqueuedGeneration, webhookDeliveries.generation)))
        .limit(500);
      if (due.length > 0) {
        await queue.addBulk(due.map((d) => ({ name: 'deliver', data: { deliveryId: d.id }, opts: { jobId: jobIdOf(d) } })));
        for (const d of due) {
          await database.db
            .update(webhookDeliveries)
            .set({ enqueuedGeneration: d.generation })
            .where(and(eq(webhookDeliveries.id, d.id), eq(webhookDeliveries.generation, d.generation)));
        }
      }
      if (Date.now() - lastRearm >= REARM_EVERY_MS) {
        lastRearm = Date.now();
        const rearmed = await rearmLostDeliveries(database, queue, new Date(Date.now() - LOST_AFTER_MS));
        if (rearmed > 0) logger.warn({ rearmed }, 'webhook deliveries had lost their job; enqueued again');
      }
      if (due.length < 500) await sleep(intervalMs, signal);
    } catch (err) {
      logger.warn({ err }, 'webhook dispatcher failed; retrying');
      await sleep(1000, signal);
    }
  }
}
