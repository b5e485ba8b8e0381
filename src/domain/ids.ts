import { randomBytes, randomUUID } from 'node:crypto';

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
  return uuidOf(`${SHARD_HEX[shard & 0xff]}${timeHex(shardTime, now % 2 ** 40, 10)}`, '8');
}

/**
 * An RFC 9562 version 7 id: 48 bits of Unix milliseconds, then 74 random bits. For rows that
 * are only ever appended (ledger entries, outbox events): their unique indexes then grow at the
 * right edge, as `seq` does, instead of touching a random leaf page per insert, which in Postgres
 * also means a full-page image in the WAL for each leaf first touched after a checkpoint.
 */
export function newTimeOrderedId(now = Date.now()): string {
  return uuidOf(timeHex(unixTime, now, 12), '7');
}

const SHARD_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
// The variant (10 in the top two bits) for each random hex digit: two of its bits stay random.
const VARIANT: Record<string, string> = Object.fromEntries([...'0123456789abcdef'].map((c, i) => [c, '89ab'[i % 4]!]));
const POOL_IDS = 512;
let pool = '';
let at = 0;
const shardTime = { ms: -1, hex: '' };
const unixTime = { ms: -1, hex: '' };

/** `ms` as `digits` hex digits, computed once per millisecond (ids come in bursts). */
function timeHex(last: { ms: number; hex: string }, ms: number, digits: number): string {
  if (last.ms !== ms) {
    last.ms = ms;
    last.hex = ms.toString(16).padStart(digits, '0');
  }
  return last.hex;
}

/**
 * A UUID string: the given 12 hex digits (48 bits), the version digit, then 74 random bits with
 * the RFC 9562 variant. Random digits come from a pool refilled 512 ids at a time, as
 * `randomUUID` does, so an id costs no syscall and no buffer.
 */
function uuidOf(first48: string, version: '7' | '8'): string {
  if (at === pool.length) {
    pool = randomBytes(POOL_IDS * 10).toString('hex');
    at = 0;
  }
  const r = pool.slice(at, (at += 20));
  return `${first48.slice(0, 8)}-${first48.slice(8, 12)}-${version}${r.slice(0, 3)}-${VARIANT[r[3]!]}${r.slice(4, 7)}-${r.slice(7, 19)}`;
}
