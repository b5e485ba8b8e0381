/**
 * `npm run shard:move -- <logical shard: 0-255, or 0x00-0xff> <target database index>`
 * Moves one logical shard while the system runs; see docs/shard-move.md.
 */
import { loadConfig } from '../config.ts';
import { createLogger } from '../infra/logger.ts';
import { moveShard } from './shard-move.ts';
import { ShardRouter } from './shard-router.ts';

const [shardArg, targetArg] = process.argv.slice(2);
const shard = Number(shardArg); // Number() reads both 58 and 0x3a
const target = Number(targetArg);
const config = loadConfig();
const logger = createLogger(config, 'shard-move');
if (!Number.isInteger(shard) || !Number.isInteger(target)) {
  logger.error('usage: npm run shard:move -- <shard: 0-255 or 0x00-0xff> <target database index>');
  process.exit(64);
}
const router = ShardRouter.open(config, 'ledgerline-shard-move');
try {
  const report = await moveShard(router, shard, target, logger);
  logger.info({ ...report, movedMinor: report.movedMinor.toString() }, 'moved');
} finally {
  await router.close();
}
