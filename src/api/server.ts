import { loadConfig } from '../config.ts';
import { createLogger } from '../infra/logger.ts';
import { onShutdown } from '../infra/shutdown.ts';
import { startApi } from './start-api.ts';

const config = loadConfig();
const logger = createLogger(config, 'api');
if (!config.ADMIN_TOKEN) logger.warn('ADMIN_TOKEN is not set: /admin routes answer 401');
const api = await startApi(config, logger);
onShutdown(logger, api.close);
