import { loadConfig } from '../config.ts';
import { createLogger } from '../infra/logger.ts';
import { migrateDatabase } from './migrate.ts';

const config = loadConfig();
const logger = createLogger(config, 'migrate');
for (const url of config.SHARD_DATABASE_URLS) {
  const where = new URL(url);
  await migrateDatabase(url);
  logger.info({ database: `${where.host}${where.pathname}` }, 'migrated');
}
