import { loadConfig } from '../config.ts';
import { createLogger } from '../infra/logger.ts';
import { onShutdown } from '../infra/shutdown.ts';
import { startGatewaySim } from './start-gateway-sim.ts';

const config = loadConfig();
const logger = createLogger(config, 'gateway-sim');
// In a container the simulator must be reachable from other services; locally loopback is enough.
const sim = await startGatewaySim(
  { port: config.GATEWAY_SIM_PORT, host: config.NODE_ENV === 'production' ? '0.0.0.0' : '127.0.0.1' },
  logger,
);
onShutdown(logger, sim.close);
