/**
 * The long-poll waiter listens to settlement notices only while someone waits: an API process
 * nobody long-polls is not woken by every settled batch.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { OperationWaiter } from '../src/api/operation-waiter.ts';
import { createLogger } from '../src/infra/logger.ts';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const channel = `lltest:waiter:${randomUUID()}`;
const publisher = new Redis(url);
const waiter = new OperationWaiter(new Redis(url), channel, createLogger({ LOG_LEVEL: 'error' }, 'test'), 300);
afterAll(async () => {
  await waiter.close();
  await publisher.quit();
});

const subscribers = async () => Number(((await publisher.pubsub('NUMSUB', channel)) as [string, number])[1]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('subscribes on the first wait, wakes on a notice, and unsubscribes once idle', async () => {
  expect(await subscribers()).toBe(0);
  expect(waiter.listening).toBe(false);

  // The first wait is woken once the subscription takes effect (a notice sent before it would
  // have been missed), so its caller re-reads at once instead of after its timeout.
  const started = Date.now();
  await waiter.wait(randomUUID(), 5000);
  expect(Date.now() - started).toBeLessThan(2000);
  expect(await subscribers()).toBe(1);

  // Subscribed: a notice naming the operation (alone or in a batch) wakes its waiter.
  const id = randomUUID();
  const woken = waiter.wait(id, 5000);
  await sleep(50);
  const sent = Date.now();
  await publisher.publish(channel, `${randomUUID()},${id}`);
  await woken;
  expect(Date.now() - sent).toBeLessThan(1000);

  // No waiter for longer than the idle time: unsubscribed.
  await sleep(800);
  expect(waiter.listening).toBe(false);
  expect(await subscribers()).toBe(0);

  // A wait after that subscribes again.
  await waiter.wait(randomUUID(), 5000);
  expect(await subscribers()).toBe(1);
});

it('a first wait while the connection is still handshaking is woken by the next notice', async () => {
  // ioredis writes a SUBSCRIBE issued before its ready check at once; the check's INFO then
  // fails in subscriber mode and the connection drops, so the notice below would be missed.
  const ownChannel = `lltest:waiter:${randomUUID()}`;
  const connection = new Redis(url);
  const errors: unknown[] = [];
  connection.on('error', (err) => errors.push(err));
  const early = new OperationWaiter(connection, ownChannel, createLogger({ LOG_LEVEL: 'error' }, 'test'), 300);
  try {
    const first = await new Promise<Promise<void>>((resolve) =>
      connection.once('connect', () => resolve(early.wait(randomUUID(), 3000))),
    );
    await first;
    const id = randomUUID();
    const woken = early.wait(id, 3000);
    await sleep(100);
    const sent = Date.now();
    await publisher.publish(ownChannel, id);
    await woken;
    expect(Date.now() - sent).toBeLessThan(1000);
    expect(errors).toEqual([]);
  } finally {
    await early.close();
  }
});

it('a wait on a closed connection ends on its timer and leaves the waiter unsubscribed', async () => {
  const connection = new Redis(url);
  await connection.quit();
  const closed = new OperationWaiter(connection, `lltest:waiter:${randomUUID()}`, createLogger({ LOG_LEVEL: 'silent' }, 'test'), 300);
  const started = Date.now();
  await closed.wait(randomUUID(), 200);
  expect(Date.now() - started).toBeLessThan(1000);
  await sleep(50);
  expect(closed.listening).toBe(false);
});
