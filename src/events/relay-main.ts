import { loadConfig } from '../config.ts';
import { runAtNiceness } from '../infra/cpu-priority.ts';
import { createLogger } from '../infra/logger.ts';
import { onShutdown } from '../infra/shutdown.ts';

const config = loadConfig();
const logger = createLogger(config, 'relay');
runAtNiceness(config.BACKGROUND_NICE, logger);
// The signal handler goes in before the heavy modules load, so a SIGTERM during start-up
// still ends in a clean exit 0 (on a loaded machine loading them takes seconds).
const running: { relay?: { close: () => Promise<void> } } = {};
onShutdown(logger, async () => {
  await running.relay?.close();
});
const { startRelay } = await import('./start-relay.ts');
running.relay = startRelay(config, logger);
