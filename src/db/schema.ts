import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  check,
  index,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();
const updatedAt = () => timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();
const minor = (name: string) => bigint(name, { mode: 'bigint' });

/** API clients. They live in the control database (the one holding logical shard 0). */
export const clients = pgTable('clients', {
  id: uuid('id').primaryKey(),
  name: text('name').notNull(),
  /** Requests per hour per class, overriding the defaults (rate limits). */
  rateLimits: jsonb('rate_limits').$type<Record<string, number>>().notNull().default({}),
  createdAt: createdAt(),
});

/** API keys, stored as SHA-256 of the random key: the key itself is shown once. */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey(),
    clientId: uuid('client_id')
      .notNull()
      .references(() => clients.id),
    keyHash: text('key_hash').notNull(),
    createdAt: createdAt(),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [uniqueIndex('api_keys_key_hash_uq').on(t.keyHash)],
);

/**
 * Wallets of customers, and per currency one settlement account standing for the payment
 * gateway. Customer balances are a cached sum of their entries, kept in the settling
 * transaction; the settlement account's balance is not cached (it would be every fund's hot row):
 * its balance is the sum of its entries and goes negative as money comes in.
 */
export const wallets = pgTable(
  'wallets',
  {
    id: uuid('id').primaryKey(),
    kind: text('kind', { enum: ['customer', 'settlement'] }).notNull().default('customer'),
    clientId: uuid('client_id'),
    currency: text('currency').notNull(),
    status: text('status', { enum: ['active', 'frozen'] }).notNull().default('active'),
    balance: minor('balance').notNull().default(sql`0`),
    /** Funds held by in-flight cross-shard transfers; available = balance - held. */
    held: minor('held').notNull().default(sql`0`),
    reference: text('reference'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    check('wallets_balance_nonnegative', sql`${t.balance} >= 0`),
    check('wallets_held_within_balance', sql`${t.held} >= 0 AND ${t.held} <= ${t.balance}`),
    check('wallets_kind_owner', sql`(${t.kind} = 'customer') = (${t.clientId} IS NOT NULL)`),
    index('wallets_client_idx').on(t.clientId),
    uniqueIndex('wallets_settlement_currency_uq').on(t.currency).where(sql`${t.kind} = 'settlement'`),
  ],
);

/** The asynchronous request: accepted (pending), then settled to succeeded or failed. */
export const operations = pgTable(
  'operations',
  {
    id: uuid('id').primaryKey(),
    clientId: uuid('client_id').notNull(),
    type: text('type', { enum: ['fund', 'transfer'] }).notNull(),
    status: text('status', { enum: ['pending', 'processing', 'succeeded', 'failed'] })
      .notNull()
      .default('pending'),
    amount: minor('amount').notNull(),
    currency: text('currency').notNull(),
    fromWalletId: uuid('from_wallet_id'),
    toWalletId: uuid('to_wallet_id').notNull(),
    reference: text('reference'),
    paymentMethod: text('payment_method'),
    idempotencyKey: text('idempotency_key').notNull(),
    /** SHA-256 of the canonical request; a key reused with another body is refused. */
    requestHash: text('request_hash').notNull(),
    failureCode: text('failure_code'),
    failureMessage: text('failure_message'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    completedAt: timestamp('completed_at', { withTimezone: true, mode: 'date' }),
    /** X-Request-Id and W3C traceparent of the accepting request: logs and events follow them. */
    requestId: text('request_id'),
    traceparent: text('traceparent'),
  },
  (t) => [
    uniqueIndex('operations_client_idempotency_uq').on(t.clientId, t.idempotencyKey),
    index('operations_open_idx')
      .on(t.createdAt)
      .where(sql`${t.status} IN ('pending', 'processing')`),
    check('operations_amount_positive', sql`${t.amount} > 0`),
    check(
      'operations_terminal_consistent',
      sql`(${t.status} IN ('succeeded', 'failed')) = (${t.completedAt} IS NOT NULL)`,
    ),
  ],
);

/** Double-entry ledger: each settled operation writes one debit and one credit summing to zero. */
export const ledgerEntries = pgTable(
  'ledger_entries',
  {
    seq: bigserial('seq', { mode: 'bigint' }).primaryKey(),
    id: uuid('id').notNull(),
    operationId: uuid('operation_id')
      .notNull()
      .references(() => operations.id),
    walletId: uuid('wallet_id')
      .notNull()
      .references(() => wallets.id),
    leg: text('leg', { enum: ['debit', 'credit'] }).notNull(),
    /** Signed minor units: negative for a debit. */
    amount: minor('amount').notNull(),
    /** The wallet's balance after this entry; null for the uncached settlement account. */
    balanceAfter: minor('balance_after'),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('ledger_entries_operation_leg_uq').on(t.operationId, t.leg),
    uniqueIndex('ledger_entries_id_uq').on(t.id),
    index('ledger_entries_wallet_seq_idx').on(t.walletId, t.seq),
    check('ledger_entries_sign', sql`(${t.leg} = 'debit' AND ${t.amount} < 0) OR (${t.leg} = 'credit' AND ${t.amount} > 0)`),
  ],
);

/** Transactional outbox: written with the change it announces, published by the relay. */
export const outbox = pgTable(
  'outbox',
  {
    seq: bigserial('seq', { mode: 'bigint' }).primaryKey(),
    eventId: uuid('event_id').notNull(),
    type: text('type').notNull(),
    /** Kafka message key: events about one wallet keep their order. */
    key: text('key').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    operationId: uuid('operation_id'),
    createdAt: createdAt(),
    sentAt: timestamp('sent_at', { withTimezone: true, mode: 'date' }),
    /** Of the request behind the event; the relay sends `traceparent` as a Kafka header. */
    requestId: text('request_id'),
    traceparent: text('traceparent'),
  },
  (t) => [
    uniqueIndex('outbox_event_id_uq').on(t.eventId),
    index('outbox_unsent_idx').on(t.seq).where(sql`${t.sentAt} IS NULL`),
    uniqueIndex('outbox_operation_uq').on(t.operationId),
  ],
);
