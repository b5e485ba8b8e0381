import { desc } from 'drizzle-orm';
import { auditLog } from '../../db/consumer-schema.ts';
import { auditHash, GENESIS_HASH } from '../../domain/audit-chain.ts';
import { lockName } from '../../db/advisory-locks.ts';
import type { ConsumerSpec } from './consumer.ts';

/**
 * Appends every event to the hash-chained audit log. Appends are serialised by an advisory lock
 * so the chain stays linear with several audit processes in the group.
 */
export function auditConsumer(): ConsumerSpec {
  return {
    name: 'audit',
    async apply(tx, event) {
      await lockName(tx, 'audit_log');
      const [last] = await tx.select({ seq: auditLog.seq, hash: auditLog.hash }).from(auditLog).orderBy(desc(auditLog.seq)).limit(1);
      const record = {
        seq: (last?.seq ?? 0n) + 1n,
        eventId: event.id,
        eventType: event.type,
        subject: event.subject,
        eventTime: event.time,
        payload: event.data,
      };
      const prevHash = last?.hash ?? GENESIS_HASH;
      await tx.insert(auditLog).values({ ...record, prevHash, hash: auditHash(prevHash, record) });
    },
  };
}
