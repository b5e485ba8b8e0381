/**
 * Each process's /metrics after a short run: the api, a worker and the relay run as their own
 * OS processes (as in production); a Kafka consumer instrumented with instrumentConsumer runs
 * here, behind the same metrics server the consumer processes use. Counts must equal the
 * operations done.
 */
import { once } from 'node:events';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { instrumentConsumer } from '../src/infra/metrics.ts';
import { startMetricsServer, type MetricsServer } from '../src/infra/metrics-server.ts';
import { createLogger } from '../src/infra/logger.ts';
import { createTestEnv, makeApiClient, uniqueName, type TestEnv } from './support/env.ts';
import { freePort, metric, scrape, type Sample } from './support/prometheus-text.ts';

let t: TestEnv;
beforeAll(async () => {
  t = await createTestEnv({ worker: false });
});
afterAll(() => t?.close());

async function waitHealthy(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${url} not healthy`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

it('api, worker, relay and consumer /metrics report every metric with counts equal to the operations done', async () => {
  const [apiPort, workerPort, relayPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const apiProc = t.spawnProcess('api', { PORT: String(apiPort) });
  t.spawnProcess('worker', { METRICS_PORT: String(workerPort), WORKER_CONCURRENCY: '4' });
  t.spawnProcess('relay', { METRICS_PORT: String(relayPort) });
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const workerUrl = `http://127.0.0.1:${workerPort}`;
  const relayUrl = `http://127.0.0.1:${relayPort}`;
  await Promise.all([waitHealthy(`${apiUrl}/healthz`), waitHealthy(`${workerUrl}/healthz`), waitHealthy(`${relayUrl}/healthz`)]);
  expect(apiProc.exitCode).toBeNull();

  // The run: 3 funds of 1000, 5 transfers that succeed, 2 that fail (insufficient funds),
  // 1 request refused at the door (no Idempotency-Key).
  const api = makeApiClient(apiUrl);
  const key = await api.adminKey();
  const [a, b, empty] = await Promise.all([api.wallet(key), api.wallet(key), api.wallet(key)]);
  const funds = await Promise.all([a, a, b].map((w) => api.fund(key, w, '1000')));
  for (const f of funds) expect((await api.waitTerminal(key, f.body.id)).status).toBe('succeeded');
  const good = await Promise.all(Array.from({ length: 5 }, (_, i) => api.transfer(key, i % 2 ? a : b, i % 2 ? b : a, '100')));
  const bad = await Promise.all(Array.from({ length: 2 }, () => api.transfer(key, empty, a, '5')));
  const ops = [...good, ...bad];
  expect(ops.every((r) => r.status === 202)).toBe(true);
  const done = await Promise.all(ops.map((r) => api.waitTerminal(key, r.body.id)));
  expect(done.filter((o) => o.status === 'succeeded')).toHaveLength(5);
  expect(done.filter((o) => o.failure?.code === 'insufficient_funds')).toHaveLength(2);
  const refused = await api.request('POST', '/v1/transfers', { key, body: { fromWalletId: a, toWalletId: b, amount: '1' } });
  expect(refused.status).toBe(400);

  // --- api -----------------------------------------------------------------------------------
  const apiM = await scrape(`${apiUrl}/metrics`);
  expect(metric(apiM, 'operations_accepted_total', { type: 'fund' })).toBe(3);
  expect(metric(apiM, 'operations_accepted_total', { type: 'transfer' })).toBe(7);
  expect(metric(apiM, 'error_rate_total', { endpoint: '/v1/transfers', status_class: '4xx' })).toBe(1);
  expect(metric(apiM, 'error_rate_total', { status_class: '5xx' }) ?? 0).toBe(0);
  expect(metric(apiM, 'http_requests_total', { endpoint: '/v1/transfers', method: 'POST', status_class: '2xx' })).toBe(7);
  expect(metric(apiM, 'http_requests_total', { endpoint: '/v1/wallets/:id/fund', method: 'POST', status_class: '2xx' })).toBe(3);
  expect(metric(apiM, 'http_request_duration_seconds_count', { endpoint: '/v1/wallets', method: 'POST' })).toBe(3);
  // Labels carry route patterns, never ids.
  expect(apiM.some((s) => Object.values(s.labels).some((v) => v.includes(a)))).toBe(false);
  expect(metric(apiM, 'concurrent_connections')).toBeGreaterThanOrEqual(1); // this scrape's own
  expect(metric(apiM, 'pg_pool_connections', { pool: 'api', database: '0', state: 'total' })).toBeGreaterThanOrEqual(1);
  expect(metric(apiM, 'pg_pool_max', { pool: 'api' })).toBe(Number(t.env.PG_POOL_MAX));
  expectProcessDefaults(apiM);

  // --- worker --------------------------------------------------------------------------------
  // A job's run is recorded when the worker hears it completed, a moment after its operations
  // settled: wait until no job is left to run and every completed one is counted.
  const workerM = await until('worker to report settled counts', async () => {
    const m = await scrape(`${workerUrl}/metrics`);
    const completed = metric(m, 'queue_jobs', { queue: 'settlement', state: 'completed' });
    const idle = ['waiting', 'active', 'delayed'].every((state) => (metric(m, 'queue_jobs', { queue: 'settlement', state }) ?? 0) === 0);
    const counted = metric(m, 'job_run_seconds_count', { queue: 'settlement', outcome: 'completed' }) === completed;
    return metric(m, 'operations_settled_total') === 10 && idle && counted ? m : undefined;
  });
  expect(metric(workerM, 'transactions_total', { type: 'credit' })).toBe(3 + 5);
  expect(metric(workerM, 'transactions_total', { type: 'debit' })).toBe(5);
  expect(metric(workerM, 'operations_settled_total', { type: 'transfer', status: 'failed' })).toBe(2);
  expect(metric(workerM, 'transfer_errors_total', { type: 'transfer', code: 'insufficient_funds' })).toBe(2);
  expect(metric(workerM, 'transfer_errors_total')).toBe(2);
  expect(metric(workerM, 'transfer_duration_seconds_count', { type: 'transfer' })).toBe(7);
  expect(metric(workerM, 'transfer_duration_seconds_count', { type: 'fund' })).toBe(3);
  const durationSum = metric(workerM, 'transfer_duration_seconds_sum')!;
  expect(durationSum).toBeGreaterThan(0);
  expect(durationSum).toBeLessThan(10 * 60); // accept → terminal, seconds, not milliseconds
  // A job per fund; transfers accepted together share settle-batch jobs: 4 to 10 jobs in all.
  const jobs = metric(workerM, 'job_run_seconds_count', { queue: 'settlement', outcome: 'completed' })!;
  expect(jobs).toBeGreaterThanOrEqual(4);
  expect(jobs).toBeLessThanOrEqual(10);
  expect(metric(workerM, 'job_wait_seconds_count', { queue: 'settlement' })).toBe(jobs);
  expect(metric(workerM, 'jobs_failed_total') ?? 0).toBe(0);
  expect(metric(workerM, 'queue_jobs', { queue: 'settlement', state: 'completed' })).toBe(jobs);
  // Every settled operation went through a group commit (a transaction of one or more).
  expect(metric(workerM, 'batch_size_sum', { stage: 'settle' })).toBe(10);
  expect(metric(workerM, 'queue_jobs', { queue: 'settlement', state: 'waiting' })).toBe(0);
  expect(metric(workerM, 'queue_jobs', { queue: 'settlement', state: 'failed' })).toBe(0);
  // Money: 3 funds of 1000 in, transfers move it around: 3000 in customer wallets.
  expect(metric(workerM, 'wallet_balance_total', { currency: 'USD' })).toBe(3000);
  expect(metric(workerM, 'pg_pool_connections', { pool: 'worker', state: 'total' })).toBeGreaterThanOrEqual(1);
  expectProcessDefaults(workerM);

  // --- relay ---------------------------------------------------------------------------------
  const outboxRows = Number((await t.pool.query('SELECT count(*) AS n FROM outbox')).rows[0].n);
  expect(outboxRows).toBeGreaterThanOrEqual(10);
  const relayM = await until('relay to publish every outbox row', async () => {
    const m = await scrape(`${relayUrl}/metrics`);
    return metric(m, 'outbox_events_published_total', { database: '0' }) === outboxRows &&
      metric(m, 'outbox_unsent_events', { database: '0' }) === 0
      ? m
      : undefined;
  });
  expect(metric(relayM, 'outbox_oldest_unsent_age_seconds', { database: '0' })).toBe(0);
  expect(metric(relayM, 'outbox_publish_failures_total') ?? 0).toBe(0);
  expect(metric(relayM, 'pg_pool_connections', { pool: 'relay', state: 'total' })).toBeGreaterThanOrEqual(1);
  expectProcessDefaults(relayM);

  // --- a consumer: lag from kafkajs batch events, on the consumer processes' metrics server ---
  const logger = createLogger(t.config, 'consumer-test');
  let server: MetricsServer | undefined;
  const kafka = new Kafka({ clientId: 'metrics-test', brokers: [...t.config.KAFKA_BROKERS], logLevel: logLevel.NOTHING });
  const group = uniqueName('metrics-consumer');
  const consumer = kafka.consumer({ groupId: group });
  try {
    instrumentConsumer(consumer, group);
    server = await startMetricsServer(0, logger);
    await consumer.connect();
    await consumer.subscribe({ topic: t.config.KAFKA_TOPIC, fromBeginning: true });
    let seen = 0;
    await consumer.run({ eachMessage: async () => void seen++ });
    await until('the consumer to read every event', async () => (seen >= outboxRows ? true : undefined), 45_000);
    const consumerM = await until('lag to be reported at 0', async () => {
      const m = await scrape(`http://127.0.0.1:${server!.port}/metrics`);
      return metric(m, 'kafka_consumer_messages_total', { group }) === outboxRows ? m : undefined;
    });
    const lags = consumerM.filter((s) => s.name === 'kafka_consumer_lag' && s.labels.group === group);
    expect(lags.length).toBeGreaterThan(0);
    expect(lags.every((s) => s.labels.topic === t.config.KAFKA_TOPIC && s.value === 0)).toBe(true);
    expect(metric(consumerM, 'kafka_consumer_offset_resets_total', { group })).toBe(0); // exported from the start
  } finally {
    await consumer.disconnect().catch(() => {});
    await server?.close();
  }
  apiProc.kill('SIGTERM');
  await once(apiProc, 'exit');
}, 120_000);

function expectProcessDefaults(samples: Sample[]): void {
  expect(metric(samples, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  expect(metric(samples, 'process_resident_memory_bytes')).toBeGreaterThan(0);
  expect(metric(samples, 'nodejs_eventloop_lag_p99_seconds')).toBeGreaterThanOrEqual(0);
}
