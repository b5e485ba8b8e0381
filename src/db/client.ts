import pg from 'pg';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { Config } from '../config.ts';
import { prepareStatementsOn, StatementNames } from './prepared-statements.ts';
import * as schema from './schema.ts';
import './drizzle-transaction-fix.ts';

// Raw pg returns bigint (int8) as a string; money must stay exact, so parse to bigint.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => BigInt(v));

export type Db = NodePgDatabase<typeof schema>;
/** A drizzle handle inside a transaction. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

export interface Database {
  readonly url: string;
  readonly pool: pg.Pool;
  readonly db: Db;
}

export function openDatabase(
  url: string,
  config: Pick<Config, 'PG_POOL_MAX' | 'PG_CONNECTION_TIMEOUT_MS' | 'PG_IDLE_TIMEOUT_MS'> & Partial<Pick<Config, 'PG_PREPARED_STATEMENTS'>>,
  applicationName: string,
): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: config.PG_POOL_MAX,
    connectionTimeoutMillis: config.PG_CONNECTION_TIMEOUT_MS,
    idleTimeoutMillis: config.PG_IDLE_TIMEOUT_MS,
    application_name: applicationName,
  });
  // An idle client that loses its server (restart, pg_terminate_backend) emits here; the pool
  // drops it and the next checkout reconnects. Without a listener the process would crash.
  pool.on('error', () => {});
  // A checked-out client (a transaction between two statements) emits 'error' on the client
  // itself, where the pool listens no more: without this the process crashes. The transaction
  // still fails (its next statement gets the error) and the client is discarded on release.
  // Statements this pool runs often become prepared statements (prepared-statements.ts).
  const names = new StatementNames({ maxStatements: config.PG_PREPARED_STATEMENTS ?? 0, threshold: 3 });
  pool.on('connect', (client) => {
    client.on('error', () => {});
    if (config.PG_PREPARED_STATEMENTS) prepareStatementsOn(client, names);
  });
  return { url, pool, db: drizzle(pool, { schema }) };
}
