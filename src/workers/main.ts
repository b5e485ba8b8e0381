import { loadConfig } from '../config.ts';
import { runAtNiceness } from '../infra/cpu-priority.ts';
import { createLogger } from '../infra/logger.ts';
import { onShutdown } from '../infra/shutdown.ts';
import { startWorker } from './start-worker.ts';

const config = loadConfig();
const logger = createLogger(config, 'worker');
runAtNiceness(config.BACKGROUND_NICE, logger);
const worker = startWorker(config, logger);
onShutdown(logger, worker.close);
