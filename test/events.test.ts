import { afterAll, beforeAll, expect, it } from 'vitest';
import { Kafka, logLevel, type Consumer } from 'kafkajs';
import { createTestEnv, type TestEnv } from './support/env.ts';

let t: TestEnv;
let consumer: Consumer | undefined;
beforeAll(async () => {
  t = await createTestEnv({ relay: true });
});
afterAll(async () => {
  await consumer?.disconnect();
  await t?.close();
});

it('every committed operation has one outbox row and its event reaches the broker', async () => {
  const key = await t.api.adminKey();
  const wallets = await Promise.all(Array.from({ length: 4 }, () => t.api.wallet(key)));
  const funds = await Promise.all(wallets.map((w) => t.api.fund(key, w, '1000')));
  const transfers = await Promise.all(
    Array.from({ length: 40 }, (_, i) => t.api.transfer(key, wallets[i % 4]!, wallets[(i + 1) % 4]!, String(100 + i * 10))),
  );
  transfers.push(await t.api.transfer(key, wallets[0]!, wallets[1]!, '1000000')); // always overdraws
  const ops = await Promise.all([...funds, ...transfers].map((r) => t.api.waitTerminal(key, r.body.id)));
  expect(ops.some((o) => o.status === 'failed')).toBe(true); // some overdraw

  const outbox = await t.pool.query(`SELECT operation_id, type, event_id FROM outbox WHERE operation_id IS NOT NULL`);
  const perOp = new Map<string, number>();
  for (const row of outbox.rows) perOp.set(row.operation_id, (perOp.get(row.operation_id) ?? 0) + 1);
  expect(perOp.size).toBe(ops.length);
  expect([...perOp.values()].every((n) => n === 1)).toBe(true);

  await expect.poll(async () => (await t.pool.query('SELECT COUNT(*)::int AS n FROM outbox WHERE sent_at IS NULL')).rows[0].n, {
    timeout: 20_000,
  }).toBe(0);

  const kafka = new Kafka({ clientId: 'events-test', brokers: [...t.config.KAFKA_BROKERS], logLevel: logLevel.NOTHING });
  consumer = kafka.consumer({ groupId: `events-test-${t.config.KAFKA_TOPIC}` });
  await consumer.connect();
  await consumer.subscribe({ topic: t.config.KAFKA_TOPIC, fromBeginning: true });
  const seen = new Map<string, { type: string; key: string; payload: any; headers: Record<string, string> }>();
  await consumer.run({
    eachMessage: async ({ message }) => {
      const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]));
      // Delivery is at least once: deduplicate on the CloudEvents id.
      seen.set(headers.ce_id!, { type: headers.ce_type!, key: String(message.key), payload: JSON.parse(String(message.value)), headers });
    },
  });
  const expectedEvents = (await t.pool.query('SELECT COUNT(*)::int AS n FROM outbox')).rows[0].n;
  await expect.poll(() => seen.size, { timeout: 30_000, interval: 200 }).toBe(expectedEvents);

  const byOperation = new Map([...seen.values()].filter((e) => e.payload.id && e.type !== 'wallet.created').map((e) => [e.payload.id, e]));
  for (const op of ops) {
    const event = byOperation.get(op.id);
    expect(event, `event for ${op.id}`).toBeDefined();
    const expectedType =
      op.type === 'fund' ? (op.status === 'succeeded' ? 'wallet.funded' : 'wallet.fund_failed') : op.status === 'succeeded' ? 'transfer.completed' : 'transfer.failed';
    expect(event!.type).toBe(expectedType);
    expect(event!.key).toBe(op.fromWalletId ?? op.walletId);
    expect(event!.payload).toEqual(op);
    expect(event!.headers).toMatchObject({ ce_specversion: '1.0', ce_source: t.config.EVENT_SOURCE, ce_time: expect.any(String) });
  }
  const created = [...seen.values()].filter((e) => e.type === 'wallet.created');
  expect(new Set(created.map((e) => e.key))).toEqual(new Set(wallets));
  for (const id of outbox.rows.map((r) => r.event_id)) expect(seen.has(id)).toBe(true);
});
