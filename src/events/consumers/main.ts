/** One consumer process: `node --import tsx src/events/consumers/main.ts <audit|analytics|fraud|webhooks>`. */
import { loadConfig } from '../../config.ts';
import { createLogger } from '../../infra/logger.ts';
import { onShutdown } from '../../infra/shutdown.ts';
import { CONSUMER_NAMES, startConsumerProcess, type ConsumerName } from './start-consumer.ts';
import { superviseConsumer } from './supervisor.ts';

const name = process.argv[2] as ConsumerName;
if (!CONSUMER_NAMES.includes(name)) {
  process.stderr.write(`usage: consumers/main.ts <${CONSUMER_NAMES.join('|')}>\n`);
  process.exit(64);
}
const config = loadConfig();
const logger = createLogger(config, `consumer-${name}`);
const supervisor = superviseConsumer((onFatal) => startConsumerProcess(name, config, logger, { onFatal }), logger);
onShutdown(logger, () => supervisor.stop());
await supervisor.started;
