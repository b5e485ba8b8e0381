/**
 * The ledger transaction of one transfer, written straight against Postgres: what
 * one-transaction-per-transfer costs here. Used by both baselines (the synchronous HTTP server
 * and the tight pg loop). Same schema and the same writes as our settlement: the operation row,
 * the two wallets locked in id order, two balance updates, two entries and the outbox row.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';

export async function transferOnce(
  client: pg.PoolClient | pg.Client,
  input: { clientId: string; from: string; to: string; amount: bigint },
): Promise<'succeeded' | 'insufficient_funds'> {
  const id = randomUUID();
  const [first, second] = input.from < input.to ? [input.from, input.to] : [input.to, input.from];
  await client.query('BEGIN');
  try {
    const { rows } = await client.query<{ id: string; balance: string }>(
      'SELECT id, balance::text FROM wallets WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE',
      [[first, second]],
    );
    const from = rows.find((r) => r.id === input.from);
    const status = from && BigInt(from.balance) >= input.amount ? 'succeeded' : 'failed';
    await client.query(
      `INSERT INTO operations (id, client_id, type, status, amount, currency, from_wallet_id, to_wallet_id, idempotency_key, request_hash, completed_at, failure_code)
       VALUES ($1::uuid, $2, 'transfer', $3, $4, 'USD', $5, $6, $1::text, $1::text, now(), $7)`,
      [id, input.clientId, status, input.amount.toString(), input.from, input.to, status === 'failed' ? 'insufficient_funds' : null],
    );
    if (status === 'succeeded') {
      await client.query('UPDATE wallets SET balance = balance - $2, updated_at = now() WHERE id = $1', [input.from, input.amount.toString()]);
      await client.query('UPDATE wallets SET balance = balance + $2, updated_at = now() WHERE id = $1', [input.to, input.amount.toString()]);
      await client.query(
        `INSERT INTO ledger_entries (id, operation_id, wallet_id, leg, amount) VALUES ($1, $3, $4, 'debit', -$6::bigint), ($2, $3, $5, 'credit', $6::bigint)`,
        [randomUUID(), randomUUID(), id, input.from, input.to, input.amount.toString()],
      );
    }
    await client.query(
      `INSERT INTO outbox (event_id, type, key, payload, operation_id) VALUES ($1, $2, $3, '{}'::jsonb, $4)`,
      [randomUUID(), status === 'succeeded' ? 'transfer.completed' : 'transfer.failed', input.from, id],
    );
    await client.query('COMMIT');
    return status === 'succeeded' ? 'succeeded' : 'insufficient_funds';
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
