/**
 * Fault test on a PRIVATE librdkafka mock cluster (the shared one at 19092 serves every other
 * test): under load, the relay process is SIGKILLed mid-stream and the broker is paused with
 * SIGSTOP for longer than the kafkajs request timeout, then resumed; the audit consumer process
 * is SIGKILLed and restarted too. Every event must still
 * reach every consumer, and each consumer must apply each exactly once.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { register } from 'prom-client';
import { createLogger } from '../src/infra/logger.ts';
import { nodeFlagsFor } from '../src/infra/node-flags.ts';
import { CONSUMER_NAMES, startConsumerProcess } from '../src/events/consumers/start-consumer.ts';
import { ADMIN_TOKEN, createTestEnv, type TestEnv } from './support/env.ts';
import { startMockKafka } from './support/processes.ts';

const REQUEST_TIMEOUT_MS = 3000;
const PAUSE_MS = 8000; // > REQUEST_TIMEOUT_MS

let kcat: ChildProcess;
let t: TestEnv;
const consumers: { close: () => Promise<void> }[] = [];

beforeAll(async () => {
  const kafka = await startMockKafka();
  kcat = kafka.child;
  const brokers = kafka.brokers;
  t = await createTestEnv({
    env: {
      KAFKA_BROKERS: brokers,
      KAFKA_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      RELAY_BATCH_SIZE: '20',
      // Above what the paced load below can reach per wallet in a window (6 wallets, ≤ 600
      // transfers/s): this traffic is ordinary, and an alert would add events no operation made.
      FRAUD_VELOCITY_MAX: '10000',
      CONSUMER_SESSION_TIMEOUT_MS: '6000',
      // The restarted audit consumer rejoins its group and waits, up to this, for the member it
      // replaced; at kafkajs's default (60 s, the same as the final poll below) it could miss it.
      CONSUMER_REBALANCE_TIMEOUT_MS: '10000',
    },
  });
  const logger = createLogger(t.config, 'relay-fault-test');
  // audit runs as its own OS process (SIGKILLed below); the others in this process.
  for (const name of CONSUMER_NAMES.filter((n) => n !== 'audit')) consumers.push(await startConsumerProcess(name, t.config, logger));
}, 60_000);

const consumerProcesses = new Set<ChildProcess>();
function spawnConsumer(name: string): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/events/consumers/main.ts', name], {
    env: { PATH: process.env.PATH ?? '', ...t.env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  consumerProcesses.add(child);
  child.on('exit', () => consumerProcesses.delete(child));
  return child;
}

afterAll(async () => {
  for (const child of relays) child.kill('SIGKILL');
  for (const child of consumerProcesses) child.kill('SIGKILL');
  for (const c of consumers) await c.close().catch(() => {});
  await t?.close();
  if (kcat && kcat.exitCode === null) {
    kcat.kill('SIGCONT');
    kcat.kill('SIGKILL');
  }
});

const relayLog: string[] = [];
const RELAY_ENTRY = 'src/events/relay-main.ts';
const relays = new Set<ChildProcess>();
/** The relay as its own OS process, its JSON log lines collected. */
function spawnRelay(): ChildProcess {
  const child = spawn(process.execPath, [...nodeFlagsFor(RELAY_ENTRY), '--import', 'tsx', RELAY_ENTRY], {
    env: { PATH: process.env.PATH ?? '', ...t.env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  relays.add(child);
  child.on('exit', () => relays.delete(child));
  // Whole lines: a chunk of the pipe can end in the middle of one.
  createInterface({ input: child.stdout! }).on('line', (line) => line && relayLog.push(line));
  return child;
}

const count = async (sql: string, params: unknown[] = []) => Number((await t.pool.query(sql, params)).rows[0].n);
const exited = (child: ChildProcess) => new Promise((r) => child.once('exit', r));

it('relay SIGKILL and broker SIGSTOP beyond the request timeout: every event reaches every consumer exactly once', async () => {
  const res = await t.api.request('POST', '/admin/api-keys', {
    body: { name: 'load', rateLimits: { createWallet: 1000, fund: 1000, transfer: 100_000, read: 100_000 } },
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  const key = res.body.key as string;
  const wallets = await Promise.all(Array.from({ length: 6 }, () => t.api.wallet(key)));
  const opIds: string[] = [];
  for (const w of wallets) opIds.push((await t.api.fund(key, w, '100000')).body.id);

  let relay = spawnRelay();
  let audit = spawnConsumer('audit');
  let loading = true;
  const load = Promise.all(
    Array.from({ length: 3 }, async (_, lane) => {
      for (let i = 0; loading; i++) {
        const from = wallets[(lane + i) % 6]!;
        const to = wallets[(lane + i + 1 + (i % 4)) % 6]!;
        const r = await t.api.transfer(key, from, to, String(1 + ((i * 7) % 50)));
        if (r.status === 202) opIds.push(r.body.id);
        await new Promise((resolve) => setTimeout(resolve, 5)); // paced: the same load on a fast machine as on a slow one
      }
    }),
  );

  // Relay killed while it is publishing: wait until it has sent some rows and more are waiting.
  await expect.poll(() => count('SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NOT NULL'), { timeout: 30_000 }).toBeGreaterThan(20);
  await expect.poll(() => count('SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL'), { timeout: 10_000, interval: 20 }).toBeGreaterThan(0);
  relay.kill('SIGKILL');
  await exited(relay);
  // The audit consumer is SIGKILLed too, once it has applied something, and restarted.
  await expect.poll(() => count('SELECT COUNT(*) AS n FROM audit_log'), { timeout: 30_000 }).toBeGreaterThan(0);
  audit.kill('SIGKILL');
  await exited(audit);
  audit = spawnConsumer('audit');
  const sentAtKill = await count('SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NOT NULL');
  relay = spawnRelay();
  await expect.poll(() => count('SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NOT NULL'), { timeout: 30_000 }).toBeGreaterThan(sentAtKill);

  // Broker frozen for longer than the client's request timeout, load still running.
  const pausedAt = Date.now();
  kcat.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, PAUSE_MS));
  const unsentDuringPause = await count('SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL');
  kcat.kill('SIGCONT');
  expect(unsentDuringPause).toBeGreaterThan(0); // the outbox held what the broker could not take

  await new Promise((r) => setTimeout(r, 3000));
  loading = false;
  await load;
  const ops = await t.api.waitAllTerminal(key, opIds, 60_000);
  expect(ops.length).toBeGreaterThan(50);

  // The relay (the respawned process, which lived through the pause) drains the outbox.
  await expect.poll(() => count('SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL'), { timeout: 60_000, interval: 250 }).toBe(0);
  expect(relay.exitCode).toBeNull();
  expect(audit.exitCode).toBeNull();
  // The relay did meet the broker's silence: its produce request timed out (kafkajs retries it
  // with backoff; a longer outage exhausts those and the relay loop's own backoff takes over).
  // A SIGKILLed relay can leave its last line cut short: only whole JSON lines count.
  const lines = relayLog.flatMap((l) => {
    try {
      return [JSON.parse(l) as { msg: string; time: number }];
    } catch {
      return [];
    }
  });
  const timeouts = lines.filter((l) => l.time >= pausedAt && /timed out|batch failed/.test(l.msg));
  expect(timeouts.length, relayLog.slice(-20).join('\n')).toBeGreaterThan(0);
  const events = await count('SELECT COUNT(*) AS n FROM outbox');
  for (const name of CONSUMER_NAMES) {
    await expect
      .poll(() => count('SELECT COUNT(*) AS n FROM consumer_processed_events WHERE consumer = $1', [name]), { timeout: 60_000, interval: 500 })
      .toBe(events);
  }
  // Effects, not just markers: the audit log has each event once; analytics counts equal the committed operations.
  expect(await count('SELECT COUNT(DISTINCT event_id) AS n FROM audit_log')).toBe(events);
  expect(await count('SELECT COUNT(*) AS n FROM audit_log')).toBe(events);
  const analyticsCount = await count(`SELECT COALESCE(SUM(count), 0) AS n FROM analytics_buckets WHERE granularity = 'hour'`);
  expect(analyticsCount).toBe(await count(`SELECT COUNT(*) AS n FROM operations WHERE status IN ('succeeded', 'failed')`));
  expect(analyticsCount).toBe(ops.length);
  expect(await count('SELECT COUNT(*) AS n FROM risk_alerts')).toBe(0); // ordinary traffic

  const verify = spawnSync(process.execPath, ['--import', 'tsx', 'src/events/audit-verify-main.ts'], {
    env: { PATH: process.env.PATH ?? '', ...t.env },
    encoding: 'utf8',
  });
  expect(verify.stdout).toMatch(/audit log OK/);

  // Hand over to an in-process relay (hot standby takes the advisory lock) to read its lag metric.
  relay.kill('SIGKILL');
  await exited(relay);
  t.startRelay();
  const extra = await t.api.fund(key, wallets[0]!, '5');
  await t.api.waitTerminal(key, extra.body.id);
  await expect.poll(() => count('SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL'), { timeout: 30_000 }).toBe(0);
  const lag = await register.getSingleMetric('ledgerline_outbox_publish_lag_seconds')!.get();
  const observed = (lag.values as { metricName?: string; value: number }[]).find((v) => v.metricName === 'ledgerline_outbox_publish_lag_seconds_count')?.value ?? 0;
  expect(observed).toBeGreaterThan(0);
}, 240_000);
