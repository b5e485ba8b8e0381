import type { Config } from '../config.ts';
import type { Logger } from '../infra/logger.ts';
import type { WorkerDeps } from './processor.ts';

/**
 * Test builds only: with NODE_ENV=test and FAULT_INJECTION=<point>:<probability>, the worker
 * kills itself with SIGKILL at that point (e.g. `after-settle:0.05`), so crash tests can stop
 * it between a commit and the job's completion. Never active in other environments.
 */
export function faultPointFromConfig(
  config: Pick<Config, 'NODE_ENV' | 'FAULT_INJECTION'>,
  logger: Logger,
): WorkerDeps['faultPoint'] {
  const spec = config.FAULT_INJECTION;
  if (config.NODE_ENV !== 'test' || !spec) return undefined;
  const [point, p] = spec.split(':');
  const probability = Number(p ?? '1');
  logger.warn({ point, probability }, 'fault injection enabled');
  return async (at, operationId) => {
    if (at === point && Math.random() < probability) {
      logger.warn({ at, operationId }, 'fault injection: SIGKILL');
      process.kill(process.pid, 'SIGKILL');
    }
  };
}
