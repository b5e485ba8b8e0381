import { randomUUID } from 'node:crypto';
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Db, Tx } from '../db/client.ts';
import { retryOnConflict } from '../db/errors.ts';
import { assertNotFenced } from '../db/repositories/shard-fences.ts';
import { ledgerEntries, operations, outbox, wallets } from '../db/schema.ts';
import { planFund, planTransfer, type Plan, type PlannedEntry, type WalletState } from '../domain/ledger.ts';
import { isTerminal, operationView } from '../domain/operation-view.ts';
import { outboxEvent } from '../events/outbox-event.ts';

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
  const [row] = await db
    .select()
    .from(wallets)
    .where(and(eq(wallets.kind, kind), eq(wallets.currency, currency)));
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
      id: randomUUID(),
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

/** Marks an open operation terminal and inserts its one outbox event, in the caller's transaction. */
export async function finishOperation(
  tx: Tx,
  op: OperationRow,
  outcome: { ok: true } | { ok: false; code: string; message: string },
  now: Date,
): Promise<OperationRow> {
  const status = outcome.ok ? 'succeeded' : 'failed';
  const [settled] = await tx
    .update(operations)
    .set({
      status,
      failureCode: outcome.ok ? null : outcome.code,
      failureMessage: outcome.ok ? null : outcome.message,
      completedAt: now,
      updatedAt: now,
    })
    .where(eq(operations.id, op.id))
    .returning();
  if (!settled || !isTerminal(settled.status)) throw new Error(`operation ${op.id} did not settle`);
  const eventType =
    op.type === 'fund'
      ? outcome.ok ? 'wallet.funded' : 'wallet.fund_failed'
      : outcome.ok ? 'transfer.completed' : 'transfer.failed';
  await tx
    .insert(outbox)
    .values({
      ...outboxEvent(eventType, op.fromWalletId ?? op.toWalletId, operationView(settled), op.id),
      requestId: op.requestId,
      traceparent: op.traceparent,
    });
  return settled;
}

/**
 * Settles one operation in one transaction: locks the operation, returns at once if it is
 * already terminal (a redelivered job), locks its wallets in id order, writes the two ledger
 * entries and balances (or the failure), flips the status and inserts the outbox event.
 * Deadlocks and serialization failures are retried; anything else throws and nothing is written.
 */
export async function settleOperation(db: Db, operationId: string): Promise<SettleResult> {
  return retryOnConflict(() =>
    db.transaction(async (tx) => {
      const [op] = await tx.select().from(operations).where(eq(operations.id, operationId)).for('update');
      if (!op) {
        await assertNotFenced(tx, [operationId]);
        return { outcome: 'missing' } as const;
      }
      if (op.status === 'succeeded' || op.status === 'failed') {
        return { outcome: 'already_terminal', status: op.status } as const;
      }
      if (op.type === 'transfer' && op.status === 'processing') {
        throw new Error(`transfer ${op.id} has a cross-shard saga in flight; it settles through the saga`);
      }

      const ids = [...new Set([op.fromWalletId, op.toWalletId].filter((x): x is string => x !== null))].sort();
      // LockRows sits above the sort, so rows are locked in id order: no lock-order deadlocks.
      const locked = await tx.select().from(wallets).where(inArray(wallets.id, ids)).orderBy(wallets.id).for('update');
      const byId = new Map(locked.map((w) => [w.id, w]));
      await assertNotFenced(tx, ids.filter((id) => !byId.has(id))); // missing, or moved away?

      let plan: Plan;
      if (op.type === 'fund') {
        const wallet = byId.get(op.toWalletId);
        const settlement = await internalAccount(tx, 'settlement', op.currency);
        byId.set(settlement.id, settlement);
        plan = planFund({ wallet: wallet && toWalletState(wallet), settlement: toWalletState(settlement), amountMinor: op.amount });
      } else {
        const from = op.fromWalletId ? byId.get(op.fromWalletId) : undefined;
        const to = byId.get(op.toWalletId);
        plan = planTransfer({
          from: from && toWalletState(from),
          to: to && toWalletState(to),
          amountMinor: op.amount,
          currency: op.currency,
        });
      }

      const now = new Date();
      if (plan.ok) await writeEntries(tx, op.id, plan.entries, byId, now);
      const status = plan.ok ? 'succeeded' : 'failed';
      await finishOperation(tx, op, plan, now);

      return {
        outcome: 'settled',
        type: op.type,
        status,
        ...(plan.ok ? {} : { failureCode: plan.code }),
        walletIds: ids,
        acceptedAt: op.createdAt,
        completedAt: now,
      } as const;
    }),
  );
}
