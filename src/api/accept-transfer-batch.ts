/**
 * POST /v1/transfers/batch: up to MAX_TRANSFER_BATCH (schemas.ts) transfers, one idempotency key each,
 * accepted as a unit. Everything is checked before anything is written (owned wallets, keys
 * reused with another body); then the keys are claimed, each database's claims in one
 * transaction with the operations that live beside them, and only then the operations whose
 * keys live in another database. With one database that is one transaction: all or nothing.
 * With several, a failure between databases answers 5xx and the same request sent again
 * completes the batch (every item's key names its operation, so nothing is accepted twice).
 */
import type { Queue } from 'bullmq';
import type { Database } from '../db/client.ts';
import { findIdempotencyKeys, findOperations, insertIdempotencyKeys, insertOperations, type OperationRow } from '../db/repositories/operations.ts';
import type { ShardRouter } from '../db/shard-router.ts';
import { logicalShardOf, newIdInShard } from '../domain/ids.ts';
import type { Logger } from '../infra/logger.ts';
import { enqueueSettlements } from '../jobs/catalog.ts';
import { groupBy, readOwnedWallets, settlesInOneDatabase } from './accept-batcher.ts';
import { HttpProblem } from './problem.ts';

export interface BatchTransfer {
  idempotencyKey: string;
  requestHash: string;
  fromWalletId: string;
  toWalletId: string;
  amount: bigint;
  reference: string | null;
}

export interface BatchAccepted {
  operations: OperationRow[];
  /** How many of them this request created (the rest were accepted earlier under their keys). */
  created: number;
}

/** `items` grouped by database, keeping order. */
const byDatabase = <T>(items: readonly T[], databaseOf: (item: T) => Database): [Database, T[]][] =>
  [...groupBy(items, databaseOf)].map(([database, idx]) => [database, idx.map((i) => items[i]!)]);

export async function acceptTransferBatch(
  shards: ShardRouter,
  queue: Queue,
  logger: Logger,
  request: { clientId: string; requestId: string | null; traceparent: string | null; transfers: readonly BatchTransfer[] },
): Promise<BatchAccepted> {
  const { clientId, transfers } = request;
  const problems: { path: string; message: string; code: string }[] = [];

  // 1. Every source wallet is the client's.
  const walletOf = await readOwnedWallets(
    shards,
    transfers.map((t) => ({ clientId, ownedWalletId: t.fromWalletId })),
    (i, error) => {
      if (error instanceof Error && 'code' in error && error.code === 'wallet_not_found') {
        problems.push({ path: `body.transfers.${i}.fromWalletId`, message: error.message, code: 'wallet_not_found' });
      } else throw error;
    },
  );

  // 2. Keys already used name their operations; one used with another body refuses the batch.
  const existing = new Map<string, { operationId: string; requestHash: string }>();
  for (const [database, items] of byDatabase(transfers, (t) => shards.forIdempotencyKey(clientId, t.idempotencyKey))) {
    const rows = await findIdempotencyKeys(database.db, items.map((t) => ({ clientId, key: t.idempotencyKey })));
    for (const row of rows) existing.set(row.key, row);
  }
  transfers.forEach((t, i) => {
    const claimed = existing.get(t.idempotencyKey);
    if (claimed && claimed.requestHash !== t.requestHash) {
      problems.push({ path: `body.transfers.${i}.idempotencyKey`, message: 'this key was used with a different request', code: 'idempotency_key_reused' });
    }
  });
  if (problems.length > 0) {
    // As for one transfer, a key used with another body is answered 422 whatever else is wrong:
    // its retries keep getting the same answer (the other problems are listed too).
    const code = problems.some((p) => p.code === 'idempotency_key_reused') ? 'idempotency_key_reused' : 'wallet_not_found';
    throw new HttpProblem(code, 'the batch was refused; nothing was accepted', problems.map(({ path, message }) => ({ path, message })));
  }

  // 3. Every new key is claimed before any operation is written outside the claim's database, so
  //    an operation only ever gets the id its key's committed claim names (two batches racing
  //    with one key cannot both write one: the loser's claim fails, or its insert meets the
  //    winner's id). First pass: per database, its claims and the operations whose keys it
  //    homes, in one transaction. Second: the operations whose keys live elsewhere.
  const planned = transfers.map((t, i) => ({
    transfer: t,
    wallet: walletOf[i]!,
    operationId: existing.get(t.idempotencyKey)?.operationId ?? newIdInShard(logicalShardOf(t.fromWalletId)),
    isNew: !existing.has(t.idempotencyKey),
  }));
  const operationRow = (p: (typeof planned)[number]) => ({
    id: p.operationId,
    clientId,
    type: 'transfer' as const,
    amount: p.transfer.amount,
    currency: p.wallet.currency,
    fromWalletId: p.transfer.fromWalletId,
    toWalletId: p.transfer.toWalletId,
    reference: p.transfer.reference,
    idempotencyKey: p.transfer.idempotencyKey,
    requestHash: p.transfer.requestHash,
    requestId: request.requestId,
    traceparent: request.traceparent,
  });
  const fresh = planned.filter((p) => p.isNew);
  // Operations are inserted in id order, keys claimed in key order (insertIdempotencyKeys): two
  // requests writing overlapping rows wait for each other instead of deadlocking.
  const byOperationId = <T extends { operationId: string }>(list: readonly T[]) =>
    list.toSorted((a, b) => (a.operationId < b.operationId ? -1 : 1));
  const keyHome = (p: (typeof planned)[number]) => shards.forIdempotencyKey(clientId, p.transfer.idempotencyKey);
  const created: OperationRow[] = [];
  const byId = new Map<string, OperationRow>();
  // Each database's rows commit on their own: if a later one fails, what committed is enqueued
  // all the same (else it would wait for the reconciler), and the error answers the request.
  try {
    for (const [database, claims] of byDatabase(fresh, keyHome)) {
      const ops = claims.filter((p) => shards.forId(p.operationId) === database);
      created.push(
        ...(await database.db.transaction(async (tx) => {
          const inserted = await insertIdempotencyKeys(
            tx,
            claims.map((p) => ({ clientId, key: p.transfer.idempotencyKey, requestHash: p.transfer.requestHash, operationId: p.operationId })),
          );
          if (inserted.length !== claims.length) {
            // Another request claimed one of these keys since step 2: it may still be recording.
            throw new HttpProblem('idempotency_key_in_flight', 'a request with one of these keys is being recorded; retry the batch shortly');
          }
          return insertOperations(tx, byOperationId(ops).map(operationRow));
        })),
      );
    }
    for (const [database, ops] of byDatabase(
      fresh.filter((p) => shards.forId(p.operationId) !== keyHome(p)),
      (p) => shards.forId(p.operationId),
    )) {
      created.push(...(await insertOperations(database.db, byOperationId(ops).map(operationRow))));
    }

    // 4. Read the operations the batch names that this request did not create.
    for (const o of created) byId.set(o.id, o);
    const others = planned.filter((p) => !byId.has(p.operationId));
    for (const [database, items] of byDatabase(others, (p) => shards.forId(p.operationId))) {
      const rows = await findOperations(database.db, items.map((p) => p.operationId));
      for (const row of rows) byId.set(row.id, row);
    }
    // A key claimed without its operation yet: an earlier batch failed between databases, or a
    // racer that claimed it is writing the operation now. Written here under the claimed id; what
    // the racer wrote first is read back instead.
    const lost = planned.filter((p) => !byId.has(p.operationId));
    for (const [database, items] of byDatabase(lost, (p) => shards.forId(p.operationId))) {
      const rows = await insertOperations(database.db, byOperationId(items).map(operationRow));
      created.push(...rows);
      for (const row of rows) byId.set(row.id, row);
      const raced = items.filter((p) => !byId.has(p.operationId)).map((p) => p.operationId);
      if (raced.length > 0) for (const row of await findOperations(database.db, raced)) byId.set(row.id, row);
    }

  } finally {
    if (created.length > 0) {
      await enqueueSettlements(queue, created, (op) => settlesInOneDatabase(shards, op)).catch((err: unknown) =>
        logger.warn({ err, operations: created.length }, 'enqueue failed; the reconciler will enqueue them'),
      );
    }
  }
  const result = planned.map((p) => byId.get(p.operationId));
  if (result.some((o) => o === undefined)) throw new Error('batch operation missing after accept');
  return { operations: result as OperationRow[], created: created.length };
}
