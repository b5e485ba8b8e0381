import { pino, type Logger } from 'pino';
import type { Config } from '../config.ts';

export type { Logger };

/** JSON logs; child loggers carry requestId / operationId on every line. */
export function createLogger(config: Pick<Config, 'LOG_LEVEL'>, name: string): Logger {
  return pino({ name, level: config.LOG_LEVEL, base: { process: name, pid: process.pid } });
}
