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
let stopping = false;
onShutdown(logger, async () => {
  stopping = true;
  await running?.close();
});
// The broker may be away at start-up: keep trying rather than exiting.
async function start(): Promise<void> {
  for (let delayMs = 500; !running && !stopping; delayMs = Math.min(delayMs * 2, 10_000)) {
    try {
      running = await startConsumerProcess(name, config, logger, { onFatal: () => void restart() });
    } catch (err) {
      logger.warn({ err, delayMs }, 'consumer could not start; retrying');
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}
/** After a crash kafkajs does not recover from: start afresh (from the committed offsets). */
async function restart(): Promise<void> {
  const crashed = running;
  running = undefined;
  await crashed?.close().catch((err: unknown) => logger.warn({ err }, 'closing the crashed consumer failed'));
  logger.warn('restarting the consumer');
  await start();
}
await start();
