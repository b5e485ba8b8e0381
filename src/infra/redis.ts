import { createHash } from 'node:crypto';
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
 * A Lua script, run on a connection given per call: EVALSHA, and EVAL when Redis answers
 * NOSCRIPT (first use, or after a restart or SCRIPT FLUSH), which also caches it again. The first
 * `numberOfKeys` arguments are its KEYS, the rest its ARGV (with `numberOfKeys` undefined, the
 * first argument is the number of keys).
 *
 * Built on EVALSHA/EVAL rather than ioredis's `defineCommand`: ioredis copies custom commands into
 * each auto-pipeline as it creates it, so a script defined while one was filling was missing
 * from it, its call failed, and ioredis then threw outside any promise, ending the process
 * (test/redis-script.test.ts). Built-in commands are on every pipeline, and nothing is
 * registered per connection.
 */
export function luaScript<Reply>(
  numberOfKeys: number | undefined,
  lua: string,
): (redis: Redis, ...keysThenArgs: (string | number)[]) => Promise<Reply> {
  const sha = createHash('sha1').update(lua).digest('hex');
  return async (redis, ...keysThenArgs) => {
    const args = (numberOfKeys === undefined ? keysThenArgs : [numberOfKeys, ...keysThenArgs]) as [number, ...(string | number)[]];
    try {
      return (await redis.evalsha(sha, ...args)) as Reply;
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return (await redis.eval(lua, ...args)) as Reply;
    }
  };
}
