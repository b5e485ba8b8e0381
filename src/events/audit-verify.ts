import { and, asc, gt } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { auditLog } from '../db/consumer-schema.ts';
import { firstChainProblem, GENESIS_HASH, type ChainProblem } from '../domain/audit-chain.ts';

/** Checks the whole audit chain page by page; returns the first bad record, or how many are good. */
export async function verifyAuditLog(db: Db, pageSize = 5000): Promise<{ ok: true; records: number } | { ok: false; problem: ChainProblem }> {
  let start = { seq: 0n, hash: GENESIS_HASH };
  let records = 0;
  for (;;) {
    const page = await db.select().from(auditLog).where(and(gt(auditLog.seq, start.seq))).orderBy(asc(auditLog.seq)).limit(pageSize);
    if (page.length === 0) return { ok: true, records };
    const problem = firstChainProblem(page, start);
    if (problem) return { ok: false, problem };
    const last = page[page.length - 1]!;
    start = { seq: last.seq, hash: last.hash };
    records += page.length;
  }
}
