import { randomFillSync, randomUUID } from 'node:crypto';

export const LOGICAL_SHARDS = 256;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True for a lower- or upper-case RFC 9562 UUID string. */
export function isUuid(text: string): boolean {
  return UUID.test(text.toLowerCase());
}

/** Logical shard (0–255) of a wallet or operation id: its first two hex characters. */
export function logicalShardOf(id: string): number {
  return Number.parseInt(id.slice(0, 2), 16);
}

/** A random v4 wallet id; random ids spread evenly over the 256 logical shards. */
export function newWalletId(): string {
  return randomUUID();
}

/**
 * An operation id: an RFC 9562 version 8 (custom layout) UUID whose first byte is the given
 * logical shard, so it is found with no lookup, followed by the low 40 bits of the Unix time in
 * milliseconds, then 74 random bits. Within a shard ids grow with time, so the operations
 * indexes keyed by it take inserts at 256 right edges rather than at random leaf pages (see
 * `newTimeOrderedId`). Not a timestamp to read back: the 40 bits wrap every 35 years.
 */
export function newIdInShard(shard: number, now = Date.now()): string {
  return uuidOf(`${(shard & 0xff).toString(16).padStart(2, '0')}${(now % 2 ** 40).toString(16).padStart(10, '0')}`, 8);
}

const POOL_IDS = 256;
const pool = Buffer.alloc(POOL_IDS * 10);
let pooled = POOL_IDS;

/**
 * An RFC 9562 version 7 id: 48 bits of Unix milliseconds, then 74 random bits. For rows that
 * are only ever appended (ledger entries, outbox events): their unique indexes then grow at the
 * right edge, as `seq` does, instead of touching a random leaf page per insert, which in Postgres
 * also means a full-page image in the WAL for each leaf first touched after a checkpoint.
 * Random bits come from a pool refilled 256 ids at a time (as `randomUUID` does).
 */
export function newTimeOrderedId(now = Date.now()): string {
  return uuidOf(now.toString(16).padStart(12, '0'), 7);
}

/**
 * A UUID string: the given 12 hex digits (48 bits), the version digit, then 74 random bits with
 * the RFC 9562 variant (10) in the top bits of the 17th digit.
 */
function uuidOf(first48: string, version: 7 | 8): string {
  if (pooled === POOL_IDS) {
    randomFillSync(pool);
    pooled = 0;
  }
  const r = pool.subarray(pooled * 10, ++pooled * 10);
  const hex = r.toString('hex');
  const variant = ((r[2]! & 0x3f) | 0x80).toString(16);
  return `${first48.slice(0, 8)}-${first48.slice(8, 12)}-${version}${hex.slice(0, 3)}-${variant}${hex.slice(6, 8)}-${hex.slice(8, 20)}`;
}
