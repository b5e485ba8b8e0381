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

/** A random v4 id whose first byte is the given logical shard, so it is found with no lookup. */
export function newIdInShard(shard: number): string {
  const bytes = randomBytes(16);
  bytes[0] = shard & 0xff;
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
