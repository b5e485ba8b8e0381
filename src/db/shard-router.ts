import { hash } from 'node:crypto';
import type { Config } from '../config.ts';
import { LOGICAL_SHARDS, logicalShardOf } from '../domain/ids.ts';
import type { Logger } from '../infra/logger.ts';
import { sleep } from '../infra/sleep.ts';
import { openDatabase, type Database } from './client.ts';
import { shardAssignments } from './schema.ts';

/**
 * Maps the 256 logical shards (first two hex characters of a wallet or operation id) onto
 * the physical databases: logical shard s lives in database floor(s * N / 256), unless the
 * shard-move command assigned it elsewhere (shard_assignments, in the control database).
 */
export class ShardRouter {
  readonly databases: readonly Database[];
  private assignments = new Map<number, number>();

  constructor(databases: readonly Database[]) {
    if (databases.length === 0) throw new Error('at least one database is required');
    this.databases = databases;
  }

  static open(config: Config, applicationName: string): ShardRouter {
    return new ShardRouter(config.SHARD_DATABASE_URLS.map((url) => openDatabase(url, config, applicationName)));
  }

  /** The database holding clients, API keys and the shard map. */
  get control(): Database {
    return this.databases[0]!;
  }

  /** The default rule, ignoring moves. */
  defaultDatabaseIndexOfShard(shard: number): number {
    return Math.floor((shard * this.databases.length) / LOGICAL_SHARDS);
  }

  databaseIndexOfShard(shard: number): number {
    return this.assignments.get(shard) ?? this.defaultDatabaseIndexOfShard(shard);
  }

  /** The database holding a wallet or operation, found from its id alone. */
  forId(id: string): Database {
    return this.databases[this.databaseIndexOfShard(logicalShardOf(id))]!;
  }

  /** The logical shard of a client's idempotency key: a hash of (client, key). */
  static idempotencyShard(clientId: string, key: string): number {
    return hash('sha256', `${clientId}\0${key}`, 'buffer')[0]!;
  }

  /** The database that keeps a client's idempotency key. */
  forIdempotencyKey(clientId: string, key: string): Database {
    return this.databases[this.databaseIndexOfShard(ShardRouter.idempotencyShard(clientId, key))]!;
  }

  /** Reloads the moved shards from the control database. */
  async refresh(): Promise<void> {
    const rows = await this.control.db.select().from(shardAssignments);
    const next = new Map<number, number>();
    for (const row of rows) {
      if (row.databaseIndex >= this.databases.length) {
        throw new Error(`shard ${row.logicalShard} is assigned to database ${row.databaseIndex}, which is not configured`);
      }
      next.set(row.logicalShard, row.databaseIndex);
    }
    this.assignments = next;
  }

  /** Refreshes the shard map every `intervalMs` until `signal` aborts. */
  async keepFresh(intervalMs: number, logger: Logger, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.refresh().catch((err: unknown) => logger.warn({ err }, 'shard map refresh failed'));
      await sleep(intervalMs, signal);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.databases.map((d) => d.pool.end()));
  }
}

/** SQLSTATE raised by the fence trigger: the shard is moving or moved; refresh and retry. */
export const SHARD_FENCED = 'LL001';
