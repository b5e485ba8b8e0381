/**
 * A consumer group whose position left the broker's log is reset by kafkajs, which skips the
 * events in between for that group. It only logs it; we count it
 * (`kafka_consumer_offset_resets_total`, watched by the ConsumerSkippedEvents alert).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { register } from 'prom-client';
import { expect, it } from 'vitest';
import { createKafka } from '../src/events/kafka.ts';
import { createLogger } from '../src/infra/logger.ts';
import { instrumentConsumer, OFFSET_RESET_MESSAGE } from '../src/infra/metrics.ts';
import { parseConfig } from '../src/config.ts';

const config = parseConfig({ ...process.env, KAFKA_BROKERS: '127.0.0.1:1', LOG_LEVEL: 'fatal' });

async function resets(group: string): Promise<number | undefined> {
  const values = (await register.getSingleMetric('kafka_consumer_offset_resets_total')?.get())?.values ?? [];
  return values.find((v) => v.labels.group === group)?.value;
}

it('the reset message is the one our kafkajs logs when it resets a group', () => {
  const kafkajs = dirname(createRequire(import.meta.url).resolve('kafkajs/package.json'));
  const source = readFileSync(join(kafkajs, 'src/consumer/consumerGroup.js'), 'utf8');
  expect(source).toContain(`'${OFFSET_RESET_MESSAGE}'`);
});

it('each reset kafkajs logs counts for its group, from 0', async () => {
  const kafka = createKafka(config, createLogger(config, 'test'));
  const group = `g-${process.pid}`;
  instrumentConsumer(kafka.consumer({ groupId: group }), group); // not connected: only its metrics
  expect(await resets(group)).toBe(0);

  const log = kafka.logger();
  log.error(OFFSET_RESET_MESSAGE, { topic: 'ledger.events', partition: 3, groupId: group, memberId: 'm' });
  log.error(OFFSET_RESET_MESSAGE, { topic: 'ledger.events', partition: 4, groupId: group, memberId: 'm' });
  log.error('Some other error', { groupId: group });
  expect(await resets(group)).toBe(2);
  expect(await resets('another-group')).toBeUndefined();
});
