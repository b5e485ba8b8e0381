/**
 * kafkajs 2.2.4 arms a 1 ms timer after every broker response and re-arms it forever while the
 * connection is idle (src/events/kafkajs-idle-timer.ts). With our fix a connected, idle producer
 * arms no short timers; a queue with requests waiting still schedules its check.
 */
import { createRequire } from 'node:module';
import { afterAll, expect, it, vi } from 'vitest';
import { createKafka, createProducer } from '../src/events/kafka.ts';
import { createLogger } from '../src/infra/logger.ts';
import { parseConfig } from '../src/config.ts';

const config = parseConfig({ ...process.env, KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:19092', LOG_LEVEL: 'error' });
const producer = createProducer(createKafka(config, createLogger(config, 'test')));
afterAll(() => producer.disconnect());

/** setTimeout calls with a delay under 5 ms made during `ms` of idle time. */
async function shortTimersWhileIdle(ms: number): Promise<number> {
  const spy = vi.spyOn(globalThis, 'setTimeout');
  try {
    const end = Date.now() + ms;
    while (Date.now() < end) await new Promise((r) => setImmediate(r));
    return spy.mock.calls.filter(([, delay]) => typeof delay === 'number' && delay < 5).length;
  } finally {
    spy.mockRestore();
  }
}

it('an idle producer after a send arms no 1 ms timers', async () => {
  await producer.connect();
  await producer.send({ topic: `idle-timer-${process.pid}`, acks: -1, messages: [{ value: 'x' }] });
  // The loop arms ~600 in 300 ms; allow a few from anything else that happens to run meanwhile.
  expect(await shortTimersWhileIdle(300)).toBeLessThan(10);
});

it('the fix leaves a queue with requests waiting, or throttled, to kafkajs', async () => {
  const require = createRequire(import.meta.url);
  const RequestQueue = require('kafkajs/src/network/requestQueue') as new (o: object) => {
    pending: unknown[];
    throttledUntil: number;
    throttleCheckTimeoutId: NodeJS.Timeout | null;
    scheduleCheckPendingRequests(): void;
    destroy(): void;
  };
  const logger = { debug() {}, info() {}, warn() {}, error() {} };
  const queue = new RequestQueue({ maxInFlightRequests: 1, requestTimeout: 1000, enforceRequestTimeout: false, clientId: 't', broker: 'b', logger });

  queue.scheduleCheckPendingRequests();
  expect(queue.throttleCheckTimeoutId).toBeNull(); // idle: nothing to check later

  queue.pending.push({});
  queue.scheduleCheckPendingRequests();
  expect(queue.throttleCheckTimeoutId).not.toBeNull(); // a waiting request: checked later
  queue.destroy();

  queue.pending.length = 0;
  queue.throttledUntil = Date.now() + 1000;
  queue.scheduleCheckPendingRequests();
  expect(queue.throttleCheckTimeoutId).not.toBeNull(); // throttled: checked when it ends
  queue.destroy();

  // Applying the fix twice wraps once.
  // Imported here, not above: the first test must see only what src/events/kafka.ts applies.
  const { stopIdleRequestQueueTimer } = await import('../src/events/kafkajs-idle-timer.ts');
  const proto = RequestQueue.prototype as unknown as Parameters<typeof stopIdleRequestQueueTimer>[0];
  const patched = proto.scheduleCheckPendingRequests;
  stopIdleRequestQueueTimer(proto);
  expect(proto.scheduleCheckPendingRequests).toBe(patched);
});
