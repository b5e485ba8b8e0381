import { createHash } from 'node:crypto';

/** The hash the first record of the chain links to. */
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditRecord {
  seq: bigint;
  eventId: string;
  eventType: string;
  subject: string | null;
  eventTime: string;
  payload: unknown;
}

/** JSON with object keys sorted at every level: one text per value, whatever the key order. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    return JSON.stringify(typeof value === 'bigint' ? value.toString() : value) ?? 'null';
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** sha256(prevHash + canonical record), hex. The seq is part of the record, so order counts. */
export function auditHash(prevHash: string, record: AuditRecord): string {
  const { seq, eventId, eventType, subject, eventTime, payload } = record; // exactly these fields
  const canonical = canonicalJson({ seq: seq.toString(), eventId, eventType, subject, eventTime, payload });
  return createHash('sha256').update(prevHash).update('\n').update(canonical).digest('hex');
}

export type ChainProblem = { seq: bigint; eventId: string; reason: string };

/**
 * Walks records in seq order and returns the first that breaks the chain: a seq gap
 * (deleted record), a prev hash that is not the previous record's hash (deleted or reordered),
 * or a hash that does not match the content (edited).
 */
export function firstChainProblem(
  records: Iterable<AuditRecord & { prevHash: string; hash: string }>,
  start: { seq: bigint; hash: string } = { seq: 0n, hash: GENESIS_HASH },
): ChainProblem | undefined {
  let expectedSeq = start.seq + 1n;
  let prev = start.hash;
  for (const r of records) {
    if (r.seq !== expectedSeq) return { seq: r.seq, eventId: r.eventId, reason: `expected seq ${expectedSeq} (a record is missing)` };
    if (r.prevHash !== prev) return { seq: r.seq, eventId: r.eventId, reason: 'prev_hash does not match the previous record (deleted or reordered)' };
    if (auditHash(prev, r) !== r.hash) return { seq: r.seq, eventId: r.eventId, reason: 'hash does not match the record (edited)' };
    prev = r.hash;
    expectedSeq += 1n;
  }
  return undefined;
}
