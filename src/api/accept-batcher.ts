/**
 * Batched accept: fund and transfer requests arriving together share their round trips. One
 * Redis script counts the batch's rate limits, in arrival order; then, per database, one
 * statement checks the owned wallets, claims the idempotency keys and records the operations;
 * one `addBulk` enqueues their settlement. Each request still gets its own answer, and a 202
 * still means its operation is committed.
 */
import { and, eq } from 'drizzle-orm';
import type { Queue } from 'bullmq';
import type { Config } from '../config.ts';
import type { Database } from '../db/client.ts';
import { retryOnConflict } from '../db/errors.ts';
import { anyId } from '../db/sql.ts';
import { assertNotFenced, ShardFencedError } from '../db/repositories/shard-fences.ts';
import {
  acceptOperations,
  findIdempotencyKeys,
  findOperations,
  insertIdempotencyKeys,
  insertOperations,
  type NewOperation,
  type OperationRow,
} from '../db/repositories/operations.ts';
import type { WalletRow } from '../db/repositories/wallets.ts';
import { wallets } from '../db/schema.ts';
import type { ShardRouter } from '../db/shard-router.ts';
import { IdempotencyKeyReused, WalletNotFound } from '../domain/errors.ts';
import { logicalShardOf, newIdInShard } from '../domain/ids.ts';
import type { Logger } from '../infra/logger.ts';
import { batchSize } from '../infra/metrics.ts';
import { MicroBatcher, type ItemResult } from '../infra/micro-batcher.ts';
import { enqueueSettlements, MAX_BATCH_JOB } from '../jobs/catalog.ts';
import { failOpenWarning, type RateLimitDecision, type RateLimiter, type RateLimitTicket } from './rate-limit.ts';

export interface AcceptRequest {
  clientId: string;
  idempotencyKey: string;
  requestHash: string;
  /** The wallet the client must own: a fund's wallet, a transfer's source. */
  ownedWalletId: string;
  /** The operation to record; its currency is the owned wallet's. */
  operation: Pick<NewOperation, 'type' | 'amount' | 'fromWalletId' | 'toWalletId' | 'reference' | 'paymentMethod'>;
  requestId: string | null;
  traceparent: string | null;
  /** The request's rate limit, counted with its batch before anything is written (absent: not limited here). */
  rateLimit?: RateLimitTicket | undefined;
}

export interface Accepted {
  /** False when the key already named an operation (a retry, or a concurrent duplicate). */
  created: boolean;
  operation: OperationRow;
}

/**
 * A request's answer: accepted (created or replayed), failed (wallet not found, key reused, a
 * database error), or refused by its rate limit before anything was written. `rateLimit` is its
 * decision, for its RateLimit-* headers whatever the answer; absent when it had no ticket or
 * Redis did not answer (the limiter fails open).
 */
export type AcceptOutcome = { rateLimit?: RateLimitDecision | undefined } & (
  | ({ kind: 'accepted' } & Accepted)
  | { kind: 'failed'; error: unknown }
  | { kind: 'refused' }
);

type Result = ItemResult<Accepted>;

/** Groups indexes of `items` by a key (undefined: left out), keeping order. */
export function groupBy<T, K>(items: readonly T[], keyOf: (item: T, index: number) => K | undefined): Map<K, number[]> {
  const groups = new Map<K, number[]>();
  items.forEach((item, i) => {
    const key = keyOf(item, i);
    if (key === undefined) return;
    const list = groups.get(key);
    if (list) list.push(i);
    else groups.set(key, [i]);
  });
  return groups;
}

/**
 * Reads the wallet each request must own, one query per database. A request whose wallet is
 * missing or not its client's gets `fail(i, WalletNotFound)` (or the fence error when the
 * wallet's shard moved away, which the client retries); a database error fails its requests.
 */
export async function readOwnedWallets(
  shards: ShardRouter,
  requests: readonly Pick<AcceptRequest, 'clientId' | 'ownedWalletId'>[],
  fail: (i: number, error: unknown) => void,
): Promise<(WalletRow | undefined)[]> {
  const walletOf: (WalletRow | undefined)[] = [];
  await Promise.all(
    [...groupBy(requests, (r) => shards.forId(r.ownedWalletId))].map(async ([database, idx]) => {
      try {
        const ids = [...new Set(idx.map((i) => requests[i]!.ownedWalletId))];
        const rows = await database.db.select().from(wallets).where(and(anyId(wallets.id, ids), eq(wallets.kind, 'customer')));
        const byId = new Map(rows.map((w) => [w.id, w]));
        const missing = ids.filter((id) => !byId.has(id));
        // Missing because its shard moved away (a stale map)? Then those requests get a retryable error.
        const fenced = missing.length > 0 ? await assertNotFenced(database.db, missing).then(() => undefined, (err: unknown) => err) : undefined;
        for (const i of idx) {
          const wallet = byId.get(requests[i]!.ownedWalletId);
          if (wallet && wallet.clientId === requests[i]!.clientId) walletOf[i] = wallet;
          else fail(i, (!wallet && fenced) || new WalletNotFound(requests[i]!.ownedWalletId));
        }
      } catch (error) {
        for (const i of idx) fail(i, error);
      }
    }),
  );
  return walletOf;
}

/**
 * Accepts requests in as few round trips as possible: the common case (the key lives in its
 * wallet's database) in one statement per database; whatever that left (wallet missing or not
 * the client's, key already claimed, several databases) step by step. Errors that belong to one
 * request (wallet not found, key reused with another body) fail that request only; a database
 * error fails the requests of that database. Returns the answers once every operation is
 * committed, and `enqueued`, which settles when their settlement jobs are in Redis (nothing is
 * enqueued for an operation that is not committed; if Redis is away, the reconciler enqueues them).
 */
export async function acceptMany(
  shards: ShardRouter,
  enqueue: (created: readonly OperationRow[]) => Promise<void>,
  logger: Logger,
  requests: readonly AcceptRequest[],
): Promise<{ results: Result[]; enqueued: Promise<void> }> {
  const results: (Result | undefined)[] = requests.map(() => undefined);
  const created: OperationRow[] = [];

  // 1. One statement per database: wallet check, key claim and operation insert together.
  const together = groupBy(requests, (r) => {
    const database = shards.forId(r.ownedWalletId);
    return shards.forIdempotencyKey(r.clientId, r.idempotencyKey) === database ? database : undefined;
  });
  await Promise.all(
    [...together].map(async ([database, idx]) => {
      const idOf = new Map(idx.map((i) => [newIdInShard(logicalShardOf(requests[i]!.ownedWalletId)), i]));
      try {
        const rows = [...idOf].map(([id, i]) => {
          const r = requests[i]!;
          // Named fields, not a spread of r.operation: copying an object with a spread was ~2 % of the API's CPU.
          return {
            id,
            type: r.operation.type,
            amount: r.operation.amount,
            toWalletId: r.operation.toWalletId,
            clientId: r.clientId,
            idempotencyKey: r.idempotencyKey,
            requestHash: r.requestHash,
            ownedWalletId: r.ownedWalletId,
            fromWalletId: r.operation.fromWalletId ?? null,
            reference: r.operation.reference ?? null,
            paymentMethod: r.operation.paymentMethod ?? null,
            requestId: r.requestId,
            traceparent: r.traceparent,
          };
        });
        // One statement: on a deadlock (e.g. with a shard move's lock barrier) it did nothing and runs again.
        const inserted = await retryOnConflict(() => acceptOperations(database.db, rows));
        for (const operation of inserted) results[idOf.get(operation.id)!] = { ok: true, value: { created: true, operation } };
        created.push(...inserted);
      } catch (error) {
        for (const i of idx) results[i] = { ok: false, error };
      }
    }),
  );

  // 2. The rest, step by step.
  const rest = requests.flatMap((_r, i) => (results[i] === undefined ? [i] : []));
  if (rest.length > 0) {
    const answers = await acceptStepwise(shards, rest.map((i) => requests[i]!), created);
    rest.forEach((i, k) => (results[i] = answers[k]));
  }

  // 3. Enqueue what was created, without holding up the answers.
  const enqueued =
    created.length === 0
      ? Promise.resolve()
      : enqueue(created).catch((err: unknown) =>
          logger.warn({ err, operations: created.length }, 'enqueue failed; the reconciler will enqueue them'),
        );
  return { results: results.map((r) => r ?? { ok: false, error: new Error('request left without an answer') }), enqueued };
}

/**
 * The general accept, for requests the one-statement path left: reads the owned wallets (one
 * query per database), claims the keys in their home databases (a key already claimed names its
 * operation), then records the operations in theirs. Pushes the operations it creates to `created`.
 */
async function acceptStepwise(shards: ShardRouter, requests: readonly AcceptRequest[], created: OperationRow[]): Promise<Result[]> {
  const results: (Result | undefined)[] = requests.map(() => undefined);
  const fail = (i: number, error: unknown) => (results[i] ??= { ok: false, error });
  const alive = (i: number) => results[i] === undefined;

  // 1. The owned wallets, one read per database.
  const walletError: unknown[] = [];
  const walletOf = await readOwnedWallets(shards, requests, (i, error) => (walletError[i] ??= error));
  // A key already claimed by another request body is answered as such whatever the body names:
  // its retries must keep getting 422, not a 404 for the wallet the new body names.
  await failReusedKeys(shards, requests, walletError, fail);

  // 2. Claim the keys in their home databases: Postgres names one operation per (client, key).
  const operationIdOf: string[] = [];
  await Promise.all(
    [...groupBy(requests, (r, i) => (alive(i) ? shards.forIdempotencyKey(r.clientId, r.idempotencyKey) : undefined))].map(
      async ([database, idx]) => {
        try {
          const claims = idx.map((i) => ({
            clientId: requests[i]!.clientId,
            key: requests[i]!.idempotencyKey,
            requestHash: requests[i]!.requestHash,
            operationId: newIdInShard(logicalShardOf(requests[i]!.ownedWalletId)),
          }));
          const inserted = await retryOnConflict(() => insertIdempotencyKeys(database.db, claims));
          const named = new Map(inserted.map((k) => [`${k.clientId} ${k.key}`, k]));
          const others = claims.filter((c) => !named.has(`${c.clientId} ${c.key}`));
          for (const k of await findIdempotencyKeys(database.db, others)) named.set(`${k.clientId} ${k.key}`, k);
          for (const i of idx) {
            const key = named.get(`${requests[i]!.clientId} ${requests[i]!.idempotencyKey}`);
            if (!key) fail(i, new Error('idempotency key conflict without a row'));
            else if (key.requestHash !== requests[i]!.requestHash) fail(i, new IdempotencyKeyReused());
            else operationIdOf[i] = key.operationId;
          }
        } catch (error) {
          for (const i of idx) fail(i, error);
        }
      },
    ),
  );

  // 3. Record the operations in their databases (a key already used names an existing one).
  await Promise.all(
    [...groupBy(requests, (_r, i) => (alive(i) ? shards.forId(operationIdOf[i]!) : undefined))].map(async ([database, idx]) => {
      try {
        const rows = new Map<string, NewOperation & { id: string }>();
        for (const i of idx) {
          const r = requests[i]!;
          rows.set(operationIdOf[i]!, {
            ...r.operation,
            currency: walletOf[i]!.currency,
            id: operationIdOf[i]!,
            clientId: r.clientId,
            idempotencyKey: r.idempotencyKey,
            requestHash: r.requestHash,
            requestId: r.requestId,
            traceparent: r.traceparent,
          });
        }
        const inserted = await retryOnConflict(() => insertOperations(database.db, [...rows.values()]));
        const byId = new Map(inserted.map((o) => [o.id, o]));
        created.push(...inserted);
        const others = [...rows.keys()].filter((id) => !byId.has(id));
        const existing = others.length > 0 ? await findOperations(database.db, others) : [];
        const found = new Map(existing.map((o) => [o.id, o]));
        const firstFor = new Set<string>();
        for (const i of idx) {
          const id = operationIdOf[i]!;
          const operation = byId.get(id) ?? found.get(id);
          if (!operation) {
            fail(i, new Error('operation conflict without an existing operation'));
            continue;
          }
          // Two requests of one batch with one key: the first created it, the second replays.
          const isCreator = byId.has(id) && !firstFor.has(id);
          firstFor.add(id);
          results[i] = { ok: true, value: { created: isCreator, operation } };
        }
      } catch (error) {
        for (const i of idx) fail(i, error);
      }
    }),
  );

  return results.map((r) => r ?? { ok: false, error: new Error('request left without an answer') });
}

/**
 * Answers each request whose wallet check failed (`walletError[i]` set): when the wallet is
 * missing, not the client's or moved, 422 if its key is already claimed with another request
 * hash, else that wallet error (one read per key database); any other error as it is.
 */
async function failReusedKeys(
  shards: ShardRouter,
  requests: readonly AcceptRequest[],
  walletError: readonly unknown[],
  fail: (i: number, error: unknown) => void,
): Promise<void> {
  // Only where the wallet is missing, not the client's, or moved: a database error stays that error.
  const answerable = (error: unknown) => error instanceof WalletNotFound || error instanceof ShardFencedError;
  const failing = groupBy(requests, (r, i) => {
    if (walletError[i] === undefined) return undefined;
    if (!answerable(walletError[i])) {
      fail(i, walletError[i]);
      return undefined;
    }
    return shards.forIdempotencyKey(r.clientId, r.idempotencyKey);
  });
  await Promise.all(
    [...failing].map(async ([database, idx]) => {
      try {
        const keys = await findIdempotencyKeys(
          database.db,
          idx.map((i) => ({ clientId: requests[i]!.clientId, key: requests[i]!.idempotencyKey })),
        );
        const hashOf = new Map(keys.map((k) => [`${k.clientId} ${k.key}`, k.requestHash]));
        for (const i of idx) {
          const hash = hashOf.get(`${requests[i]!.clientId} ${requests[i]!.idempotencyKey}`);
          fail(i, hash !== undefined && hash !== requests[i]!.requestHash ? new IdempotencyKeyReused() : walletError[i]);
        }
      } catch (error) {
        for (const i of idx) fail(i, error);
      }
    }),
  );
}

/** A transfer whose source, destination and operation share one database (a fund has no source). */
export function settlesInOneDatabase(shards: ShardRouter, op: { id: string; fromWalletId?: string | null; toWalletId?: string }): boolean {
  const home: Database = shards.forId(op.id);
  return op.fromWalletId != null && op.toWalletId !== undefined && shards.forId(op.fromWalletId) === home && shards.forId(op.toWalletId) === home;
}

/**
 * Counts the rate limits of a batch's requests in arrival order, in one Redis script (exact
 * across API processes, as one request at a time would be). Redis unavailable: every request
 * passes without a decision, and a warning is logged at most every 10 s.
 */
function rateLimitCounter(limiter: RateLimiter, logger: Logger) {
  const failOpen = failOpenWarning(logger);
  return async (requests: readonly AcceptRequest[]): Promise<(RateLimitDecision | undefined)[]> => {
    const counted = requests.flatMap((r, i) => (r.rateLimit ? [i] : []));
    const decisions: (RateLimitDecision | undefined)[] = requests.map(() => undefined);
    if (counted.length === 0) return decisions;
    try {
      const taken = await limiter.takeMany(counted.map((i) => requests[i]!.rateLimit!));
      counted.forEach((i, k) => (decisions[i] = taken[k]));
    } catch (err) {
      failOpen(err);
    }
    return decisions;
  };
}

/**
 * Coalesces concurrent accepts of this process into batches: each batch's rate limits are
 * counted in one Redis script, then the admitted requests go to `acceptMany`. Each request is
 * answered once its operation is committed (or its limit refused it); `drain` (graceful
 * shutdown) also waits for the enqueues.
 *
 * Enqueues are coalesced too, across accept batches: what was committed within
 * ENQUEUE_BATCH_LINGER_MS (or while the previous `addBulk` ran) goes to Redis in one `addBulk`,
 * as few `settle-batch` jobs. Every job costs BullMQ and the worker the same whatever it holds,
 * so at moderate rates this divides their work; the 202s do not wait for it.
 */
export function createAcceptBatcher(
  shards: ShardRouter,
  queue: Queue,
  limiter: RateLimiter,
  logger: Logger,
  config: Pick<Config, 'ACCEPT_BATCH_MAX' | 'ACCEPT_BATCH_LINGER_MS' | 'ACCEPT_BATCH_IN_FLIGHT' | 'ENQUEUE_BATCH_LINGER_MS'>,
): { accept: (request: AcceptRequest) => Promise<AcceptOutcome>; drain: () => Promise<void> } {
  const enqueuer = new MicroBatcher<'enqueue', OperationRow, undefined>(
    {
      lingerMs: config.ENQUEUE_BATCH_LINGER_MS,
      maxSize: MAX_BATCH_JOB,
      maxInFlight: 1,
      onBatch: (size) => batchSize.observe({ stage: 'enqueue' }, size),
    },
    async (_key, operations) => {
      await enqueueSettlements(queue, operations, (op) => settlesInOneDatabase(shards, op));
      return operations.map(() => ({ ok: true, value: undefined }));
    },
  );
  const enqueue = async (created: readonly OperationRow[]) => {
    await Promise.all(created.map((op) => enqueuer.submit('enqueue', op)));
  };
  const countRateLimits = rateLimitCounter(limiter, logger);
  const enqueuing = new Set<Promise<void>>();
  const batcher = new MicroBatcher<'accept', AcceptRequest, AcceptOutcome>(
    {
      lingerMs: config.ACCEPT_BATCH_LINGER_MS,
      maxSize: config.ACCEPT_BATCH_MAX,
      maxInFlight: config.ACCEPT_BATCH_IN_FLIGHT,
      onBatch: (size) => batchSize.observe({ stage: 'accept' }, size),
    },
    async (_key, requests) => {
      const decisions = await countRateLimits(requests);
      const admitted = requests.flatMap((_r, i) => (decisions[i]?.allowed === false ? [] : [i]));
      // acceptMany answers each request on its own; should it ever throw, each admitted request
      // fails alone and every request keeps its rate-limit decision (a refused one is still 429).
      const { results, enqueued } = await acceptMany(shards, enqueue, logger, admitted.map((i) => requests[i]!)).catch((error: unknown) => ({
        results: admitted.map((): Result => ({ ok: false, error })),
        enqueued: Promise.resolve(),
      }));
      enqueuing.add(enqueued);
      void enqueued.finally(() => enqueuing.delete(enqueued));
      const outcomes: AcceptOutcome[] = decisions.map((rateLimit) => ({ kind: 'refused', rateLimit }));
      admitted.forEach((i, k) => {
        const result = results[k]!;
        const rateLimit = decisions[i];
        outcomes[i] = result.ok ? { kind: 'accepted', rateLimit, ...result.value } : { kind: 'failed', rateLimit, error: result.error };
      });
      return outcomes.map((value) => ({ ok: true, value }));
    },
  );
  return {
    accept: (request) => batcher.submit('accept', request),
    drain: async () => {
      await batcher.drain();
      await Promise.all(enqueuing);
    },
  };
}
