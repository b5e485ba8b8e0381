/**
 * Tables owned by the event consumers. They live in the control database (the one
 * holding logical shard 0); each consumer records the events it applied here, in the same
 * transaction as its effect.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** Dedupe store: one row per (consumer, CloudEvents id) applied. */
export const consumerProcessedEvents = pgTable(
  'consumer_processed_events',
  {
    consumer: text('consumer').notNull(),
    eventId: text('event_id').notNull(),
    processedAt: ts('processed_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.consumer, t.eventId] })],
);

/** Append-only, hash-chained audit log (UPDATE/DELETE/TRUNCATE refused by trigger). */
export const auditLog = pgTable(
  'audit_log',
  {
    seq: bigint('seq', { mode: 'bigint' }).primaryKey(),
    eventId: text('event_id').notNull(),
    eventType: text('event_type').notNull(),
    subject: text('subject'),
    eventTime: text('event_time').notNull(),
    payload: jsonb('payload').$type<unknown>().notNull(),
    prevHash: text('prev_hash').notNull(),
    hash: text('hash').notNull(),
    recordedAt: ts('recorded_at').notNull().defaultNow(),
  },
  (t) => [uniqueIndex('audit_log_event_id_uq').on(t.eventId)],
);

/** Aggregates per bucket (hour or day, UTC), currency and event type. */
export const analyticsBuckets = pgTable(
  'analytics_buckets',
  {
    granularity: text('granularity', { enum: ['hour', 'day'] }).notNull(),
    bucketStart: ts('bucket_start').notNull(),
    currency: text('currency').notNull(),
    eventType: text('event_type').notNull(),
    count: bigint('count', { mode: 'bigint' }).notNull(),
    volume: bigint('volume', { mode: 'bigint' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.granularity, t.bucketStart, t.currency, t.eventType] })],
);

/** What the fraud rules look back over: one row per money movement touching a wallet. */
export const fraudActivity = pgTable(
  'fraud_activity',
  {
    seq: bigserial('seq', { mode: 'bigint' }).primaryKey(),
    walletId: uuid('wallet_id').notNull(),
    kind: text('kind', { enum: ['fund_in', 'transfer_out'] }).notNull(),
    amount: bigint('amount', { mode: 'bigint' }).notNull(),
    currency: text('currency').notNull(),
    occurredAt: ts('occurred_at').notNull(),
    eventId: text('event_id').notNull(),
  },
  (t) => [index('fraud_activity_wallet_time_idx').on(t.walletId, t.kind, t.occurredAt)],
);

export const riskAlerts = pgTable(
  'risk_alerts',
  {
    id: uuid('id').primaryKey(),
    walletId: uuid('wallet_id').notNull(),
    rule: text('rule').notNull(),
    reason: text('reason').notNull(),
    triggerEventId: text('trigger_event_id').notNull(),
    operationId: uuid('operation_id'),
    frozen: boolean('frozen').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [uniqueIndex('risk_alerts_trigger_rule_uq').on(t.triggerEventId, t.rule), index('risk_alerts_wallet_idx').on(t.walletId)],
);

export const webhookEndpoints = pgTable(
  'webhook_endpoints',
  {
    id: uuid('id').primaryKey(),
    clientId: uuid('client_id').notNull(),
    url: text('url').notNull(),
    events: text('events').array().notNull(),
    secret: text('secret').notNull(),
    status: text('status', { enum: ['active', 'disabled'] }).notNull().default('active'),
    disabledReason: text('disabled_reason'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [index('webhook_endpoints_client_idx').on(t.clientId)],
);

export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: uuid('id').primaryKey(),
    endpointId: uuid('endpoint_id')
      .notNull()
      .references(() => webhookEndpoints.id),
    eventId: text('event_id').notNull(),
    eventType: text('event_type').notNull(),
    /** The exact body sent (signed as is). */
    body: text('body').notNull(),
    status: text('status', { enum: ['pending', 'succeeded', 'failed'] }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    /** Bumped by a manual retry; a job `<id>-g<generation>` is enqueued once per generation. */
    generation: integer('generation').notNull().default(1),
    enqueuedGeneration: integer('enqueued_generation').notNull().default(0),
    lastStatusCode: integer('last_status_code'),
    lastError: text('last_error'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
    completedAt: ts('completed_at'),
  },
  (t) => [
    uniqueIndex('webhook_deliveries_endpoint_event_uq').on(t.endpointId, t.eventId),
    index('webhook_deliveries_unqueued_idx').on(t.createdAt).where(sql`${t.status} = 'pending' AND ${t.enqueuedGeneration} < ${t.generation}`),
    index('webhook_deliveries_endpoint_idx').on(t.endpointId, t.createdAt),
  ],
);

/** The delivery log: one row per HTTP attempt. */
export const webhookAttempts = pgTable(
  'webhook_attempts',
  {
    seq: bigserial('seq', { mode: 'bigint' }).primaryKey(),
    deliveryId: uuid('delivery_id')
      .notNull()
      .references(() => webhookDeliveries.id),
    statusCode: integer('status_code'),
    error: text('error'),
    durationMs: integer('duration_ms').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [index('webhook_attempts_delivery_idx').on(t.deliveryId)],
);
