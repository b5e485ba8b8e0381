import { randomUUID } from 'node:crypto';
import { and, eq, sql, type SQL } from 'drizzle-orm';
import type { Db, Tx } from '../db/client.ts';
import { anyId, bigintArray, OPEN_STATUS, param, textArray, uuidArray } from '../db/sql.ts';
import { retryOnConflict } from '../db/errors.ts';
import { assertNotFenced } from '../db/repositories/shard-fences.ts';
import { gatewayCharges, ledgerEntries, operations, wallets } from '../db/schema.ts';
import { planFund, planTransfer, type Plan, type PlannedEntry, type WalletState } from '../domain/ledger.ts';
import { operationView } from '../domain/operation-view.ts';
import { outboxEvent } from '../events/outbox-event.ts';
import { newTimeOrderedId } from '../domain/ids.ts';

export type SettleResult =
  | { outcome: 'missing' }
  | { outcome: 'already_terminal'; status: 'succeeded' | 'failed' }
  | {
      outcome: 'settled';
      type: 'fund' | 'transfer';
      status: 'succeeded' | 'failed';
      failureCode?: string;
      walletIds: string[];
      /** For transfer_duration_seconds: accepted (operation created) → terminal. */
      acceptedAt: Date;
      completedAt: Date;
    };

type WalletRow = typeof wallets.$inferSelect;
type OperationRow = typeof operations.$inferSelect;

/** An internal account (settlement or clearing) of a currency in this database, created on first use. */
export async function internalAccount(db: Db | Tx, kind: 'settlement' | 'clearing', currency: string): Promise<WalletRow> {
  await db
    .insert(wallets)
    .values({ id: randomUUID(), kind, currency })
    .onConflictDoNothing({ target: [wallets.kind, wallets.currency], where: sql`${wallets.kind} <> 'customer'` });
  // The kind as a literal: the partial index wallets_internal_kind_currency_uq applies also in a
  // prepared statement's generic plan (src/db/sql.ts).
  const [row] = await db
    .select()
    .from(wallets)
    .where(and(kind === 'settlement' ? sql`${wallets.kind} = 'settlement'` : sql`${wallets.kind} = 'clearing'`, eq(wallets.currency, currency)));
  if (!row) throw new Error(`${kind} account for ${currency} missing after upsert`);
  return row;
}

export const toWalletState = (w: WalletRow): WalletState => ({
  id: w.id,
  kind: w.kind,
  currency: w.currency,
  status: w.status,
  balanceMinor: w.balance,
  heldMinor: w.held,
});

/**
 * Writes a plan's entries and the new cached balances of the customer wallets among them
 * (internal accounts are not cached). `wallets` must hold every wallet of the plan, locked.
 */
export async function writeEntries(
  tx: Tx,
  operationId: string,
  entries: readonly PlannedEntry[],
  walletsById: ReadonlyMap<string, WalletRow>,
  now: Date,
  heldReleaseMinor = 0n,
): Promise<void> {
  const rows = [];
  for (const entry of entries) {
    const wallet = walletsById.get(entry.walletId);
    if (!wallet) throw new Error(`entry for a wallet not locked: ${entry.walletId}`);
    let balanceAfter: bigint | null = null;
    if (wallet.kind === 'customer') {
      balanceAfter = wallet.balance + entry.amountMinor;
      const release = entry.amountMinor < 0n ? heldReleaseMinor : 0n;
      await tx
        .update(wallets)
        .set({ balance: balanceAfter, held: wallet.held - release, updatedAt: now })
        .where(eq(wallets.id, wallet.id));
    }
    rows.push({
      id: newTimeOrderedId(),
      operationId,
      walletId: entry.walletId,
      leg: entry.leg,
      amount: entry.amountMinor,
      balanceAfter,
      createdAt: now,
    });
  }
  await tx.insert(ledgerEntries).values(rows);
}

/** What one operation of a group came to; `saga` means it is not this database's to settle alone. */
export type GroupResult = SettleResult | { outcome: 'saga' };

/** A fund the ledger would credit but whose charge the gateway has not approved (see settleOperations). */
export class FundNotCharged extends Error {
  constructor(readonly operationId: string) {
    super(`fund ${operationId} has no approved charge: it is credited after its charge`);
    this.name = 'FundNotCharged';
  }
}


/**
 * Settles a group of operations of one database in one transaction (group commit): locks the
 * operations and then their wallets once each, in id order; plans each open operation in
 * acceptance order against the balances the earlier ones left; then writes balances, entries,
 * statuses and outbox events in one statement each. Terminal operations (redelivered jobs) are
 * reported and left alone; a transfer whose wallets are not all in this database, or whose saga
 * has begun, is answered `saga` and left alone.
 *
 * Deadlocks and serialization failures are retried. Any other error rolls the whole group back
 * (nothing half-applied) and is thrown: the caller splits the group to isolate the bad one.
 */
export async function settleOperations(
  db: Db,
  operationIds: readonly string[],
  isLocal: (walletId: string) => boolean = () => true,
): Promise<Map<string, GroupResult>> {
  const ids = [...new Set(operationIds)].sort();
  return retryOnConflict(() =>
    db.transaction(async (tx) => {
      const results = new Map<string, GroupResult>();
      // `= ANY(array)`: one parameter however many ids (cheaper to build and to plan than IN (...)).
      const ops = await tx.select().from(operations).where(anyId(operations.id, ids)).orderBy(operations.id).for('update');
      const found = new Set(ops.map((o) => o.id));
      const missing = ids.filter((id) => !found.has(id));
      await assertNotFenced(tx, missing); // not here because its shard moved away?
      for (const id of missing) results.set(id, { outcome: 'missing' });

      const open: OperationRow[] = [];
      for (const op of ops) {
        if (op.status === 'succeeded' || op.status === 'failed') {
          results.set(op.id, { outcome: 'already_terminal', status: op.status });
        } else if (
          op.type === 'transfer' &&
          op.fromWalletId !== op.toWalletId &&
          (op.status === 'processing' || !isLocal(op.toWalletId) || (op.fromWalletId !== null && !isLocal(op.fromWalletId)))
        ) {
          results.set(op.id, { outcome: 'saga' });
        } else {
          open.push(op);
        }
      }
      if (open.length === 0) return results;

      const walletIds = [...new Set(open.flatMap((op) => [op.fromWalletId, op.toWalletId].filter((x): x is string => x !== null)))].sort();
      // LockRows sits above the sort, so rows are locked in id order: no lock-order deadlocks.
      const locked = await tx.select().from(wallets).where(anyId(wallets.id, walletIds)).orderBy(wallets.id).for('update');
      const byId = new Map(locked.map((w) => [w.id, { ...w }]));
      await assertNotFenced(tx, walletIds.filter((id) => !byId.has(id))); // missing, or moved away?
      const settlementOf = new Map<string, WalletRow>();
      for (const currency of new Set(open.filter((op) => op.type === 'fund').map((op) => op.currency))) {
        const account = await internalAccount(tx, 'settlement', currency);
        settlementOf.set(currency, account);
        byId.set(account.id, { ...account });
      }

      // A fund credits only a charge the gateway approved. Its charge is skipped while the wallet
      // would be refused (frozen, say); if the wallet changed before this transaction locked it,
      // crediting now would create money no one paid: the fund's job charges it, then credits it again.
      const fundIds = open.filter((op) => op.type === 'fund').map((op) => op.id);
      const charged = new Set(
        fundIds.length === 0
          ? []
          : (await tx
              .select({ id: gatewayCharges.operationId })
              .from(gatewayCharges)
              .where(and(anyId(gatewayCharges.operationId, fundIds), eq(gatewayCharges.status, 'approved')))).map((r) => r.id),
      );

      const now = new Date();
      const entries: { id: string; operationId: string; walletId: string; leg: string; amount: bigint; balanceAfter: bigint | null }[] = [];
      const settled: { op: OperationRow; outcome: { ok: true } | { ok: false; code: string; message: string } }[] = [];
      open.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1));
      for (const op of open) {
        let plan: Plan;
        if (op.type === 'fund') {
          const wallet = byId.get(op.toWalletId);
          plan = planFund({
            wallet: wallet && toWalletState(wallet),
            settlement: toWalletState(settlementOf.get(op.currency)!),
            amountMinor: op.amount,
          });
          // Thrown: the group rolls back and is split until this fund fails alone (its job retries).
          if (plan.ok && !charged.has(op.id)) throw new FundNotCharged(op.id);
        } else {
          const from = op.fromWalletId ? byId.get(op.fromWalletId) : undefined;
          const to = byId.get(op.toWalletId);
          plan = planTransfer({ from: from && toWalletState(from), to: to && toWalletState(to), amountMinor: op.amount, currency: op.currency });
        }
        if (plan.ok) {
          for (const entry of plan.entries) {
            const wallet = byId.get(entry.walletId)!;
            let balanceAfter: bigint | null = null;
            if (wallet.kind === 'customer') {
              wallet.balance += entry.amountMinor;
              wallet.updatedAt = now;
              balanceAfter = wallet.balance;
            }
            entries.push({ id: newTimeOrderedId(), operationId: op.id, walletId: entry.walletId, leg: entry.leg, amount: entry.amountMinor, balanceAfter });
          }
        }
        settled.push({ op, outcome: plan.ok ? { ok: true } : { ok: false, code: plan.code, message: plan.message } });
        results.set(op.id, {
          outcome: 'settled',
          type: op.type,
          status: plan.ok ? 'succeeded' : 'failed',
          ...(plan.ok ? {} : { failureCode: plan.code }),
          walletIds: [op.fromWalletId, op.toWalletId].filter((x): x is string => x !== null),
          acceptedAt: op.createdAt,
          completedAt: now,
        });
      }

      // Balances and entries go in the same statement as the statuses and events (one round trip).
      const alongside: SQL[] = [];
      const changed = [...byId.values()].filter((w) => w.kind === 'customer' && w.updatedAt === now);
      if (changed.length > 0) {
        alongside.push(sql`balances AS (
          UPDATE wallets AS w SET balance = v.balance, updated_at = ${now}
          FROM unnest(${uuidArray(changed.map((w) => w.id))}, ${bigintArray(changed.map((w) => w.balance))}) AS v(id, balance)
          WHERE w.id = v.id RETURNING 1)`);
      }
      if (entries.length > 0) {
        alongside.push(sql`entries AS (
          INSERT INTO ledger_entries (id, operation_id, wallet_id, leg, amount, balance_after, created_at)
          SELECT id, operation_id, wallet_id, leg, amount, balance_after, ${now}
          FROM unnest(${uuidArray(entries.map((e) => e.id))}, ${uuidArray(entries.map((e) => e.operationId))},
                      ${uuidArray(entries.map((e) => e.walletId))}, ${textArray(entries.map((e) => e.leg))},
                      ${bigintArray(entries.map((e) => e.amount))},
                      ${bigintArray(entries.map((e) => e.balanceAfter))})
            AS v(id, operation_id, wallet_id, leg, amount, balance_after)
          RETURNING 1)`);
      }
      await finishOperations(tx, settled, now, alongside);
      return results;
    }),
  );
}

/**
 * Marks open operations terminal and inserts one outbox event each, set-based, in the caller's
 * transaction (the group commit, and each saga step that ends an operation): one statement,
 * which also runs the caller's `alongside` writes (named data-modifying CTEs, e.g. balances and
 * entries), so a group's writes cost one round trip.
 */
export async function finishOperations(
  tx: Tx,
  settled: readonly { op: OperationRow; outcome: { ok: true } | { ok: false; code: string; message: string } }[],
  now: Date,
  alongside: readonly SQL[] = [],
): Promise<void> {
  const rows = settled.map(({ op, outcome }) => ({
    ...op,
    status: outcome.ok ? ('succeeded' as const) : ('failed' as const),
    failureCode: outcome.ok ? null : outcome.code,
    failureMessage: outcome.ok ? null : outcome.message,
    completedAt: now,
    updatedAt: now,
  }));
  const events = rows.map((row) =>
    outboxEvent(eventTypeOf(row.type, row.status === 'succeeded'), row.fromWalletId ?? row.toWalletId, operationView(row), row.id),
  );
  const finished = sql`finished AS (
    UPDATE operations AS o SET status = v.status, failure_code = v.code, failure_message = v.message, completed_at = ${now}, updated_at = ${now}
    FROM unnest(${uuidArray(rows.map((r) => r.id))}, ${textArray(rows.map((r) => r.status))},
                ${textArray(rows.map((r) => r.failureCode))}, ${textArray(rows.map((r) => r.failureMessage))})
      AS v(id, status, code, message)
    WHERE o.id = v.id AND o.status ${OPEN_STATUS}
    RETURNING o.id)`;
  // The payloads travel as one JSON array (one JSON.stringify; Postgres parses it once), not as a
  // jsonb[] literal, whose per-element quoting in node-postgres cost the worker more CPU and
  // garbage than anything else it sends. ORDER BY keeps the outbox in the group's order.
  const published = sql`published AS (
    INSERT INTO outbox (event_id, type, key, payload, operation_id, request_id, traceparent, created_at)
    SELECT v.event_id, v.type, v.key, p.payload, v.operation_id, v.request_id, v.traceparent, ${now}
    FROM unnest(${uuidArray(events.map((e) => e.eventId))}, ${textArray(events.map((e) => e.type))},
                ${textArray(events.map((e) => e.key))}, ${uuidArray(rows.map((r) => r.id))},
                ${textArray(rows.map((r) => r.requestId))}, ${textArray(rows.map((r) => r.traceparent))})
      WITH ORDINALITY AS v(event_id, type, key, operation_id, request_id, traceparent, n)
    JOIN jsonb_array_elements(${param(JSON.stringify(events.map((e) => e.payload)))}::jsonb) WITH ORDINALITY AS p(payload, n) ON p.n = v.n
    ORDER BY v.n
    RETURNING 1)`;
  const { rows: counted } = await tx.execute<{ updated: number }>(
    sql`WITH ${sql.join([...alongside, finished, published], sql`, `)} SELECT (SELECT count(*) FROM finished)::int AS updated`,
  );
  const updated = Number(counted[0]?.updated ?? 0);
  // An operation no longer open (settled concurrently): roll everything back rather than write its entries twice.
  if (updated !== rows.length) throw new Error(`settled ${updated} of ${rows.length} operations`);
}

const eventTypeOf = (type: 'fund' | 'transfer', ok: boolean) =>
  type === 'fund' ? (ok ? 'wallet.funded' : 'wallet.fund_failed') : ok ? 'transfer.completed' : 'transfer.failed';

/** Settles one operation in one transaction (a group of one); see `settleOperations`. */
export async function settleOperation(db: Db, operationId: string): Promise<SettleResult> {
  const result = (await settleOperations(db, [operationId])).get(operationId);
  if (!result || result.outcome === 'saga') {
    throw new Error(`transfer ${operationId} has a cross-shard saga in flight; it settles through the saga`);
  }
  return result;
}
