import { sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';

/**
 * Constants that decide whether a partial index applies are written into the statement, not
 * bound: statements run often become prepared statements (prepared-statements.ts), and a
 * prepared statement's generic plan cannot prove `status IN ($1, $2)` implies an index's
 * `status IN ('pending', 'processing')`, so it would scan the table instead.
 */
export const OPEN_STATUS = sql.raw(`IN ('pending', 'processing')`);

/** One bound parameter, whatever the value (an array stays one array parameter, not a list). */
export const param = (value: unknown): SQL => sql`${sql.param(value)}`;

/**
 * Arrays of uuids, bigints and text bound in Postgres's binary array format (`array_send`'s
 * layout: a header, then each element as its length and its bytes), so the server copies the
 * elements instead of parsing them. In text form each uuid costs Postgres 16 `strtoul` calls and
 * every element a pass of `array_in`: with ~17 uuids per transfer between the accept and its
 * group commit, parsing parameters was 16 % of Postgres's CPU in a bulk run. node-postgres sends a
 * Buffer parameter as binary; the cast in the fragment tells Postgres its type, and `array_recv`
 * refuses an element type other than the cast's. A malformed uuid or an out-of-range bigint
 * throws here (TypeError, RangeError) before anything is sent.
 */
export const uuidArray = (values: readonly (string | null)[]): SQL => sql`${sql.param(encodeArray(UUID_OID, values, 16, writeUuid))}::uuid[]`;

/** bigints (or their decimal strings) as a binary `bigint[]` parameter; see `uuidArray`. */
export const bigintArray = (values: readonly (bigint | string | null)[]): SQL =>
  sql`${sql.param(encodeArray(INT8_OID, values, 8, (buf, at, v) => buf.writeBigInt64BE(typeof v === 'bigint' ? v : BigInt(v), at)))}::bigint[]`;

/** Strings as a binary `text[]` parameter (UTF-8, no quoting or escaping); see `uuidArray`. Postgres still checks the encoding. */
export const textArray = (values: readonly (string | null)[]): SQL => {
  const lengths = values.map((v) => (v === null ? 0 : Buffer.byteLength(v)));
  return sql`${sql.param(encodeArray(TEXT_OID, values, lengths, (buf, at, v) => buf.write(v, at, 'utf8')))}::text[]`;
};

/**
 * `column = ANY($1::uuid[])`: one parameter however many ids. Cheaper to build and plan than
 * `IN ($1, ..., $n)` on the group-commit and batched-accept paths.
 */
export const anyId = (column: AnyPgColumn, ids: readonly string[]): SQL => sql`${column} = ANY(${uuidArray(ids)})`;

const UUID_OID = 2950;
const INT8_OID = 20;
const TEXT_OID = 25;
const HEADER = 20; // ndim, has-nulls flag, element type, then the one dimension's length and lower bound

/** Encodes a one-dimensional array: `size` is each element's byte length (one for all, or one per element). */
function encodeArray<T>(oid: number, values: readonly (T | null)[], size: number | readonly number[], write: (buf: Buffer, at: number, v: T) => void): Buffer {
  let bytes = HEADER;
  let hasNull = false;
  for (let i = 0; i < values.length; i++) {
    if (values[i] === null) hasNull = true;
    else bytes += typeof size === 'number' ? size : size[i]!;
  }
  bytes += 4 * values.length;
  const buf = Buffer.allocUnsafe(bytes);
  buf.writeInt32BE(1, 0);
  buf.writeInt32BE(hasNull ? 1 : 0, 4);
  buf.writeInt32BE(oid, 8);
  buf.writeInt32BE(values.length, 12);
  buf.writeInt32BE(1, 16);
  let at = HEADER;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v === null) {
      buf.writeInt32BE(-1, at);
      at += 4;
      continue;
    }
    const n = typeof size === 'number' ? size : size[i]!;
    buf.writeInt32BE(n, at);
    write(buf, at + 4, v);
    at += 4 + n;
  }
  return buf;
}

/** Where each of a canonical uuid's 16 bytes starts in its text (8-4-4-4-12 hex digits). */
const UUID_BYTE_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i;
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i;
}
const hex = (c: number) => (c < 128 ? HEX[c]! : -1);

function writeUuid(buf: Buffer, at: number, uuid: string): void {
  if (uuid.length !== 36 || uuid[8] !== '-' || uuid[13] !== '-' || uuid[18] !== '-' || uuid[23] !== '-') throw new TypeError(`not a uuid: ${JSON.stringify(uuid)}`);
  for (let i = 0; i < 16; i++) {
    const hi = hex(uuid.charCodeAt(UUID_BYTE_AT[i]!));
    const lo = hex(uuid.charCodeAt(UUID_BYTE_AT[i]! + 1));
    if ((hi | lo) < 0) throw new TypeError(`not a uuid: ${JSON.stringify(uuid)}`);
    buf[at + i] = (hi << 4) | lo;
  }
}
