/**
 * A webhook delivery's job lives in Redis only. When Redis loses it (restart without
 * persistence, FLUSHALL) the delivery must not stay pending forever: the dispatcher enqueues
 * again every pending, already-enqueued delivery whose job is gone (found by the chaos harness:
 * deliveries stuck pending after a Redis restart).
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/client.ts';
import { attemptDelivery, rearmLostDeliveries } from '../src/events/webhooks/deliver.ts';
import { createWebhookQueue } from '../src/events/webhooks/webhook-queue.ts';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { startFakeDns } from './support/fake-dns.ts';

let t: TestEnv;
let database: Database;
let redis: Redis;
beforeAll(async () => {
  t = await createTestEnv({ worker: false });
  database = openDatabase(t.config.DATABASE_URL, t.config, 'webhook-rearm-test');
  redis = new Redis(t.config.REDIS_URL, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  await database?.pool.end();
  redis?.disconnect();
  await t?.close();
});

/** A webhook endpoint, by default at a closed port (connections are refused). */
async function endpoint(url = 'http://127.0.0.1:9/x'): Promise<string> {
  const id = randomUUID();
  await t.pool.query(
    `INSERT INTO webhook_endpoints (id, client_id, url, events, secret) VALUES ($1, $2, $3, '{transfer.completed}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')`,
    [id, randomUUID(), url],
  );
  return id;
}

/** A delivery of generation `generation`, enqueued, untouched for a minute. */
async function delivery(endpointId: string, status: string, generation = 1): Promise<string> {
  const { rows } = await t.pool.query(
    `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, body, status, generation, enqueued_generation, updated_at)
     VALUES ($1, $2, $3, 'transfer.completed', '{}', $4, $5, $5, now() - interval '1 minute') RETURNING id`,
    [randomUUID(), endpointId, randomUUID(), status, generation],
  );
  return rows[0].id as string;
}

it('enqueues again a pending delivery whose job Redis lost, and only that one', async () => {
  const queue = createWebhookQueue(t.config, redis);
  const endpointId = await endpoint();
  const lost = await delivery(endpointId, 'pending'); // dispatched once (enqueued_generation = generation), its job gone
  await delivery(endpointId, 'succeeded');

  const now = new Date();
  expect(await rearmLostDeliveries(database, queue, now)).toBe(1);
  const job = await queue.getJob(`${lost}-g1`);
  expect(job?.data).toEqual({ deliveryId: lost });
  expect(await rearmLostDeliveries(database, queue, now)).toBe(0); // its job is there now

  await job!.remove(); // Redis loses it again
  expect(await rearmLostDeliveries(database, queue, now)).toBe(1);
  await queue.obliterate({ force: true });
  await queue.close();
});

it("a job of an earlier generation (before a manual retry) neither sends nor ends the delivery", async () => {
  // Retried by hand once: generation 2 is the live one.
  const id = await delivery(await endpoint(), 'pending', 2);
  const job = (generation: number, attemptsMade: number) => ({ id: `${id}-g${generation}`, data: { deliveryId: id }, attemptsMade, opts: { attempts: 3 } });
  const state = async () => (await t.pool.query('SELECT status, attempts FROM webhook_deliveries WHERE id = $1', [id])).rows[0];
  expect(await attemptDelivery(t.config, database, job(1, 2))).toBe('skipped'); // the old chain's last attempt
  expect(await state()).toEqual({ status: 'pending', attempts: 0 });
  await expect(attemptDelivery(t.config, database, job(2, 0))).rejects.toThrow(); // port 9 refuses: retried later
  expect(await state()).toEqual({ status: 'pending', attempts: 1 });
});

it('an attempt in flight when a manual retry starts is logged and counted but leaves the new generation\'s last status and error alone', async () => {
  let id = '';
  // The endpoint answers 500 after the delivery was retried by hand (generation 1 → 2) meanwhile.
  const server = createServer((req, res) => {
    req.resume();
    void t.pool.query('UPDATE webhook_deliveries SET generation = generation + 1 WHERE id = $1', [id]).then(() => res.writeHead(500).end());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const endpointId = await endpoint(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`);
    id = await delivery(endpointId, 'pending');
    await expect(attemptDelivery(t.config, database, { id: `${id}-g1`, data: { deliveryId: id }, attemptsMade: 0, opts: { attempts: 3 } })).rejects.toThrow(/500/);
  } finally {
    server.close();
  }
  const { rows } = await t.pool.query('SELECT status, generation, attempts, last_status_code, last_error FROM webhook_deliveries WHERE id = $1', [id]);
  expect(rows[0]).toEqual({ status: 'pending', generation: 2, attempts: 1, last_status_code: null, last_error: null });
  const attempts = await t.pool.query('SELECT status_code FROM webhook_attempts WHERE delivery_id = $1', [id]);
  expect(attempts.rows).toEqual([{ status_code: 500 }]);
});

it('in production a delivery to a name that resolves to a private address is refused as it connects, nothing sent', async () => {
  // The pre-check no longer resolves names (webhookUrlProblem's resolve: false); the connection's lookup refuses it.
  let requests = 0;
  const server = createServer((req, res) => void (requests++, req.resume(), res.writeHead(204).end()));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const dns = await startFakeDns({ a: '127.0.0.1' }); // the endpoint's name points at this machine
  const strict = { ...t.config, WEBHOOK_ALLOW_PRIVATE_URLS: false, WEBHOOK_DNS_SERVERS: [dns.server] };
  let id = '';
  try {
    id = await delivery(await endpoint(`https://hooks.example.test:${(server.address() as AddressInfo).port}/hook`), 'pending');
    await expect(attemptDelivery(strict, database, { id: `${id}-g1`, data: { deliveryId: id }, attemptsMade: 0, opts: { attempts: 3 } })).rejects.toThrow(/non-public/);
    expect(dns.queries()).toBeGreaterThan(0);
  } finally {
    server.close();
    await dns.close();
  }
  expect(requests).toBe(0);
  const { rows } = await t.pool.query('SELECT status_code, error FROM webhook_attempts WHERE delivery_id = $1', [id]);
  expect(rows).toEqual([{ status_code: null, error: 'target not allowed: the host resolves to a non-public address (127.0.0.1)' }]);
});

it('ends as failed a pending delivery whose job failed for good without recording it', async () => {
  const queue = createWebhookQueue(t.config, redis);
  const id = await delivery(await endpoint(), 'pending');
  // Its last attempt died before it could end the delivery (here: it fails without touching it).
  const workerConnection = redis.duplicate();
  const worker = new Worker(queue.name, async () => { throw new UnrecoverableError('worker died mid-attempt'); }, { connection: workerConnection, prefix: t.config.REDIS_PREFIX });
  await queue.add('deliver', { deliveryId: id }, { jobId: `${id}-g1` });
  await expect.poll(async () => (await queue.getJob(`${id}-g1`))?.getState(), { timeout: 10_000 }).toBe('failed');
  await worker.close();
  workerConnection.disconnect();
  await rearmLostDeliveries(database, queue, new Date());
  expect(await queue.getJob(`${id}-g1`).then((j) => j?.getState())).toBe('failed'); // not enqueued again
  const { rows } = await t.pool.query('SELECT status, last_error FROM webhook_deliveries WHERE id = $1', [id]);
  expect(rows[0]).toEqual({ status: 'failed', last_error: 'gave up: worker died mid-attempt' });
  await queue.obliterate({ force: true });
  await queue.close();
});
