import { inArray } from 'drizzle-orm';
import { logicalShardOf } from '../../domain/ids.ts';
import type { Db, Tx } from '../client.ts';
import { fencedShards } from '../schema.ts';
import { SHARD_FENCED } from '../shard-router.ts';

/** Raised where a row is missing because its shard moved away: retry after a map refresh. */
export class ShardFencedError extends Error {
  readonly code = SHARD_FENCED;
  constructor(shards: readonly number[]) {
    super(`logical shard(s) ${shards.join(', ')} moved or moving; refresh the shard map and retry`);
  }
}

/**
 * Before concluding that a wallet or operation does not exist, checks that its shard has not
 * moved away from this database (a process with a stale shard map would look in the old one).
 */
export async function assertNotFenced(db: Db | Tx, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const shards = [...new Set(ids.map(logicalShardOf))];
  const fenced = await db.select().from(fencedShards).where(inArray(fencedShards.logicalShard, shards));
  if (fenced.length > 0) throw new ShardFencedError(fenced.map((f) => f.logicalShard));
}
