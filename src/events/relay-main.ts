import { loadConfig } from '../config.ts';
import { createLogger } from '../infra/logger.ts';
import { onShutdown } from '../infra/shutdown.ts';
import { startRelay } from './start-relay.ts';

const config = loadConfig();
const logger = createLogger(config, 'relay');
const relay = startRelay(config, logger);
onShutdown(logger, relay.close);
