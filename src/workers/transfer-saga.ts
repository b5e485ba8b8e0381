/**
 * Cross-shard transfers as a persisted saga (ARCHITECTURE.md decision 6):
 *   1. hold    (source database): available drops by the amount, balance does not;
 *   2. credit  (destination database): the destination is credited against clearing, or refused;
 *   3. settle  (source database): on credit, the hold becomes a debit against clearing and the
 *              operation succeeds; on refusal, the hold is released and the operation fails
 *              with the destination's code (compensation).
 * Each step is one transaction that records its effect in a row (transfer_sagas, saga_credits),
 * so running a step again after a crash finds the row and changes nothing.
 */
import { eq, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { retryOnConflict } from '../db/errors.ts';
import { assertNotFenced } from '../db/repositories/shard-fences.ts';
import { operations, sagaCredits, transferSagas, wallets } from '../db/schema.ts';
import { checkCredit, checkDebit, planClearingLeg } from '../domain/ledger.ts';
import { finishOperations, internalAccount, toWalletState, writeEntries, type SettleResult } from './settle-operation.ts';

type OperationRow = typeof operations.$inferSelect;

/** The settlement a saga step committed, in the shape settlement metrics record. */
function settledResult(op: OperationRow, outcome: { ok: true } | { ok: false; code: string }, now: Date): SettleResult {
  return {
    outcome: 'settled',
    type: 'transfer',
    status: outcome.ok ? 'succeeded' : 'failed',
    ...(outcome.ok ? {} : { failureCode: outcome.code }),
    walletIds: [op.fromWalletId, op.toWalletId].filter((x): x is string => x !== null),
    acceptedAt: op.createdAt,
    completedAt: now,
  };
}

export type HoldResult =
  | { step: 'missing' }
  | { step: 'terminal'; status: 'succeeded' | 'failed' }
  | { step: 'refused'; code: string; settled: SettleResult }
  /** `fresh` is false when the hold already existed (a redelivery or a resume). */
  | { step: 'held'; fresh: boolean };

export type CreditOutcome = { outcome: 'credited' } | { outcome: 'rejected'; code: string; message: string };

/** Step 1, in the source database. A refusal (funds, frozen, currency) fails the operation at once. */
export async function holdFunds(db: Db, operationId: string): Promise<HoldResult> {
  return retryOnConflict(() =>
    db.transaction(async (tx): Promise<HoldResult> => {
      const [op] = await tx.select().from(operations).where(eq(operations.id, operationId)).for('update');
      if (!op) {
        await assertNotFenced(tx, [operationId]);
        return { step: 'missing' };
      }
      if (op.status === 'succeeded' || op.status === 'failed') return { step: 'terminal', status: op.status };
      const [saga] = await tx.select().from(transferSagas).where(eq(transferSagas.operationId, op.id));
      if (saga) return { step: 'held', fresh: false };

      const [from] = op.fromWalletId
        ? await tx.select().from(wallets).where(eq(wallets.id, op.fromWalletId)).for('update')
        : [];
      if (!from && op.fromWalletId) await assertNotFenced(tx, [op.fromWalletId]);
      const now = new Date();
      const check = checkDebit(from && toWalletState(from), op.amount, op.currency);
      if (!check.ok || !from) {
        const refusal = check.ok ? { ok: false as const, code: 'wallet_not_found', message: 'the source wallet does not exist' } : check;
        await finishOperations(tx, [{ op, outcome: refusal }], now);
        return { step: 'refused', code: refusal.code, settled: settledResult(op, { ok: false, code: refusal.code }, now) };
      }
      await tx.update(wallets).set({ held: from.held + op.amount, updatedAt: now }).where(eq(wallets.id, from.id));
      await tx.update(operations).set({ status: 'processing', updatedAt: now }).where(eq(operations.id, op.id));
      await tx.insert(transferSagas).values({ operationId: op.id, state: 'held', createdAt: now, updatedAt: now });
      return { step: 'held', fresh: true };
    }),
  );
}

/** Step 2, in the destination database: credits once, or records why it cannot. */
export async function creditDestination(db: Db, op: OperationRow): Promise<CreditOutcome> {
  return retryOnConflict(() =>
    db.transaction(async (tx): Promise<CreditOutcome> => {
      // Serialises concurrent deliveries of this step before either reads the record.
      await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${op.id}, 0))`);
      const [done] = await tx.select().from(sagaCredits).where(eq(sagaCredits.operationId, op.id));
      if (done) return recorded(done);

      const [to] = await tx.select().from(wallets).where(eq(wallets.id, op.toWalletId)).for('update');
      if (!to) await assertNotFenced(tx, [op.toWalletId]); // missing, or moved away?
      const check = checkCredit(to && toWalletState(to), op.amount, op.currency);
      const now = new Date();
      if (!check.ok || !to) {
        const refusal = check.ok ? { code: 'wallet_not_found', message: 'the destination wallet does not exist' } : check;
        await tx.insert(sagaCredits).values({
          operationId: op.id,
          walletId: op.toWalletId,
          outcome: 'rejected',
          failureCode: refusal.code,
          failureMessage: refusal.message,
          createdAt: now,
        });
        return { outcome: 'rejected', code: refusal.code, message: refusal.message };
      }
      const clearing = await internalAccount(tx, 'clearing', op.currency);
      const plan = planClearingLeg('destination', to.id, clearing.id, op.amount);
      if (!plan.ok) throw new Error('clearing leg cannot fail');
      await writeEntries(tx, op.id, plan.entries, new Map([[to.id, to], [clearing.id, clearing]]), now);
      await tx.insert(sagaCredits).values({ operationId: op.id, walletId: to.id, outcome: 'credited', createdAt: now });
      return { outcome: 'credited' };
    }),
  );
}

/** What step 2 recorded for an operation, if it ran. */
export async function findCredit(db: Db, operationId: string): Promise<CreditOutcome | undefined> {
  const [row] = await db.select().from(sagaCredits).where(eq(sagaCredits.operationId, operationId));
  return row && recorded(row);
}

function recorded(row: typeof sagaCredits.$inferSelect): CreditOutcome {
  return row.outcome === 'credited'
    ? { outcome: 'credited' }
    : { outcome: 'rejected', code: row.failureCode ?? 'wallet_not_found', message: row.failureMessage ?? '' };
}

/** Step 3, in the source database: turns the hold into the debit, or releases it. */
export async function settleHold(
  db: Db,
  operationId: string,
  credit: CreditOutcome,
): Promise<SettleResult | undefined> {
  return retryOnConflict(() =>
    db.transaction(async (tx) => {
      const [op] = await tx.select().from(operations).where(eq(operations.id, operationId)).for('update');
      if (!op) {
        await assertNotFenced(tx, [operationId]); // moved away with its shard? the job retries on the new map
        return undefined;
      }
      if (op.status === 'succeeded' || op.status === 'failed') return { outcome: 'already_terminal', status: op.status } as const;
      const [saga] = await tx.select().from(transferSagas).where(eq(transferSagas.operationId, op.id)).for('update');
      if (!saga || saga.state !== 'held') throw new Error(`operation ${op.id} has no hold to settle`);
      const [from] = await tx.select().from(wallets).where(eq(wallets.id, op.fromWalletId!)).for('update');
      if (!from) throw new Error(`source wallet of ${op.id} vanished`);
      const now = new Date();
      if (credit.outcome === 'credited') {
        const clearing = await internalAccount(tx, 'clearing', op.currency);
        const plan = planClearingLeg('source', from.id, clearing.id, op.amount);
        if (!plan.ok) throw new Error('clearing leg cannot fail');
        await writeEntries(tx, op.id, plan.entries, new Map([[from.id, from], [clearing.id, clearing]]), now, op.amount);
        await finishOperations(tx, [{ op, outcome: { ok: true } }], now);
      } else {
        // Compensation: the destination refused; the hold goes back to available.
        await tx.update(wallets).set({ held: from.held - op.amount, updatedAt: now }).where(eq(wallets.id, from.id));
        await finishOperations(tx, [{ op, outcome: { ok: false, code: credit.code, message: credit.message } }], now);
      }
      const status = credit.outcome === 'credited' ? 'succeeded' : 'failed';
      await tx
        .update(transferSagas)
        .set({ state: status === 'succeeded' ? 'completed' : 'failed', updatedAt: now })
        .where(eq(transferSagas.operationId, op.id));
      return settledResult(op, credit.outcome === 'credited' ? { ok: true } : { ok: false, code: credit.code }, now);
    }),
  );
}
