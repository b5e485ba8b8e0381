/**
 * Set-up shared by the benchmarks: a fresh migrated database, waiting for a process to serve,
 * the tunables handed to the processes they start, opening balances with their entries, the
 * transfer mix, and the cheap check for operations still open.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { migrateDatabase } from '../src/db/migrate.ts';

/** Drops `name` on the server at `pgUrl` (connections and all), creates it again and migrates it. */
export async function freshDatabase(pgUrl: string, name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: `${pgUrl}/postgres` });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  await migrateDatabase(`${pgUrl}/${name}`);
}

/** Resolves once `url` answers 2xx (polled every 100 ms for up to 20 s). */
export async function waitHttp(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    await sleep(100);
  }
  throw new Error(`${url} did not come up`);
}

/** The bench tools' Kafka topic: the shared mock broker's default topic feeds `npm start`'s consumers. */
export const BENCH_TOPIC = 'bench.events';

/** The batch, pool, relay and priority tunables in this environment (SETTLE_BATCH_MAX=1024 npm run bench), for the processes a bench starts. */
export const TUNABLES: Record<string, string> = Object.fromEntries(
  Object.entries(process.env).filter((e): e is [string, string] =>
    e[1] !== undefined && /^(SETTLE_BATCH_|ACCEPT_BATCH_|ENQUEUE_BATCH_|WORKER_CONCURRENCY|PG_POOL_MAX|PG_PREPARED_STATEMENTS|RELAY_|BACKGROUND_NICE)/.test(e[0]),
  ),
);

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

/**
 * Whether any operation is still open. EXISTS stops at the first one: a COUNT(*) over the open
 * operations took ~80 ms of Postgres CPU under a bulk backlog, and polled every 100 ms it took a
 * third of a core from the system it was timing (the baselines are not polled).
 */
export async function anyOpen(db: pg.Pool): Promise<boolean> {
  return (await db.query(`SELECT EXISTS (SELECT 1 FROM operations WHERE status IN ('pending', 'processing')) AS open`)).rows[0].open;
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
