import { createHash } from 'node:crypto';
import type { Config } from '../config.ts';
import { LOGICAL_SHARDS, logicalShardOf } from '../domain/ids.ts';
import { openDatabase, type Database } from './client.ts';

/**
 * Maps the 256 logical shards (first two hex characters of a wallet or operation id) onto
 * the physical databases: logical shard s lives in database floor(s * N / 256).
 */
export class ShardRouter {
  readonly databases: readonly Database[];

  constructor(databases: readonly Database[]) {
    if (databases.length === 0) throw new Error('at least one database is required');
    this.databases = databases;
  }

  static open(config: Config, applicationName: string): ShardRouter {
    return new ShardRouter(config.SHARD_DATABASE_URLS.map((url) => openDatabase(url, config, applicationName)));
  }

  /** The database holding clients and API keys. */
  get control(): Database {
    return this.databases[0]!;
  }

  databaseIndexOfShard(shard: number): number {
    return Math.floor((shard * this.databases.length) / LOGICAL_SHARDS);
  }

  /** The database holding a wallet or operation, found from its id alone. */
  forId(id: string): Database {
    return this.databases[this.databaseIndexOfShard(logicalShardOf(id))]!;
  }

  /** The database that keeps a client's idempotency key: spread by a hash of (client, key). */
  forIdempotencyKey(clientId: string, key: string): Database {
    const digest = createHash('sha256').update(clientId).update('\0').update(key).digest();
    return this.databases[this.databaseIndexOfShard(digest[0]!)]!;
  }

  async close(): Promise<void> {
    await Promise.all(this.databases.map((d) => d.pool.end()));
  }
}
