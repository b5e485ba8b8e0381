/**
 * The gateway step of a fund operation, before the credit. The gateway idempotency key is the
 * operation id, so however often this runs (retries, stalled jobs, crashes) the customer is
 * charged at most once. The gateway's answer is recorded in `gateway_charges` before the
 * wallet is credited, so a crash between the two resumes at the credit.
 */
import type { Job } from 'bullmq';
import { eq } from 'drizzle-orm';
import type { Db, Tx } from '../db/client.ts';
import { gatewayCharges, operations, outbox, wallets } from '../db/schema.ts';
import type { FailureCode } from '../domain/errors.ts';
import { isTerminal, operationView } from '../domain/operation-view.ts';
import { outboxEvent } from '../events/outbox-event.ts';
import type { Logger } from '../infra/logger.ts';
import { jobPayloads } from '../jobs/catalog.ts';
import type { FundGateway } from './gateway-breaker.ts';
import { isBreakerOpen } from './gateway-breaker.ts';
import type { WorkerDeps } from './processor.ts';

export type ChargeStep =
  /** Charged (now or before): go on and credit the wallet. Also returned for missing/terminal operations. */
  | { outcome: 'credit' }
  /** The operation was failed here (declined, or the retry budget ran out). */
  | { outcome: 'failed'; failureCode: FailureCode };

type ChargeStatus = (typeof gatewayCharges.$inferSelect)['status'];

/** The fund's gateway record, if any. */
async function chargeRecordOf(db: Db | Tx, operationId: string): Promise<typeof gatewayCharges.$inferSelect | undefined> {
  const [recorded] = await db.select().from(gatewayCharges).where(eq(gatewayCharges.operationId, operationId));
  return recorded;
}

/**
 * Fails a fund operation with its gateway record in one transaction (no entry, one outbox event).
 * With `unlessRequested`, only if no charge request was recorded (then it returns undefined and
 * changes nothing): the give-up path's "nothing was sent", checked under the operation's lock.
 */
async function failFund(
  db: Db,
  operationId: string,
  failure: { code: FailureCode; message: string },
  charge: { status: ChargeStatus; gatewayChargeId?: string | null; declineCode?: string | null },
  unlessRequested: true,
): Promise<ChargeStep | undefined>;
async function failFund(
  db: Db,
  operationId: string,
  failure: { code: FailureCode; message: string },
  charge: { status: ChargeStatus; gatewayChargeId?: string | null; declineCode?: string | null },
): Promise<ChargeStep>;
async function failFund(
  db: Db,
  operationId: string,
  failure: { code: FailureCode; message: string },
  charge: { status: ChargeStatus; gatewayChargeId?: string | null; declineCode?: string | null },
  unlessRequested = false,
): Promise<ChargeStep | undefined> {
  const failed = await db.transaction(async (tx) => {
    const [op] = await tx.select().from(operations).where(eq(operations.id, operationId)).for('update');
    if (!op || isTerminal(op.status)) return true;
    const now = new Date();
    if (unlessRequested) {
      // markRequested writes its record under this same row lock: none now means none was sent.
      if (await chargeRecordOf(tx, operationId)) return false; // a request was recorded since the caller looked
    }
    // operations before gateway_charges, as markRequested and the shard move's barrier take them.
    const [failed] = await tx
      .update(operations)
      .set({ status: 'failed', failureCode: failure.code, failureMessage: failure.message, completedAt: now, updatedAt: now })
      .where(eq(operations.id, operationId))
      .returning();
    await tx
      .insert(gatewayCharges)
      .values({ operationId, ...charge })
      .onConflictDoUpdate({ target: gatewayCharges.operationId, set: { ...charge, updatedAt: now } });
    await tx.insert(outbox).values(outboxEvent('wallet.fund_failed', op.toWalletId, operationView(failed!), op.id));
    return true;
  });
  return failed ? { outcome: 'failed', failureCode: failure.code } : undefined;
}

/**
 * Notes that a charge request is about to go out (its outcome may become unknown) and marks the
 * operation processing; throws, so that nothing goes out, if the fund is already terminal. It
 * locks the operation first, as failFund does, so the two are serialized: a give-up that failed
 * the fund as never charged and a request of an earlier, timed-out call cannot both happen.
 */
async function markRequested(db: Db, operationId: string): Promise<void> {
  await db.transaction(async (tx) => {
    const [op] = await tx.select({ status: operations.status }).from(operations).where(eq(operations.id, operationId)).for('update');
    if (!op || isTerminal(op.status)) throw new Error(`fund ${operationId} is ${op?.status ?? 'missing'}: no charge may go out`);
    if (op.status === 'pending') await tx.update(operations).set({ status: 'processing', updatedAt: new Date() }).where(eq(operations.id, operationId));
    await tx.insert(gatewayCharges).values({ operationId, status: 'requested' }).onConflictDoNothing();
  });
}

async function recordApproved(db: Db, operationId: string, gatewayChargeId: string): Promise<void> {
  await db
    .insert(gatewayCharges)
    .values({ operationId, status: 'approved', gatewayChargeId })
    .onConflictDoUpdate({
      target: gatewayCharges.operationId,
      set: { status: 'approved', gatewayChargeId, updatedAt: new Date() },
    });
}

const isLastAttempt = (job: Job) => job.attemptsMade + 1 >= (job.opts.attempts ?? 1);

/**
 * Charges the fund operation of `job` through the breaker-wrapped gateway. Returns `credit`
 * when the wallet may be credited, or `failed` when it failed the operation itself. Throws on a
 * transient gateway failure (timeout, 5xx, unreachable, open breaker) so that BullMQ retries
 * the job later with backoff; on the job's last attempt it gives up instead: it reverses the
 * key at the gateway if a request ever went out, then fails the operation `gateway_unavailable`.
 */
export async function chargeFund(job: Job, deps: WorkerDeps & { gateway: FundGateway }): Promise<ChargeStep> {
  const { operationId } = jobPayloads['settle-fund'].parse(job.data);
  const db = deps.shards.forId(operationId).db;
  const log = deps.logger.child({ operationId, jobId: job.id, attempt: job.attemptsMade + 1 });
  const [op] = await db.select().from(operations).where(eq(operations.id, operationId));
  // Missing or already settled: settleOperation reports it and does nothing.
  if (!op || isTerminal(op.status) || op.type !== 'fund') return { outcome: 'credit' };

  const recorded = await chargeRecordOf(db, operationId);
  if (recorded?.status === 'approved') return { outcome: 'credit' }; // charged before a crash or retry
  if (recorded?.status === 'declined') return failFund(db, op.id, declined(recorded.declineCode), recorded);
  if (recorded?.status === 'voided') return failFund(db, op.id, unavailable('reversed at the gateway'), recorded);

  // A wallet the ledger would refuse anyway (gone, frozen, other currency) is never charged:
  // the settling transaction fails the operation with the right code. (If it changes after the
  // charge, the processor reverses the charge: reverseUncreditedCharge.)
  if (!recorded) {
    const [wallet] = await db.select().from(wallets).where(eq(wallets.id, op.toWalletId));
    if (!wallet || wallet.status !== 'active' || wallet.currency !== op.currency) return { outcome: 'credit' };
  }

  const request = { idempotencyKey: op.id, amountMinor: op.amount, currency: op.currency };
  if (recorded && job.attemptsMade >= (job.opts.attempts ?? 1)) {
    // The budget was spent on the gateway and the reconciler re-ran the failed job: finish giving up, do not charge.
    return giveUp(db, deps.gateway, op.id, request, new Error('retry budget spent earlier'), log);
  }
  // No request ever went out: whatever spent the budget (a long Postgres outage, say), the gateway
  // gets its one try now. It fails → the give-up below (this is past the last attempt) fails the
  // fund with that try's cause; the request it records first ends any re-run at the give-up above.
  let recordFailed = false;
  try {
    const charge = await deps.gateway.charge({ ...request, paymentMethod: op.paymentMethod }, () =>
      markRequested(db, op.id).catch((err: unknown) => {
        recordFailed = true;
        throw err;
      }),
    );
    await deps.faultPoint?.('after-charge', op.id);
    switch (charge.status) {
      case 'approved':
        await recordApproved(db, op.id, charge.chargeId);
        await deps.faultPoint?.('after-charge-recorded', op.id);
        return { outcome: 'credit' };
      case 'declined':
        log.info({ declineCode: charge.declineCode }, 'payment declined');
        return failFund(db, op.id, declined(charge.declineCode), {
          status: 'declined',
          gatewayChargeId: charge.chargeId,
          declineCode: charge.declineCode ?? null,
        });
      case 'voided':
        return failFund(db, op.id, unavailable('reversed at the gateway'), { status: 'voided', gatewayChargeId: charge.chargeId });
    }
  } catch (err) {
    // Recording the request failed (our database): the gateway was not asked, so nothing is
    // decided on it. The job fails; past its last attempt the reconciler re-runs it later.
    if (!isLastAttempt(job) || recordFailed) {
      log.info({ err: (err as Error).message, breakerOpen: isBreakerOpen(err), recordFailed }, 'gateway charge failed; will retry');
      throw err;
    }
    return giveUp(db, deps.gateway, op.id, request, err, log);
  }
}

/**
 * The retry budget is spent. If no request ever went out, nothing can have been charged; else
 * the key is reversed at the gateway first (refund, or a tombstone against a late charge). If
 * the gateway cannot be reached for that, this throws: the job fails, the operation stays
 * open, and the reconciler retries it later, so nothing is failed while a charge may stand.
 */
async function giveUp(
  db: Db,
  gateway: FundGateway,
  operationId: string,
  request: { idempotencyKey: string; amountMinor: bigint; currency: string },
  cause: unknown,
  log: Logger,
): Promise<ChargeStep> {
  const reason = `payment gateway unavailable: ${(cause as Error)?.message ?? String(cause)}`;
  const recorded = await chargeRecordOf(db, operationId);
  // Approved by another delivery of this job (a stalled job runs twice) since this one looked:
  // the charge stands and is credited (or, if the ledger refuses the wallet, reversed then).
  if (recorded?.status === 'approved') return { outcome: 'credit' };
  if (!recorded) {
    const failed = await failFund(db, operationId, unavailable(reason), { status: 'voided' }, true);
    if (failed) {
      log.warn({ reason }, 'retry budget spent; no charge was ever sent');
      return failed;
    }
    // A record was written meanwhile: approved by another delivery (credit it), or a request of
    // an earlier call that timed out here (reverse the key).
    const now = await chargeRecordOf(db, operationId);
    if (now?.status === 'approved') return { outcome: 'credit' };
  }
  const reversed = await gateway.voidKey(request);
  log.warn({ reason, keyState: reversed.status }, 'retry budget spent; gateway key reversed');
  if (reversed.status === 'declined') {
    return failFund(db, operationId, declined(reversed.declineCode), {
      status: 'declined',
      gatewayChargeId: reversed.chargeId,
      declineCode: reversed.declineCode ?? null,
    });
  }
  if (reversed.status !== 'voided') throw new Error(`gateway did not reverse key ${operationId}`);
  return failFund(db, operationId, unavailable(reason), { status: 'voided', gatewayChargeId: reversed.chargeId });
}

const declined = (code?: string | null) => ({
  code: 'payment_declined' as const,
  message: `the payment was declined${code ? ` (${code})` : ''}`,
});
const unavailable = (why: string) => ({ code: 'gateway_unavailable' as const, message: why.slice(0, 500) });

/**
 * After a credit that failed by ledger rule (e.g. a frozen wallet) the customer was charged
 * but not credited: reverse the charge at the gateway. Best effort; a failure is logged with
 * the operation id for an operator (the charge record stays `approved`).
 */
export async function reverseUncreditedCharge(db: Db, gateway: FundGateway, operationId: string, log: Logger): Promise<void> {
  const recorded = await chargeRecordOf(db, operationId);
  const [op] = await db.select().from(operations).where(eq(operations.id, operationId));
  if (recorded?.status !== 'approved' || !op) return;
  try {
    const reversed = await gateway.voidKey({ idempotencyKey: op.id, amountMinor: op.amount, currency: op.currency });
    await db
      .update(gatewayCharges)
      .set({ status: 'voided', updatedAt: new Date() })
      .where(eq(gatewayCharges.operationId, operationId));
    log.warn({ keyState: reversed.status }, 'credit refused by ledger rules; charge reversed at the gateway');
  } catch (err) {
    log.error({ err }, 'credit refused and the charge could not be reversed: operator action needed');
  }
}
