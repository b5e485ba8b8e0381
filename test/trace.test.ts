/**
 * One transfer can be followed: the request's X-Request-Id and W3C trace id travel in the job
 * data, the outbox row and the Kafka message's `traceparent` header.
 */
import { Queue } from 'bullmq';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { childTraceparent, parseTraceparent, traceIdOf } from '../src/infra/trace.ts';
import { createTestEnv, uniqueName, type TestEnv } from './support/env.ts';

let t: TestEnv;
beforeAll(async () => {
  t = await createTestEnv({ relay: true });
});
afterAll(() => t?.close());

it('traceparent: valid headers continue the trace with a new span; junk starts a new trace', () => {
  const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const child = childTraceparent(parent);
  expect(traceIdOf(child)).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  expect(child.slice(36, 52)).not.toBe('00f067aa0ba902b7');
  expect(parseTraceparent(child)).toBe(child);
  for (const junk of [undefined, '', 'garbage', '00-00000000000000000000000000000000-00f067aa0ba902b7-01', `${parent}x`]) {
    const fresh = childTraceparent(junk);
    expect(parseTraceparent(fresh)).toBe(fresh);
    expect(traceIdOf(fresh)).not.toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  }
});

it('request id and trace id go from the request to the job, the outbox row and the Kafka header', async () => {
  const key = await t.api.adminKey();
  const [a, b] = await Promise.all([t.api.wallet(key), t.api.wallet(key)]);
  await t.api.waitTerminal(key, (await t.api.fund(key, a, '500')).body.id);
  const traceId = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
  const requestId = uniqueName('req');
  const res = await t.api.request('POST', '/v1/transfers', {
    key,
    idempotencyKey: uniqueName('tr'),
    body: { fromWalletId: a, toWalletId: b, amount: '200' },
    headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'x-request-id': requestId },
  });
  expect(res.status).toBe(202);
  const opId = res.body.id as string;
  await t.api.waitTerminal(key, opId);

  const queue = new Queue('settlement', { connection: t.redis, prefix: t.config.REDIS_PREFIX });
  const job = await queue.getJob(opId);
  await queue.close();
  expect(job?.data.requestId).toBe(requestId);
  expect(traceIdOf(job?.data.traceparent)).toBe(traceId);

  const { rows } = await t.pool.query('SELECT event_id, request_id, traceparent FROM outbox WHERE operation_id = $1', [opId]);
  expect(rows).toHaveLength(1);
  expect(rows[0].request_id).toBe(requestId);
  expect(traceIdOf(rows[0].traceparent)).toBe(traceId);

  const kafka = new Kafka({ clientId: 'trace-test', brokers: [...t.config.KAFKA_BROKERS], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: uniqueName('trace') });
  try {
    await consumer.connect();
    await consumer.subscribe({ topic: t.config.KAFKA_TOPIC, fromBeginning: true });
    const header = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('event not received')), 45_000);
      void consumer.run({
        eachMessage: async ({ message }) => {
          if (message.headers?.ce_id?.toString() === rows[0].event_id) {
            clearTimeout(timer);
            resolve(message.headers?.traceparent?.toString() ?? '');
          }
        },
      });
    });
    expect(header).toBe(rows[0].traceparent);
    expect(traceIdOf(header)).toBe(traceId);
  } finally {
    await consumer.disconnect().catch(() => {});
  }
}, 90_000);
