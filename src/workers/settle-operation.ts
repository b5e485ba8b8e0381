import { randomUUID } from 'node:crypto';
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Db, Tx } from '../db/client.ts';
import { retryOnConflict } from '../db/errors.ts';
import { ledgerEntries, operations, outbox, wallets } from '../db/schema.ts';
import { planFund, planTransfer, type Plan, type WalletState } from '../domain/ledger.ts';
import { isTerminal, operationView } from '../domain/operation-view.ts';
import { outboxEvent } from '../events/outbox-event.ts';

export type SettleResult =
  | { outcome: 'missing' }
  | { outcome: 'already_terminal'; status: 'succeeded' | 'failed' }
  | {
      outcome: 'settled';
      status: 'succeeded' | 'failed';
      failureCode?: string;
      walletIds: string[];
      /** For transfer_duration_seconds: accepted (operation created) → terminal. */
      acceptedAt: Date;
      completedAt: Date;
    };

type WalletRow = typeof wallets.$inferSelect;

const toState = (w: WalletRow): WalletState => ({
  id: w.id,
  kind: w.kind,
  currency: w.currency,
  status: w.status,
  balanceMinor: w.balance,
  heldMinor: w.held,
});

/** The settlement account of a currency in this database, created on first use. */
async function settlementAccount(db: Db | Tx, currency: string): Promise<WalletRow> {
  await db
    .insert(wallets)
    .values({ id: randomUUID(), kind: 'settlement', currency })
    .onConflictDoNothing({ target: wallets.currency, where: sql`${wallets.kind} = 'settlement'` });
  const [row] = await db
    .select()
    .from(wallets)
    .where(and(eq(wallets.kind, 'settlement'), eq(wallets.currency, currency)));
  if (!row) throw new Error(`settlement account for ${currency} missing after upsert`);
  return row;
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
      if (!op) return { outcome: 'missing' } as const;
      if (op.status === 'succeeded' || op.status === 'failed') {
        return { outcome: 'already_terminal', status: op.status } as const;
      }

      const ids = [...new Set([op.fromWalletId, op.toWalletId].filter((x): x is string => x !== null))].sort();
      // LockRows sits above the sort, so rows are locked in id order: no lock-order deadlocks.
      const locked = await tx.select().from(wallets).where(inArray(wallets.id, ids)).orderBy(wallets.id).for('update');
      const byId = new Map(locked.map((w) => [w.id, w]));

      let plan: Plan;
      if (op.type === 'fund') {
        const wallet = byId.get(op.toWalletId);
        const settlement = await settlementAccount(tx, op.currency);
        byId.set(settlement.id, settlement);
        plan = planFund({ wallet: wallet && toState(wallet), settlement: toState(settlement), amountMinor: op.amount });
      } else {
        const from = op.fromWalletId ? byId.get(op.fromWalletId) : undefined;
        const to = byId.get(op.toWalletId);
        plan = planTransfer({
          from: from && toState(from),
          to: to && toState(to),
          amountMinor: op.amount,
          currency: op.currency,
        });
      }

      const now = new Date();
      if (plan.ok) {
        const rows = [];
        for (const entry of plan.entries) {
          const wallet = byId.get(entry.walletId)!;
          let balanceAfter: bigint | null = null;
          if (wallet.kind === 'customer') {
            balanceAfter = wallet.balance + entry.amountMinor;
            await tx
              .update(wallets)
              .set({ balance: balanceAfter, updatedAt: now })
              .where(eq(wallets.id, wallet.id));
          }
          rows.push({
            id: randomUUID(),
            operationId: op.id,
            walletId: entry.walletId,
            leg: entry.leg,
            amount: entry.amountMinor,
            balanceAfter,
            createdAt: now,
          });
        }
        await tx.insert(ledgerEntries).values(rows);
      }

      const status = plan.ok ? 'succeeded' : 'failed';
      const [settled] = await tx
        .update(operations)
        .set({
          status,
          failureCode: plan.ok ? null : plan.code,
          failureMessage: plan.ok ? null : plan.message,
          completedAt: now,
          updatedAt: now,
        })
        .where(eq(operations.id, op.id))
        .returning();
      if (!settled || !isTerminal(settled.status)) throw new Error(`operation ${op.id} did not settle`);

      const eventType =
        op.type === 'fund'
          ? plan.ok ? 'wallet.funded' : 'wallet.fund_failed'
          : plan.ok ? 'transfer.completed' : 'transfer.failed';
      const key = op.fromWalletId ?? op.toWalletId;
      await tx
        .insert(outbox)
        .values({ ...outboxEvent(eventType, key, operationView(settled), op.id), requestId: op.requestId, traceparent: op.traceparent });

      return {
        outcome: 'settled',
        status,
        ...(plan.ok ? {} : { failureCode: plan.code }),
        walletIds: ids,
        acceptedAt: op.createdAt,
        completedAt: now,
      } as const;
    }),
  );
}
