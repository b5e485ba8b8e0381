import type { Job, Processor, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { operationSettledChannel } from '../api/operation-waiter.ts';
import type { Database } from '../db/client.ts';
import { findOperation } from '../db/repositories/operations.ts';
import { sqlState } from '../db/errors.ts';
import { SHARD_FENCED, type ShardRouter } from '../db/shard-router.ts';
import { invalidateWallets } from '../api/wallet-cache.ts';
import type { Logger } from '../infra/logger.ts';
import { JOB_NAMES, enqueueSagaStep, enqueueSettlements, jobPayloads, type JobName, type JobPayload } from '../jobs/catalog.ts';
import { isInfrastructureError } from './group-settler.ts';
import { chargeFund, reverseUncreditedCharge } from './charge-fund.ts';
import type { FundGateway } from './gateway-breaker.ts';
import { FundNotCharged, type GroupResult } from './settle-operation.ts';
import { creditDestination, findCredit, holdFunds, settleHold } from './transfer-saga.ts';
import { traceIdOf } from '../infra/trace.ts';
import { recordSettlement } from './settlement-metrics.ts';

export interface WorkerDeps {
  shards: ShardRouter;
  /** The settlement queue, for the next step of a saga. */
  queue: Queue;
  /** Publishes settlement notices for long-polling API requests. */
  publisher: Redis;
  redisPrefix: string;
  logger: Logger;
  /** Test builds only: called between steps to inject crashes. */
  faultPoint?: (point: string, operationId: string) => Promise<void>;
  /** The payment gateway behind its circuit breaker (fund operations charge through it). */
  gateway: FundGateway;
  /** Settles one operation in `database`, in a transaction shared with concurrent jobs (group-settler.ts). */
  settle: (database: Database, operationId: string) => Promise<GroupResult>;
}

type Handler = (operationId: string, deps: WorkerDeps, log: Logger, job: Job) => Promise<unknown>;

/**
 * After a commit that changed wallets: drop their cached reads, so a client that then sees the
 * operation settle reads the new balance (and available) at once. With `notice` (an operation
 * id, or several separated by commas), the same Redis command then publishes the settlement
 * notice that wakes long polls: Redis runs them in that order.
 */
async function invalidate(deps: WorkerDeps, walletIds: readonly (string | null | undefined)[], log: Logger, notice?: string): Promise<void> {
  const ids = walletIds.filter((id): id is string => typeof id === 'string');
  const announcing = notice === undefined ? undefined : { channel: operationSettledChannel(deps.redisPrefix), message: notice };
  await invalidateWallets(deps.publisher, deps.redisPrefix, ids, announcing).catch((err: unknown) =>
    log.warn(
      { err },
      announcing
        ? 'could not invalidate wallet cache or announce settlement; entries expire within WALLET_CACHE_TTL_SECONDS, long polls re-read on their timer'
        : 'could not invalidate wallet cache; entries expire within WALLET_CACHE_TTL_SECONDS',
    ),
  );
}

/** Cache invalidation, then the settlement notice, in one Redis command (see `invalidate`). */
const announce = (deps: WorkerDeps, notice: string, log: Logger, walletIds: readonly (string | null | undefined)[] = []) =>
  invalidate(deps, walletIds, log, notice);

/**
 * Fund, and transfers whose wallets share a database: one transaction (shared with concurrent
 * jobs of the same database), in `database` as the caller routed it. (Routing again here could
 * use a newer shard map than the caller's decision; the old database's fence makes it safe.)
 * A transfer that turns out to need the cross-shard saga comes back as `saga`, untouched.
 */
async function settleInOneTransaction(operationId: string, deps: WorkerDeps, log: Logger, database: Database): Promise<GroupResult> {
  await deps.faultPoint?.('before-settle', operationId);
  const result = await deps.settle(database, operationId);
  if (result.outcome === 'saga') return result;
  await deps.faultPoint?.('after-settle', operationId);
  recordSettlement(result.outcome === 'settled' ? result.type : 'transfer', result);
  if (result.outcome === 'missing') {
    log.error('operation not found; dropping job'); // the API commits before it enqueues
    return result;
  }
  if (result.outcome === 'settled') log.info({ status: result.status, failureCode: result.failureCode }, 'operation settled');
  else log.info({ status: result.status }, 'operation already settled; redelivery ignored');
  await announce(deps, operationId, log, result.outcome === 'settled' ? result.walletIds : []);
  return result;
}

/**
 * Charge-then-credit rounds one attempt of a fund job may take. A round ends without a credit
 * when the charge step skipped the gateway (the wallet would have been refused: frozen, say) and
 * the wallet became creditable before the credit locked it; the next round charges it. Only a
 * wallet that keeps flipping spends the job's retries on this.
 */
const FUND_ROUNDS = 3;

/** A fund: charge through the gateway first (charge-fund.ts), then credit in one transaction. */
async function settleFund(operationId: string, deps: WorkerDeps, log: Logger, job: Job): Promise<unknown> {
  for (let round = 1; ; round++) {
    const step = await chargeFund(job, deps);
    if (step.outcome === 'failed') {
      log.info({ failureCode: step.failureCode }, 'fund failed at the gateway');
      await announce(deps, operationId, log);
      return step;
    }
    const database = deps.shards.forId(operationId);
    try {
      return await creditFund(operationId, deps, log, database);
    } catch (err) {
      // Retried now rather than by the job's backoff: on its last attempt, a retry would leave
      // the fund to the give-up, which fails it as unreachable although no charge was tried.
      if (!(err instanceof FundNotCharged) || err.operationId !== operationId || round >= FUND_ROUNDS) throw err;
      log.info({ round }, 'wallet became creditable after its charge was skipped; charging now');
    }
  }
}

/** The credit of a charged fund; a charge the ledger then refused is reversed at the gateway. */
async function creditFund(operationId: string, deps: WorkerDeps, log: Logger, database: Database): Promise<GroupResult> {
  const result = await settleInOneTransaction(operationId, deps, log, database);
  if (result.outcome === 'saga') throw new Error(`fund ${operationId} cannot be a saga`);
  // Also on a redelivery: a crash may have come between the refused credit and the reversal.
  if (result.outcome !== 'missing' && result.status === 'failed') {
    await reverseUncreditedCharge(database.db, deps.gateway, operationId, log);
  }
  return result;
}

async function loadTransfer(operationId: string, deps: WorkerDeps) {
  const op = await findOperation(deps.shards.forId(operationId).db, operationId);
  if (!op || op.type !== 'transfer') throw new Error(`transfer ${operationId} not found`);
  return op;
}

/** Saga steps 2 and 3 run inline: used when a saga is resumed rather than freshly driven. */
async function creditAndSettle(operationId: string, deps: WorkerDeps, log: Logger): Promise<unknown> {
  const op = await loadTransfer(operationId, deps);
  const destination = deps.shards.forId(op.toWalletId).db;
  const credit = (await findCredit(destination, op.id)) ?? (await creditDestination(destination, op));
  await deps.faultPoint?.('after-credit', operationId);
  const settled = await settleHold(deps.shards.forId(operationId).db, operationId, credit);
  await deps.faultPoint?.('after-settle', operationId);
  if (settled) recordSettlement('transfer', settled);
  log.info({ status: settled && 'status' in settled ? settled.status : undefined, step: 'settle' }, 'cross-shard transfer settled');
  await announce(deps, operationId, log, [op.fromWalletId, op.toWalletId]);
  return settled;
}

/** A transfer: one transaction when both wallets share a database, else saga step 1 (hold). */
async function settleTransfer(operationId: string, deps: WorkerDeps, log: Logger): Promise<unknown> {
  const source = deps.shards.forId(operationId);
  const settled = await settleInOneTransaction(operationId, deps, log, source);
  // A transfer whose saga has begun (`processing`) finishes as a saga, even if a shard move
  // has since put both wallets in one database.
  if (settled.outcome !== 'saga') return settled;
  const op = await loadTransfer(operationId, deps);
  if (!op.fromWalletId) throw new Error(`transfer ${operationId} has no source wallet`);
  const hold = await holdFunds(source.db, operationId);
  await deps.faultPoint?.('after-hold', operationId);
  if (hold.step !== 'held') {
    if (hold.step === 'refused') recordSettlement('transfer', hold.settled);
    log.info({ step: hold.step }, 'cross-shard transfer ended at the hold');
    if (hold.step !== 'missing') await announce(deps, operationId, log, [op.fromWalletId]);
    return hold;
  }
  if (!hold.fresh) return creditAndSettle(operationId, deps, log); // resumed by the reconciler
  await invalidate(deps, [op.fromWalletId], log); // available dropped
  await enqueueSagaStep(deps.queue, 'credit', operationId);
  log.info({ step: 'hold' }, 'funds held; credit enqueued');
  return hold;
}

/** Saga step 2: credit the destination (or record its refusal), then enqueue step 3. */
async function sagaCredit(operationId: string, deps: WorkerDeps, log: Logger): Promise<unknown> {
  const op = await loadTransfer(operationId, deps);
  const credit = await creditDestination(deps.shards.forId(op.toWalletId).db, op);
  await deps.faultPoint?.('after-credit', operationId);
  if (credit.outcome === 'credited') await invalidate(deps, [op.toWalletId], log);
  await enqueueSagaStep(deps.queue, 'settle', operationId);
  log.info({ step: 'credit', outcome: credit.outcome }, 'destination step done; settle enqueued');
  return credit;
}

/** Saga step 3: settle or release the hold according to step 2's recorded outcome. */
async function sagaSettle(operationId: string, deps: WorkerDeps, log: Logger): Promise<unknown> {
  return creditAndSettle(operationId, deps, log);
}

/**
 * Transfers accepted together: each joins the group commit of its database (merging with other
 * jobs' operations). One that needs the cross-shard saga, or failed on its own, gets a job of
 * its own (its own retries); a database outage fails the job, to be retried whole (operations
 * already terminal are then skipped).
 */
async function settleBatch(_operationId: string, deps: WorkerDeps, log: Logger, job: Job): Promise<unknown> {
  const { operationIds } = job.data as JobPayload<'settle-batch'>; // validated by createProcessor
  await deps.faultPoint?.('before-settle', operationIds[0]!);
  const results = await Promise.allSettled(operationIds.map((id) => deps.settle(deps.shards.forId(id), id)));
  await deps.faultPoint?.('after-settle', operationIds[0]!);
  const alone: string[] = [];
  const touched: string[] = [];
  let outage: unknown;
  const counts = { settled: 0, already: 0, alone: 0 };
  results.forEach((r, i) => {
    const id = operationIds[i]!;
    if (r.status === 'rejected') {
      if (isInfrastructureError(r.reason)) outage ??= r.reason;
      else {
        log.warn({ err: r.reason, operationId: id }, 'operation failed its batch; settling it on its own');
        alone.push(id);
      }
      return;
    }
    const result = r.value;
    if (result.outcome === 'saga') alone.push(id);
    else if (result.outcome === 'missing') log.error({ operationId: id }, 'operation not found; dropping it');
    else if (result.outcome === 'already_terminal') counts.already++;
    else {
      counts.settled++;
      recordSettlement(result.type, result);
      touched.push(...result.walletIds);
    }
  });
  counts.alone = alone.length;
  if (alone.length > 0) await enqueueSettlements(deps.queue, alone.map((id) => ({ id, type: 'transfer' as const })), () => false);
  // One notice for the batch, not one per operation.
  await announce(deps, operationIds.join(','), log, [...new Set(touched)]);
  log.info({ operations: operationIds.length, ...counts }, 'batch settled');
  if (outage) throw outage;
  return counts;
}

/** One processor per job name in the catalog. */
export const handlers: Record<JobName, Handler> = {
  'settle-fund': settleFund,
  'settle-transfer': settleTransfer,
  'saga-credit': sagaCredit,
  'saga-settle': sagaSettle,
  'settle-batch': settleBatch,
};

/** The worker's processor; refuses to build unless every catalog job has a handler. */
export function createProcessor(deps: WorkerDeps): Processor {
  const missing = JOB_NAMES.filter((name) => typeof handlers[name] !== 'function');
  if (missing.length > 0) throw new Error(`no processor for job(s): ${missing.join(', ')}`);
  return async (job: Job) => {
    const name = job.name as JobName;
    const handler = handlers[name];
    if (!handler) throw new Error(`unknown job name ${job.name}`);
    const { operationId, requestId, traceparent } = jobPayloads[name].parse(job.data);
    const log = deps.logger.child({
      operationId,
      requestId,
      traceId: traceIdOf(traceparent),
      job: name,
      jobId: job.id,
      attempt: job.attemptsMade + 1,
    });
    try {
      return await handler(operationId, deps, log, job);
    } catch (err) {
      // A shard moved: reload the map now; the retry then goes to the shard's new database.
      if (sqlState(err) === SHARD_FENCED) await deps.shards.refresh().catch(() => {});
      throw err;
    }
  };
}
