/**
 * Moves one logical shard to another database while the system runs (docs/shard-move.md):
 *   1. fence the shard in its current database (a trigger refuses writes to its rows) and wait
 *      for transactions already writing to finish;
 *   2. copy its rows (wallets, their entries, operations, sagas, saga credits, unsent outbox
 *      rows, idempotency keys) to the target in one transaction, with one clearing entry that
 *      keeps the target's books balanced;
 *   3. switch the shard map (processes reload it; the fence and "moved away?" checks make stale
 *      processes retry instead of reading or writing the old copy);
 *   4. delete the rows from the old database, with the matching clearing entry there.
 * Every step can run again: a move that crashed is resumed by running the command again.
 */
import { createHash, randomUUID } from 'node:crypto';
import { and, eq, ne } from 'drizzle-orm';
import type pg from 'pg';
import { retryOnConflict, sqlState } from './errors.ts';
import type { Logger } from '../infra/logger.ts';
import { shardAssignments, shardMoves } from './schema.ts';
import type { ShardRouter } from './shard-router.ts';
import { newTimeOrderedId } from '../domain/ids.ts';

/** `col` is in logical shard $1. */
const inShard = (col: string) => `get_byte(uuid_send(${col}), 0) = $1`;
const KEY_SHARD = `get_byte(sha256(convert_to(client_id::text, 'UTF8') || '\\x00'::bytea || convert_to(key, 'UTF8')), 0) = $1`;

/** What moves, per table: the rows of the shard, as `SELECT … FROM table t WHERE …`. */
const MOVED = {
  wallets: `kind = 'customer' AND ${inShard('id')}`,
  operations: inShard('id'),
  transfer_sagas: inShard('operation_id'),
  gateway_charges: inShard('operation_id'),
  saga_credits: inShard('wallet_id'),
  idempotency_keys: KEY_SHARD,
  ledger_entries: `wallet_id IN (SELECT id FROM wallets WHERE kind = 'customer' AND ${inShard('id')})`,
  outbox: `sent_at IS NULL AND ${inShard(
    "CASE WHEN operation_id IS NOT NULL THEN operation_id WHEN key ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' THEN key::uuid END",
  )}`,
} as const;
type Table = keyof typeof MOVED;

/** Insert order (foreign keys); deletion runs in reverse. */
const ORDER: Table[] = ['wallets', 'operations', 'transfer_sagas', 'gateway_charges', 'saga_credits', 'idempotency_keys', 'ledger_entries', 'outbox'];

/** Columns to insert, and the conflict target; serial `seq` columns get new values in order. */
const INSERT: Record<Table, { columns?: string; order?: string; conflict: string }> = {
  wallets: { conflict: '(id)' },
  operations: { conflict: '(id)' },
  transfer_sagas: { conflict: '(operation_id)' },
  gateway_charges: { conflict: '(operation_id)' },
  saga_credits: { conflict: '(operation_id)' },
  idempotency_keys: { conflict: '(client_id, key)' },
  ledger_entries: {
    columns: 'id, operation_id, wallet_id, leg, amount, balance_after, created_at',
    order: 'seq',
    conflict: '(operation_id, wallet_id, leg)',
  },
  outbox: {
    columns: 'event_id, type, key, payload, operation_id, created_at, sent_at, request_id, traceparent',
    order: 'seq',
    conflict: '(event_id)',
  },
};

export interface MoveReport {
  moveId: string;
  shard: number;
  from: number;
  to: number;
  rows: Record<string, number>;
  /** Net of the moved wallets' entries: what the clearing entries carry across. */
  movedMinor: bigint;
}

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

/**
 * The barrier after the fence: SHARE locks on the tables the fence guards, which wait for the
 * transactions already writing them. Postgres takes them one by one in this order, which is the
 * order every writer takes its row-exclusive locks on them: an accept claims idempotency_keys,
 * then operations; settlement and sagas write wallets, then operations or saga_credits; a fund's
 * gateway step writes operations, then gateway_charges (or gateway_charges alone). So the
 * barrier may wait for a writer but never holds a table that writer still needs (in the order
 * wallets, operations, … an accept and the barrier deadlocked, and one had to be run again after
 * Postgres's deadlock_timeout).
 */
export const WRITERS_BARRIER = 'LOCK TABLE wallets, idempotency_keys, operations, gateway_charges, saga_credits IN SHARE MODE';

/** One transaction; run again on deadlock or serialization failure (it does nothing then). */
async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return retryOnConflict(() => withClient(pool, async (c) => {
    await c.query('BEGIN');
    try {
      const result = await fn(c);
      await c.query('COMMIT');
      return result;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }), 10);
}

/** The clearing account of a currency in a database (created on first use). */
async function clearingAccount(c: pg.PoolClient, currency: string): Promise<string> {
  await c.query(
    `INSERT INTO wallets (id, kind, currency) VALUES ($1, 'clearing', $2) ON CONFLICT (kind, currency) WHERE kind <> 'customer' DO NOTHING`,
    [randomUUID(), currency],
  );
  const { rows } = await c.query<{ id: string }>(`SELECT id FROM wallets WHERE kind = 'clearing' AND currency = $1`, [currency]);
  return rows[0]!.id;
}

/**
 * Writes the clearing entries of a move in one database: per currency, the net of the moved
 * wallets' entries, as a debit (`into`: money arrives with the wallets) or a credit (`out of`).
 */
async function writeMoveEntries(c: pg.PoolClient, moveId: string, side: 'into' | 'outOf', nets: Map<string, bigint>): Promise<void> {
  for (const [currency, net] of nets) {
    if (net === 0n) continue;
    const account = await clearingAccount(c, currency);
    const amount = side === 'into' ? -net : net;
    await c.query(
      `INSERT INTO ledger_entries (id, operation_id, wallet_id, leg, amount, created_at)
       VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (operation_id, wallet_id, leg) DO NOTHING`,
      [newTimeOrderedId(), moveIdFor(moveId, currency), account, amount < 0n ? 'debit' : 'credit', amount.toString()],
    );
  }
}

/** One clearing "operation" id per move and currency, stable across reruns. */
function moveIdFor(moveId: string, currency: string): string {
  const digest = createHash('sha256').update(`${moveId}:${currency}`).digest('hex');
  return `${digest.slice(0, 8)}-${digest.slice(8, 12)}-4${digest.slice(13, 16)}-8${digest.slice(17, 20)}-${digest.slice(20, 32)}`;
}

/** Moves logical shard `shard` to database `to`. Safe to run again after a crash. */
export async function moveShard(router: ShardRouter, shard: number, to: number, logger: Logger): Promise<MoveReport> {
  if (!Number.isInteger(shard) || shard < 0 || shard > 255) throw new Error('shard must be 0–255');
  if (!Number.isInteger(to) || to < 0 || to >= router.databases.length) throw new Error(`target must be 0–${router.databases.length - 1}`);
  const control = router.control.db;
  await router.refresh();

  // Resume an unfinished move of this shard, or start one.
  let [move] = await control
    .select()
    .from(shardMoves)
    .where(and(eq(shardMoves.logicalShard, shard), ne(shardMoves.state, 'done')));
  const from = move?.fromDatabase ?? router.databaseIndexOfShard(shard);
  if (!move) {
    if (from === to) throw new Error(`shard ${shard} already lives in database ${to}`);
    [move] = await control
      .insert(shardMoves)
      .values({ id: randomUUID(), logicalShard: shard, fromDatabase: from, toDatabase: to, state: 'copying' })
      .returning()
      .catch((err: unknown) => {
        // shard_moves_one_open_uq: another run started this shard's move since the select above.
        if (sqlState(err) === '23505') throw new Error(`another run started a move of shard ${shard} at the same time; run the command again to resume it`);
        throw err;
      });
  }
  if (!move || move.toDatabase !== to) throw new Error(`an unfinished move of shard ${shard} goes to database ${move?.toDatabase}`);
  const moveId = move.id;
  let state = move.state;
  const source = router.databases[from]!.pool;
  const target = router.databases[to]!.pool;
  const log = logger.child({ moveId, shard, from, to });
  const rows: Record<string, number> = {};
  const nets = new Map<string, bigint>();

  if (state === 'copying') {
    // 1. Fence, then wait for writers that started before the fence to commit or roll back.
    await source.query(`INSERT INTO fenced_shards (logical_shard) VALUES ($1) ON CONFLICT DO NOTHING`, [shard]);
    await inTransaction(source, (c) => c.query(WRITERS_BARRIER));
    log.info('shard fenced in its database; copying');

    // 2. Copy, as JSON text (bigints stay exact), in one target transaction.
    await inTransaction(target, async (t) => {
      await t.query(`DELETE FROM fenced_shards WHERE logical_shard = $1`, [shard]);
      for (const table of ORDER) {
        const { rows: [dump] } = await source.query<{ data: string | null; n: number }>(
          `SELECT json_agg(t ORDER BY ${INSERT[table].order ?? '1'})::text AS data, COUNT(*)::int AS n FROM ${table} t WHERE ${MOVED[table]}`,
          [shard],
        );
        rows[table] = dump?.n ?? 0;
        if (!dump?.data) continue;
        const spec = INSERT[table];
        const columns = spec.columns ?? '*';
        await t.query(
          `INSERT INTO ${table} ${spec.columns ? `(${spec.columns})` : ''}
           SELECT ${columns} FROM json_populate_recordset(NULL::${table}, $1::json) ${spec.order ? `ORDER BY ${spec.order}` : ''}
           ON CONFLICT ${spec.conflict} DO NOTHING`,
          [dump.data],
        );
      }
      const { rows: sums } = await t.query<{ currency: string; net: string }>(
        `SELECT w.currency, COALESCE(SUM(e.amount), 0)::text AS net FROM ledger_entries e JOIN wallets w ON w.id = e.wallet_id
         WHERE w.kind = 'customer' AND ${inShard('w.id')} GROUP BY w.currency`,
        [shard],
      );
      for (const s of sums) nets.set(s.currency, BigInt(s.net));
      await writeMoveEntries(t, moveId, 'into', nets);
    });
    log.info({ rows }, 'shard copied');

    // 3. Switch the map; processes pick it up within SHARD_MAP_REFRESH_MS.
    await control.transaction(async (tx) => {
      if (to === router.defaultDatabaseIndexOfShard(shard)) {
        await tx.delete(shardAssignments).where(eq(shardAssignments.logicalShard, shard));
      } else {
        await tx
          .insert(shardAssignments)
          .values({ logicalShard: shard, databaseIndex: to })
          .onConflictDoUpdate({ target: shardAssignments.logicalShard, set: { databaseIndex: to, updatedAt: new Date() } });
      }
      await tx.update(shardMoves).set({ state: 'switched', updatedAt: new Date() }).where(eq(shardMoves.id, moveId));
    });
    state = 'switched';
    await router.refresh();
    log.info('shard map switched');
  }

  if (state === 'switched') {
    // 4. Remove the old copy; the fence stays, so stale processes are told to retry.
    await inTransaction(source, async (c) => {
      if (nets.size === 0) {
        const { rows: sums } = await c.query<{ currency: string; net: string }>(
          `SELECT w.currency, COALESCE(SUM(e.amount), 0)::text AS net FROM ledger_entries e JOIN wallets w ON w.id = e.wallet_id
           WHERE w.kind = 'customer' AND ${inShard('w.id')} GROUP BY w.currency`,
          [shard],
        );
        for (const s of sums) nets.set(s.currency, BigInt(s.net));
      }
      for (const table of [...ORDER].reverse()) {
        const { rowCount } = await c.query(`DELETE FROM ${table} WHERE ${MOVED[table]}`, [shard]);
        rows[`${table}_deleted`] = rowCount ?? 0;
      }
      await writeMoveEntries(c, moveId, 'outOf', nets);
    });
    await control.update(shardMoves).set({ state: 'done', updatedAt: new Date() }).where(eq(shardMoves.id, moveId));
    log.info({ rows }, 'shard move done');
  }
  return { moveId, shard, from, to, rows, movedMinor: [...nets.values()].reduce((a, b) => a + b, 0n) };
}
