/**
 * Lua scripts run on an auto-pipelining connection (src/infra/redis.ts). ioredis copies a
 * connection's custom commands into each auto-pipeline when it creates it; a script defined
 * while a pipeline was filling was missing from it, its call failed, and the pipeline's reply
 * handler then threw outside any promise ("results[i] is not iterable"), which ends a process.
 * Seen once in the test suite: a wallet-cache invalidation defined its script on first use.
 */
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { luaScript } from '../src/infra/redis.ts';
import { uncaughtDuring } from './support/uncaught.ts';

const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
afterAll(() => redis.disconnect());

it('a script first run while an auto-pipeline is filling runs, and nothing throws outside its promise', async () => {
  await redis.ping();
  const uncaught = await uncaughtDuring(async () => {
    const before = redis.get(`ll-test:${Math.random()}`); // opens this turn's auto-pipeline
    const echo = luaScript<string>(1, `return KEYS[1] .. ARGV[1] -- ${Date.now()}`);
    const [got, echoed] = await Promise.all([before, echo(redis, 'a', 'b')]);
    expect(got).toBeNull();
    expect(echoed).toBe('ab');
    // Run again (EVALSHA now finds it cached), and after a SCRIPT FLUSH (NOSCRIPT: EVAL again).
    expect(await echo(redis, 'c', 'd')).toBe('cd');
    await redis.script('FLUSH');
    expect(await echo(redis, 'e', 'f')).toBe('ef');
  });
  expect(uncaught).toEqual([]);
});
