/**
 * Reads what the checker needs from the world after recovery: every shard database's wallets,
 * entries, operations, idempotency keys and outbox; the consumers' tables in the control
 * database; the gateway simulator's charges. Also the quiescence probe the recovery phase
 * polls. Money is read as text and turned into bigint here (no float anywhere).
 */
import pg from 'pg';
import type { RunningGatewaySim } from '../src/gateway-sim/start-gateway-sim.ts';
import type { DatabaseSnapshot, Snapshot } from './checker.ts';
import type { WebhookReceiver } from './webhook-receiver.ts';

export function openPools(urls: readonly string[]): pg.Pool[] {
  return urls.map((url) => {
    const pool = new pg.Pool({ connectionString: url, max: 2, application_name: 'chaos-harness' });
    pool.on('error', () => {});
    return pool;
  });
}

async function readDatabase(pool: pg.Pool): Promise<DatabaseSnapshot> {
  const [wallets, entries, operations, keys, outbox] = await Promise.all([
    pool.query(`SELECT id, kind, currency, balance::text AS balance, held::text AS held FROM wallets`),
    pool.query(`SELECT operation_id, wallet_id, leg, amount::text AS amount FROM ledger_entries`),
    pool.query(
      `SELECT id, client_id, type, status, amount::text AS amount, from_wallet_id, to_wallet_id, idempotency_key, failure_code FROM operations`,
    ),
    pool.query(`SELECT client_id, key, operation_id FROM idempotency_keys`),
    pool.query(`SELECT event_id, type, operation_id, sent_at IS NOT NULL AS sent FROM outbox`),
  ]);
  return {
    wallets: wallets.rows.map((r) => ({ id: r.id, kind: r.kind, currency: r.currency, balance: BigInt(r.balance), held: BigInt(r.held) })),
    entries: entries.rows.map((r) => ({ operationId: r.operation_id, walletId: r.wallet_id, leg: r.leg, amount: BigInt(r.amount) })),
    operations: operations.rows.map((r) => ({
      id: r.id,
      clientId: r.client_id,
      type: r.type,
      status: r.status,
      amount: BigInt(r.amount),
      fromWalletId: r.from_wallet_id,
      toWalletId: r.to_wallet_id,
      idempotencyKey: r.idempotency_key,
      failureCode: r.failure_code,
    })),
    idempotencyKeys: keys.rows.map((r) => ({ clientId: r.client_id, key: r.key, operationId: r.operation_id })),
    outbox: outbox.rows.map((r) => ({ eventId: r.event_id, type: r.type, operationId: r.operation_id, sent: r.sent })),
  };
}

export async function readSnapshot(
  pools: pg.Pool[],
  gateway: RunningGatewaySim,
  webhooks: { receiver: WebhookReceiver; subscribed: readonly string[] },
  consumerNames: readonly string[],
): Promise<Snapshot> {
  const control = pools[0]!;
  const [databases, processed, audit, analytics, deliveries] = await Promise.all([
    Promise.all(pools.map(readDatabase)),
    control.query(`SELECT consumer, event_id FROM consumer_processed_events`),
    control.query(`SELECT seq::text AS seq, event_id, event_type, subject, event_time, payload, prev_hash, hash FROM audit_log`),
    control.query(`SELECT event_type, SUM(count)::text AS count FROM analytics_buckets WHERE granularity = 'hour' GROUP BY 1`),
    control.query(`SELECT event_id, status FROM webhook_deliveries`),
  ]);
  return {
    databases,
    consumers: {
      names: consumerNames,
      processed: processed.rows.map((r) => ({ consumer: r.consumer, eventId: r.event_id })),
      audit: audit.rows.map((r) => ({
        seq: BigInt(r.seq),
        eventId: r.event_id,
        eventType: r.event_type,
        subject: r.subject,
        eventTime: r.event_time,
        payload: r.payload,
        prevHash: r.prev_hash,
        hash: r.hash,
      })),
      analytics: analytics.rows.map((r) => ({ eventType: r.event_type, count: BigInt(r.count) })),
    },
    gateway: gateway.state.ledger.all().map((c) => ({ idempotencyKey: c.idempotencyKey, amount: c.amount, status: c.status })),
    webhooks: {
      subscribed: webhooks.subscribed,
      received: [...webhooks.receiver.received].map(([eventId, count]) => ({ eventId, count })),
      badSignatures: webhooks.receiver.badSignatures,
      deliveries: deliveries.rows.map((r) => ({ eventId: r.event_id, status: r.status })),
    },
  };
}

export interface Progress {
  open: number;
  unsent: number;
  events: number;
  /** Events each consumer has applied. */
  consumed: Record<string, number>;
  /** Webhook deliveries not yet sent (or given up). */
  webhooksPending: number;
}

/** How far the system is from quiet: open operations, unsent events, and each consumer's count. */
export async function readProgress(pools: pg.Pool[], consumerNames: readonly string[]): Promise<Progress> {
  let open = 0;
  let unsent = 0;
  let events = 0;
  for (const pool of pools) {
    const { rows } = await pool.query(`SELECT
      (SELECT COUNT(*) FROM operations WHERE status IN ('pending', 'processing'))::int AS open,
      (SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL)::int AS unsent,
      (SELECT COUNT(*) FROM outbox)::int AS events`);
    open += rows[0].open;
    unsent += rows[0].unsent;
    events += rows[0].events;
  }
  const { rows } = await pools[0]!.query(`SELECT consumer, COUNT(*)::int AS n FROM consumer_processed_events GROUP BY 1`);
  const consumed = Object.fromEntries(consumerNames.map((n) => [n, rows.find((r) => r.consumer === n)?.n ?? 0]));
  const pending = await pools[0]!.query(`SELECT COUNT(*)::int AS n FROM webhook_deliveries WHERE status = 'pending'`);
  return { open, unsent, events, consumed, webhooksPending: pending.rows[0].n };
}

export const isQuiet = (p: Progress) =>
  p.open === 0 && p.unsent === 0 && p.webhooksPending === 0 && Object.values(p.consumed).every((n) => n >= p.events);
