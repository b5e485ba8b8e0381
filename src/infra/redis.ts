import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config.ts';

/**
 * A connection for request paths: fails fast when Redis is away (no offline queue, one retry),
 * so the API falls back to Postgres instead of hanging.
 */
export function createFastFailRedis(config: Pick<Config, 'REDIS_URL'>, extra: RedisOptions = {}): Redis {
  return new Redis(config.REDIS_URL, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 2000,
    commandTimeout: 2000,
    ...extra,
  });
}

/** A connection for BullMQ workers and blocking commands: waits for Redis to come back. */
export function createBlockingRedis(config: Pick<Config, 'REDIS_URL'>): Redis {
  return new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
}

/**
 * Registers a Lua script on `redis` (EVALSHA, falling back to EVAL once per connection) and
 * returns a typed function that runs it: the first `numberOfKeys` arguments are its KEYS, the
 * rest its ARGV (with `numberOfKeys` undefined, the first argument is the number of keys).
 */
export function defineScript<Reply>(
  redis: Redis,
  name: string,
  numberOfKeys: number | undefined,
  lua: string,
): (...keysThenArgs: (string | number)[]) => Promise<Reply> {
  redis.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
  const command = (redis as unknown as Record<string, (...a: (string | number)[]) => Promise<Reply>>)[name]!;
  return (...keysThenArgs) => command.apply(redis, keysThenArgs);
}
