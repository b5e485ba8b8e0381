/** Set-up shared by the benchmarks: opening balances with their entries, and the transfer mix. */
import type pg from 'pg';

/**
 * Gives every customer wallet `balance` and books it as the ledger would: a credit entry per
 * wallet and one settlement-account debit for the total, so the books balance from the start.
 */
export async function seedOpeningBalances(db: pg.Pool, balance: bigint): Promise<void> {
  await db.query(`UPDATE wallets SET balance = $1 WHERE kind = 'customer'`, [balance.toString()]);
  await db.query(`INSERT INTO wallets (id, kind, currency) VALUES (gen_random_uuid(), 'settlement', 'USD') ON CONFLICT DO NOTHING`);
  await db.query(
    `INSERT INTO ledger_entries (id, operation_id, wallet_id, leg, amount, balance_after)
     SELECT gen_random_uuid(), gen_random_uuid(), id, 'credit', balance, balance FROM wallets WHERE kind = 'customer'`,
  );
  await db.query(
    `INSERT INTO ledger_entries (id, operation_id, wallet_id, leg, amount)
     SELECT gen_random_uuid(), gen_random_uuid(), (SELECT id FROM wallets WHERE kind = 'settlement'), 'debit', -SUM(amount) FROM ledger_entries`,
  );
}

/** Picks a source and a different destination: uniform, or hot (10 % of wallets take 90 % of picks). */
export function pairPicker(wallets: readonly string[], hot: boolean): () => { from: string; to: string } {
  const hotSet = wallets.slice(0, Math.max(2, Math.floor(wallets.length / 10)));
  const one = () => {
    const list = hot && Math.random() < 0.9 ? hotSet : wallets;
    return list[Math.floor(Math.random() * list.length)]!;
  };
  return () => {
    const from = one();
    let to = one();
    while (to === from) to = wallets[Math.floor(Math.random() * wallets.length)]!;
    return { from, to };
  };
}
