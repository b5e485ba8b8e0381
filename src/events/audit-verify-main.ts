/** `npm run audit:verify`: exit 0 when the audit chain is intact, 1 naming the first bad record. */
import { loadConfig } from '../config.ts';
import { ShardRouter } from '../db/shard-router.ts';
import { verifyAuditLog } from './audit-verify.ts';

const config = loadConfig();
const shards = ShardRouter.open(config, 'ledgerline-audit-verify');
try {
  const result = await verifyAuditLog(shards.control.db);
  if (result.ok) {
    process.stdout.write(`audit log OK: ${result.records} records, chain intact\n`);
    process.exitCode = 0;
  } else {
    const { seq, eventId, reason } = result.problem;
    process.stdout.write(`audit log BROKEN at record seq=${seq} event_id=${eventId}: ${reason}\n`);
    process.exitCode = 1;
  }
} catch (err) {
  process.stderr.write(`audit:verify failed: ${(err as Error).message}\n`);
  process.exitCode = 2;
} finally {
  await shards.close();
}
