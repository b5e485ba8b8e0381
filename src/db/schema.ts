import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  check,
  index,
  jsonb,
  pgTable,
  primaryKey,
  smallint,
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
 * Wallets of customers, and per currency and database two internal accounts: `settlement`
 * stands for the payment gateway (money in), `clearing` for money in transit between shard
 * databases (a cross-shard transfer debits the source against clearing in the source database
 * and credits the destination against clearing in the destination database, so every
 * database's books balance on their own and clearing nets to zero across databases).
 * Customer balances are a cached sum of their entries, kept in the settling transaction;
 * internal accounts' balances are not cached (they would be every operation's hot row):
 * their balance is the sum of their entries.
 */
export const wallets = pgTable(
  'wallets',
  {
    id: uuid('id').primaryKey(),
    kind: text('kind', { enum: ['customer', 'settlement', 'clearing'] }).notNull().default('customer'),
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
    uniqueIndex('wallets_internal_kind_currency_uq').on(t.kind, t.currency).where(sql`${t.kind} <> 'customer'`),
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
  // One operation per (client, key) is idempotency_keys' primary key: an operation is only ever
  // written with the id its key's committed claim names (0010 dropped a unique index that
  // repeated it here at two index writes per operation).
  (t) => [
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
    /** No foreign key: a cross-shard transfer's credit lives in another database than its operation. */
    operationId: uuid('operation_id').notNull(),
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
    // One debit and one credit per operation per wallet: the same operation's legs in one
    // database may include a wallet that arrived from another database by a shard move.
    uniqueIndex('ledger_entries_operation_wallet_leg_uq').on(t.operationId, t.walletId, t.leg),
    // The entry's `id` is a fresh UUIDv7 and no query looks an entry up by it; 0010 dropped its
    // unique index (an index write per entry on the settlement's critical path).
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

/**
 * A cross-shard transfer's saga, in the source wallet's database beside its operation:
 * `held` after the hold committed; `completed` / `failed` once the hold was settled or released.
 */
export const transferSagas = pgTable('transfer_sagas', {
  operationId: uuid('operation_id')
    .primaryKey()
    .references(() => operations.id),
  state: text('state', { enum: ['held', 'completed', 'failed'] }).notNull(),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

/**
 * The destination step of a cross-shard transfer, in the destination wallet's database: one
 * row per operation records whether the credit was applied or refused, so the step never
 * applies twice and the source learns its outcome.
 */
export const sagaCredits = pgTable('saga_credits', {
  operationId: uuid('operation_id').primaryKey(),
  /** The destination wallet: the record moves with it when its shard moves. */
  walletId: uuid('wallet_id').notNull(),
  outcome: text('outcome', { enum: ['credited', 'rejected'] }).notNull(),
  failureCode: text('failure_code'),
  failureMessage: text('failure_message'),
  createdAt: createdAt(),
});

/**
 * Idempotency keys, in the database chosen by a hash of (client, key), so a key is unique per
 * client across all shard databases. The operation it names is then inserted in its source
 * wallet's shard; a retry finds the same operation id here and finishes the insert.
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    clientId: uuid('client_id').notNull(),
    key: text('key').notNull(),
    requestHash: text('request_hash').notNull(),
    operationId: uuid('operation_id').notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.clientId, t.key] })],
);

/**
 * Logical shards assigned to a database other than the default rule floor(s*N/256), written by
 * the shard-move command. Lives in the control database; every process reloads it.
 */
export const shardAssignments = pgTable('shard_assignments', {
  logicalShard: smallint('logical_shard').primaryKey(),
  databaseIndex: smallint('database_index').notNull(),
  updatedAt: updatedAt(),
});

/**
 * Logical shards this database must not write: being moved away, or moved away. A trigger
 * refuses writes to their rows (SQLSTATE LL001), so a process with a stale shard map cannot
 * write to the old database.
 */
export const fencedShards = pgTable('fenced_shards', {
  logicalShard: smallint('logical_shard').primaryKey(),
  createdAt: createdAt(),
});

/** Shard moves, in the control database: a crashed move is resumed by running the command again. */
export const shardMoves = pgTable(
  'shard_moves',
  {
    id: uuid('id').primaryKey(),
    logicalShard: smallint('logical_shard').notNull(),
    fromDatabase: smallint('from_database').notNull(),
    toDatabase: smallint('to_database').notNull(),
    state: text('state', { enum: ['copying', 'switched', 'done'] }).notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  // One unfinished move per shard: two first runs started together would each write the
  // clearing entries of their own move (each database's books off by the moved amount).
  (t) => [uniqueIndex('shard_moves_one_open_uq').on(t.logicalShard).where(sql`${t.state} <> 'done'`)],
);

/**
 * What the payment gateway said about a fund operation's charge, recorded before the
 * wallet is credited. The gateway idempotency key is the operation id. `requested`: a call went
 * out and its outcome is unknown (it may have charged); `approved`/`declined`: the gateway's
 * answer; `voided`: the key was reversed at the gateway (refund or tombstone) before failing.
 */
export const gatewayCharges = pgTable(
  'gateway_charges',
  {
    operationId: uuid('operation_id')
      .primaryKey()
      .references(() => operations.id),
    status: text('status', { enum: ['requested', 'approved', 'declined', 'voided'] }).notNull(),
    gatewayChargeId: text('gateway_charge_id'),
    declineCode: text('decline_code'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [index('gateway_charges_status_idx').on(t.status)],
);
