/**
 * A consumer applies several partitions at once, each in a transaction holding a connection of
 * the control database's pool. Reads it makes inside that transaction must not take a second
 * connection from the same pool: with every connection in a transaction they would wait for
 * each other until the pool times out, again on every redelivery (found by the chaos harness
 * with PG_POOL_MAX=5: the webhooks consumer stopped making progress).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ShardRouter } from '../src/db/shard-router.ts';
import { applyOnce, type ConsumedEvent } from '../src/events/consumers/consumer.ts';
import { webhooksConsumer } from '../src/events/consumers/webhooks.ts';
import { createTestEnv, type TestEnv } from './support/env.ts';

let t: TestEnv;
let shards: ShardRouter;
beforeAll(async () => {
  t = await createTestEnv({ worker: false, env: { PG_POOL_MAX: '2', PG_CONNECTION_TIMEOUT_MS: '1500' } });
  shards = ShardRouter.open(t.config, 'consumer-pool-test');
});
afterAll(async () => {
  await shards?.close();
  await t?.close();
});

it('the webhooks consumer applies more events at once than its pool has connections', async () => {
  const key = await t.api.adminKey();
  const wallets = await Promise.all(Array.from({ length: 4 }, () => t.api.wallet(key)));
  const events: ConsumedEvent[] = wallets.map((id) => ({
    id: randomUUID(),
    type: 'wallet.created',
    source: 'test',
    time: new Date().toISOString(),
    subject: id,
    key: id,
    data: { id, currency: 'USD' },
  }));
  const spec = webhooksConsumer(shards);
  const results = await Promise.allSettled(events.map((e) => applyOnce(shards.control, spec, e)));
  expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
  const { rows } = await t.pool.query(`SELECT COUNT(*)::int AS n FROM consumer_processed_events WHERE consumer = 'webhooks'`);
  expect(rows[0].n).toBe(4);
});
