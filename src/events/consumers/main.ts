/** One consumer process: `node --import tsx src/events/consumers/main.ts <audit|analytics|fraud|webhooks>`. */
import { loadConfig } from '../../config.ts';
import { createLogger } from '../../infra/logger.ts';
import { onShutdown } from '../../infra/shutdown.ts';
import { CONSUMER_NAMES, startConsumerProcess, type ConsumerName } from './start-consumer.ts';

const name = process.argv[2] as ConsumerName;
if (!CONSUMER_NAMES.includes(name)) {
  process.stderr.write(`usage: consumers/main.ts <${CONSUMER_NAMES.join('|')}>\n`);
  process.exit(64);
}
const config = loadConfig();
const logger = createLogger(config, `consumer-${name}`);
let running: { close: () => Promise<void> } | undefined;
onShutdown(logger, async () => {
  await running?.close();
});
// The broker may be away at start-up: keep trying rather than exiting.
for (let delayMs = 500; !running; delayMs = Math.min(delayMs * 2, 10_000)) {
  try {
    running = await startConsumerProcess(name, config, logger);
  } catch (err) {
    logger.warn({ err, delayMs }, 'consumer could not start; retrying');
    await new Promise((r) => setTimeout(r, delayMs));
  }
}
