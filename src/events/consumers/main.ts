/** One consumer process: `node --import tsx src/events/consumers/main.ts <audit|analytics|fraud|webhooks>`. */
import { loadConfig } from '../../config.ts';
import { createLogger } from '../../infra/logger.ts';
import { onShutdown } from '../../infra/shutdown.ts';
import { sleep } from '../../infra/sleep.ts';
import { CONSUMER_NAMES, startConsumerProcess, type ConsumerName } from './start-consumer.ts';

const name = process.argv[2] as ConsumerName;
if (!CONSUMER_NAMES.includes(name)) {
  process.stderr.write(`usage: consumers/main.ts <${CONSUMER_NAMES.join('|')}>\n`);
  process.exit(64);
}
const config = loadConfig();
const logger = createLogger(config, `consumer-${name}`);
let running: { close: () => Promise<void> } | undefined;
const stopped = new AbortController(); // ends the attempts and cuts short the pauses between them
onShutdown(logger, async () => {
  stopped.abort();
  await steps; // a start or restart in progress
  await running?.close();
});

/** Starts the consumer; the broker may be away at start-up: keep trying rather than exiting. */
async function start(): Promise<void> {
  for (let delayMs = 500; !running && !stopped.signal.aborted; delayMs = Math.min(delayMs * 2, 10_000)) {
    try {
      running = await startConsumerProcess(name, config, logger, { onFatal: () => void (steps = steps.then(restart)) });
    } catch (err) {
      logger.warn({ err, delayMs }, 'consumer could not start; retrying');
      await sleep(delayMs, stopped.signal);
    }
  }
}

/**
 * After a crash kafkajs does not recover from: closes the consumer and starts it afresh from
 * its committed offsets, after a pause that doubles with each crash within 5 minutes of the
 * last (1 s to 1 min), so a message that crashes it every time is retried, not spun on.
 * Steps run one after another (a crash while joining reports before its start returns).
 */
let restartDelayMs = 0;
let lastCrash = 0;
async function restart(): Promise<void> {
  restartDelayMs = Date.now() - lastCrash > 5 * 60_000 ? 1000 : Math.min(restartDelayMs * 2, 60_000);
  lastCrash = Date.now();
  const crashed = running;
  running = undefined;
  await crashed?.close().catch((err: unknown) => logger.warn({ err }, 'closing the crashed consumer failed'));
  logger.warn({ delayMs: restartDelayMs }, 'restarting the consumer after its crash');
  await sleep(restartDelayMs, stopped.signal);
  await start();
}

let steps: Promise<void> = start();
await steps;
