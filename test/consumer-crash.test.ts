/**
 * kafkajs restarts a consumer after retriable errors only. After a non-retriable one the
 * consumer stops for good while its process lives on: the owner is told (onFatal), and the
 * consumer process starts afresh (src/events/consumers/main.ts).
 */
import { KafkaJSNonRetriableError } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/client.ts';
import { startConsumer } from '../src/events/consumers/consumer.ts';
import { createLogger } from '../src/infra/logger.ts';
import { createTestEnv, type TestEnv } from './support/env.ts';

let t: TestEnv;
let database: Database;
beforeAll(async () => {
  t = await createTestEnv({ relay: true });
  database = openDatabase(t.config.DATABASE_URL, t.config, 'consumer-crash-test');
}, 60_000);
afterAll(async () => {
  await database?.pool.end();
  await t?.close();
});

it('a consumer that crashes with a non-retriable error reports it to its owner', async () => {
  await t.api.wallet(await t.api.adminKey()); // one event on the topic (wallet.created)
  let fatal: Error | undefined;
  const running = await startConsumer(
    t.config,
    createLogger(t.config, 'consumer-crash-test'),
    database,
    {
      name: 'crashy',
      apply: () => Promise.reject(new KafkaJSNonRetriableError('a failure kafkajs does not retry')),
    },
    (err) => (fatal = err),
  );
  try {
    await expect.poll(() => fatal?.message, { timeout: 30_000, interval: 100 }).toBe('a failure kafkajs does not retry');
  } finally {
    await running.close();
  }
}, 60_000);
