import type { Config } from '../config.ts';
import type { Database } from '../db/client.ts';
import { sqlState } from '../db/errors.ts';
import type { ShardRouter } from '../db/shard-router.ts';
import { batchSize, batchSplits } from '../infra/metrics.ts';
import { MicroBatcher, type ItemResult } from '../infra/micro-batcher.ts';
import { FundNotCharged, settleOperations, type GroupResult } from './settle-operation.ts';

/**
 * Errors that say nothing about the operations in the group (the database is away, out of
 * connections, shutting down): splitting would only multiply failing transactions.
 */
export const isInfrastructureError = (err: unknown): boolean => {
  if (err instanceof FundNotCharged) return false; // one fund's: split, and the others settle
  const state = sqlState(err);
  return state === undefined || /^(08|53|57)/.test(state);
};

/**
 * Settles `operationIds` of one database in as few transactions as possible. If the group's
 * transaction fails on something an operation did (a constraint, a fenced shard), the group
 * is split in halves and each half tried on its own, down to the one operation that fails:
 * it fails alone and nothing is ever half-applied (each attempt is one transaction).
 */
export async function settleGroup(
  database: Database,
  operationIds: readonly string[],
  isLocal: (walletId: string) => boolean,
): Promise<ItemResult<GroupResult>[]> {
  try {
    const results = await settleOperations(database.db, operationIds, isLocal);
    return operationIds.map((id) => {
      const value = results.get(id);
      return value ? { ok: true, value } : { ok: false, error: new Error(`no settlement result for ${id}`) };
    });
  } catch (error) {
    if (operationIds.length === 1 || isInfrastructureError(error)) return operationIds.map(() => ({ ok: false, error }));
    batchSplits.inc({ stage: 'settle' });
    const half = Math.ceil(operationIds.length / 2);
    return [
      ...(await settleGroup(database, operationIds.slice(0, half), isLocal)),
      ...(await settleGroup(database, operationIds.slice(half), isLocal)),
    ];
  }
}

/**
 * Group commit for the worker: each job asks to settle its operation; jobs of one database
 * that arrive together share one transaction (see MicroBatcher for how batches form).
 */
export function createGroupSettler(
  shards: ShardRouter,
  config: Pick<Config, 'SETTLE_BATCH_MAX' | 'SETTLE_BATCH_LINGER_MS' | 'SETTLE_BATCH_IN_FLIGHT'>,
): (database: Database, operationId: string) => Promise<GroupResult> {
  const batcher = new MicroBatcher<Database, string, GroupResult>(
    {
      lingerMs: config.SETTLE_BATCH_LINGER_MS,
      maxSize: config.SETTLE_BATCH_MAX,
      maxInFlight: config.SETTLE_BATCH_IN_FLIGHT,
      onBatch: (size) => batchSize.observe({ stage: 'settle' }, size),
    },
    (database, ids) => settleGroup(database, ids, (walletId) => shards.forId(walletId) === database),
  );
  return (database, operationId) => batcher.submit(database, operationId);
}
