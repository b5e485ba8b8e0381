/**
 * The four consumers against the real broker: webhooks verified with the reference
 * `standardwebhooks` package, fraud rules and the freeze policy, analytics and audit counts
 * equal to the committed events (exactly once), and audit:verify catching an edited row.
 */
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { createLogger } from '../src/infra/logger.ts';
import { CONSUMER_NAMES, startConsumerProcess } from '../src/events/consumers/start-consumer.ts';
import { ADMIN_TOKEN, createTestEnv, type TestEnv } from './support/env.ts';

interface Received {
  headers: Record<string, string>;
  body: string;
}

let t: TestEnv;
const consumers: { close: () => Promise<void> }[] = [];
let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];
const slowHits: number[] = [];
/** Status to answer per path, for the first N requests. */
const script = new Map<string, number[]>();

beforeAll(async () => {
  t = await createTestEnv({
    relay: true,
    env: {
      FRAUD_FREEZE_ON_SUSPICION: 'true',
      FRAUD_AMOUNT_THRESHOLD_MINOR: '500000',
      FRAUD_VELOCITY_MAX: '5',
      FRAUD_VELOCITY_WINDOW_SECONDS: '60',
      FRAUD_DRAIN_WINDOW_SECONDS: '300',
      FRAUD_DRAIN_PERCENT: '90',
      WEBHOOK_RETRY_SCHEDULE_MS: '200,200,200,200',
      WEBHOOK_TIMEOUT_MS: '2000',
    },
  });
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/hooks/slow') return void slowHits.push(Date.now()); // never answers
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      received.push({ headers: { ...headers, path: req.url ?? '' }, body: Buffer.concat(chunks).toString('utf8') });
      const plan = script.get(req.url ?? '') ?? [];
      const status = plan.length > 0 ? plan.shift()! : 200;
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  const logger = createLogger(t.config, 'consumers-test');
  for (const name of CONSUMER_NAMES) consumers.push(await startConsumerProcess(name, t.config, logger));
}, 60_000);

afterAll(async () => {
  for (const c of consumers) await c.close().catch(() => {});
  receiver?.closeAllConnections();
  receiver?.close();
  await t?.close();
});

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const count = async (sql: string, params: unknown[] = []) => Number((await t.pool.query(sql, params)).rows[0].n);

describe('consumers', () => {
  let key: string;
  let endpoint: { id: string; secret: string };
  let goneEndpoint: { id: string };
  let slowEndpoint: { id: string };
  const ordinary: string[] = [];
  let drainer: string;
  let sink: string;

  it('registers webhook endpoints (secret whsec_…) and refuses bad input', async () => {
    key = await t.api.adminKey('webhook-client');
    const bad = await t.api.request('POST', '/v1/webhook-endpoints', { key, body: { url: 'ftp://x', events: ['nope'] } });
    expect(bad.status).toBe(400);
    const res = await t.api.request('POST', '/v1/webhook-endpoints', {
      key,
      body: { url: `${receiverUrl}/hooks/main`, events: ['wallet.created', 'wallet.funded', 'transfer.completed', 'transfer.failed', 'risk.suspicious_activity'] },
    });
    expect(res.status).toBe(201);
    expect(res.body.secret).toMatch(/^whsec_/);
    endpoint = res.body;
    const gone = await t.api.request('POST', '/v1/webhook-endpoints', { key, body: { url: `${receiverUrl}/hooks/gone`, events: ['wallet.created'] } });
    expect(gone.status).toBe(201);
    goneEndpoint = gone.body;
    script.set('/hooks/gone', Array.from({ length: 1000 }, () => 410)); // always Gone
    // A dead endpoint (accepts the connection, never answers) of the same client.
    const slow = await t.api.request('POST', '/v1/webhook-endpoints', { key, body: { url: `${receiverUrl}/hooks/slow`, events: ['transfer.completed'] } });
    expect(slow.status).toBe(201);
    slowEndpoint = slow.body;
  });

  it('runs ordinary traffic plus crafted fraud sequences; freezes, fails wallet_frozen, unfreezes', async () => {
    // Ordinary: four wallets funded 10000, a few small transfers each (no rule should fire).
    for (let i = 0; i < 4; i++) ordinary.push(await t.api.wallet(key));
    const ops = await Promise.all(ordinary.map((w) => t.api.fund(key, w, '10000')));
    await Promise.all(ops.map((r) => t.api.waitTerminal(key, r.body.id)));
    const small = await Promise.all(
      Array.from({ length: 12 }, (_, i) => t.api.transfer(key, ordinary[i % 4]!, ordinary[(i + 1) % 4]!, String(100 + i * 10))),
    );
    await Promise.all(small.map((r) => t.api.waitTerminal(key, r.body.id)));
    // A failed transfer too (insufficient funds), so transfer.failed flows everywhere.
    const over = await t.api.transfer(key, ordinary[0]!, ordinary[1]!, '999999');
    expect((await t.api.waitTerminal(key, over.body.id)).failure.code).toBe('insufficient_funds');

    // Crafted: fund then drain almost all of it at once.
    drainer = await t.api.wallet(key);
    sink = await t.api.wallet(key);
    await t.api.waitTerminal(key, (await t.api.fund(key, drainer, '5000')).body.id);
    const drain = await t.api.transfer(key, drainer, sink, '4800');
    expect((await t.api.waitTerminal(key, drain.body.id)).status).toBe('succeeded');
    // Crafted: one large fund; velocity: six transfers out of one wallet in a minute.
    const whale = await t.api.wallet(key);
    await t.api.waitTerminal(key, (await t.api.fund(key, whale, '600000')).body.id);
    const fast = await t.api.wallet(key);
    await t.api.waitTerminal(key, (await t.api.fund(key, fast, '100000')).body.id);
    for (let i = 0; i < 6; i++) await t.api.waitTerminal(key, (await t.api.transfer(key, fast, sink, '10')).body.id);

    await expect
      .poll(async () => (await t.pool.query('SELECT wallet_id, rule FROM risk_alerts ORDER BY rule')).rows.map((r) => `${r.rule}:${r.wallet_id}`).sort(), {
        timeout: 30_000,
        interval: 250,
      })
      .toEqual([`fund_then_drain:${drainer}`, `large_amount:${whale}`, `velocity:${fast}`].sort());
    // Nothing on ordinary traffic.
    expect(await count('SELECT COUNT(*) AS n FROM risk_alerts WHERE wallet_id = ANY($1)', [ordinary])).toBe(0);
    // Each alert became a risk.suspicious_activity event.
    expect(await count(`SELECT COUNT(*) AS n FROM outbox WHERE type = 'risk.suspicious_activity'`)).toBe(3);

    // The policy froze the drainer; its transfers now fail wallet_frozen.
    expect((await t.api.request('GET', `/v1/wallets/${drainer}`, { key })).body.status).toBe('frozen');
    const blocked = await t.api.transfer(key, drainer, sink, '100');
    const blockedOp = await t.api.waitTerminal(key, blocked.body.id);
    expect(blockedOp.status).toBe('failed');
    expect(blockedOp.failure.code).toBe('wallet_frozen');
    const toFrozen = await t.api.transfer(key, ordinary[0]!, drainer, '1');
    expect((await t.api.waitTerminal(key, toFrozen.body.id)).failure.code).toBe('wallet_frozen');

    // An operator unfreezes it (admin auth required).
    expect((await t.api.request('POST', `/admin/wallets/${drainer}/unfreeze`, { body: {} })).status).toBe(401);
    const unfrozen = await t.api.request('POST', `/admin/wallets/${drainer}/unfreeze`, { body: {}, headers: admin });
    expect(unfrozen.status).toBe(200);
    expect(unfrozen.body.status).toBe('active');
    const after = await t.api.transfer(key, drainer, sink, '100');
    expect((await t.api.waitTerminal(key, after.body.id)).status).toBe('succeeded');
  }, 90_000);

  it('applies every event exactly once in every consumer (counts equal the committed events)', async () => {
    await expect.poll(() => count('SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL'), { timeout: 20_000 }).toBe(0);
    const events = await count('SELECT COUNT(*) AS n FROM outbox');
    for (const name of CONSUMER_NAMES) {
      await expect
        .poll(() => count('SELECT COUNT(*) AS n FROM consumer_processed_events WHERE consumer = $1', [name]), { timeout: 30_000, interval: 250 })
        .toBe(events);
    }
    const audit = await t.pool.query('SELECT event_id FROM audit_log');
    expect(audit.rowCount).toBe(events);
    expect(new Set(audit.rows.map((r) => r.event_id)).size).toBe(events);

    const ops = await t.pool.query(`SELECT type, status, currency, COUNT(*)::int AS n, SUM(amount)::text AS volume FROM operations GROUP BY 1, 2, 3`);
    const res = await t.api.request('GET', '/admin/analytics?granularity=day&currency=USD', { headers: admin });
    expect(res.status).toBe(200);
    const byType = new Map<string, { count: number; volume: bigint }>();
    for (const b of res.body.data) {
      const cur = byType.get(b.eventType) ?? { count: 0, volume: 0n };
      byType.set(b.eventType, { count: cur.count + b.count, volume: cur.volume + BigInt(b.volume) });
    }
    for (const row of ops.rows) {
      const type = row.type === 'fund' ? (row.status === 'succeeded' ? 'wallet.funded' : 'wallet.fund_failed') : row.status === 'succeeded' ? 'transfer.completed' : 'transfer.failed';
      expect(byType.get(type), type).toEqual({ count: row.n, volume: BigInt(row.volume) });
    }
    const hourly = await t.api.request('GET', '/admin/analytics?granularity=hour', { headers: admin });
    const hourlyCount = hourly.body.data.reduce((s: number, b: { count: number }) => s + b.count, 0);
    expect(hourlyCount).toBe(ops.rows.reduce((s, r) => s + r.n, 0));
    expect((await t.api.request('GET', '/admin/analytics?granularity=week', { headers: admin })).status).toBe(400);
  }, 90_000);

  it('delivers signed webhooks that standardwebhooks verifies, retries after 500, disables on 410', async () => {
    const wh = new Webhook(endpoint.secret);
    // The next two requests to the main endpoint get 500 (whichever deliveries they are).
    script.set('/hooks/main', [500, 500]);
    const w1 = await t.api.wallet(key);
    const w2 = await t.api.wallet(key);
    await t.api.waitTerminal(key, (await t.api.fund(key, w1, '700')).body.id);
    const tr = await t.api.transfer(key, w1, w2, '50');
    await t.api.waitTerminal(key, tr.body.id);

    // Every event about this client's wallets that the endpoint subscribed to arrives, verified.
    const expected = await t.pool.query(
      `SELECT event_id, type FROM outbox WHERE type <> 'wallet.fund_failed'`,
    );
    await expect
      .poll(
        async () => {
          const ids = new Set(received.filter((r) => r.headers.path === '/hooks/main' && r.headers['webhook-id']).map((r) => r.headers['webhook-id']));
          return expected.rows.filter((e) => !ids.has(e.event_id)).length;
        },
        { timeout: 40_000, interval: 300 },
      )
      .toBe(0);
    const mains = received.filter((r) => r.headers.path === '/hooks/main');
    for (const r of mains) {
      const verified = wh.verify(r.body, r.headers) as { type: string; data: unknown };
      expect(verified.type).toBe(JSON.parse(r.body).type);
      expect(r.headers['webhook-signature']).toMatch(/^v1,/);
    }
    // A tampered body (or another secret) does not verify.
    const sample = mains.find((r) => JSON.parse(r.body).type === 'transfer.completed')!;
    const tampered = sample.body.replace(/"amount":"(\d+)"/, '"amount":"9$1"');
    expect(tampered).not.toBe(sample.body);
    expect(() => wh.verify(tampered, sample.headers)).toThrow();
    expect(() => new Webhook(`whsec_${Buffer.from('another secret, 32 bytes long!!').toString('base64')}`).verify(sample.body, sample.headers)).toThrow();

    // Some delivery saw two 500s, then a success with the same webhook-id and body.
    const retriedDelivery = async () => {
      const deliveries = await t.api.request('GET', `/v1/webhook-endpoints/${endpoint.id}/deliveries?limit=200`, { key });
      expect(deliveries.status).toBe(200);
      return deliveries.body.data.find((d: any) => d.status === 'succeeded' && d.log.some((a: any) => a.statusCode === 500));
    };
    await expect.poll(retriedDelivery, { timeout: 20_000, interval: 300 }).toBeDefined();
    const retried = await retriedDelivery();
    const codes = retried.log.map((a: any) => a.statusCode);
    expect(codes.at(-1)).toBe(200);
    expect(codes.slice(0, -1).every((c: number) => c === 500)).toBe(true);
    const copies = received.filter((r) => r.headers['webhook-id'] === retried.eventId);
    expect(copies).toHaveLength(codes.length);
    expect(new Set(copies.map((c) => c.body)).size).toBe(1);
    for (const c of copies) expect(() => wh.verify(c.body, c.headers)).not.toThrow();

    // Manual redelivery sends it once more.
    const again = await t.api.request('POST', `/v1/webhook-endpoints/${endpoint.id}/deliveries/${retried.id}/retry`, { key, body: {} });
    expect(again.status).toBe(202);
    await expect.poll(() => received.filter((r) => r.headers['webhook-id'] === retried.eventId).length, { timeout: 15_000 }).toBe(codes.length + 1);
    const missing = await t.api.request('POST', `/v1/webhook-endpoints/${endpoint.id}/deliveries/${crypto.randomUUID()}/retry`, { key, body: {} });
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('webhook_delivery_not_found');

    // The 410 endpoint is disabled after its first answer, and gets nothing more.
    const goneDeliveries = () => t.api.request('GET', `/v1/webhook-endpoints/${goneEndpoint.id}/deliveries?limit=200`, { key });
    await expect.poll(async () => (await goneDeliveries()).body.data.filter((d: any) => d.status === 'pending').length, { timeout: 20_000 }).toBe(0);
    const gone = await goneDeliveries();
    expect(gone.body.endpoint.status).toBe('disabled');
    // 410 is never retried (deliveries already in flight when it was disabled may each have
    // met one 410), and nothing new goes to a disabled endpoint.
    expect(gone.body.data.filter((d: any) => d.attempts > 1 || d.status !== 'failed')).toEqual([]);
    const goneHits = received.filter((r) => r.headers.path === '/hooks/gone').length;
    expect(goneHits).toBe(gone.body.data.filter((d: any) => d.attempts === 1).length);
    const late = await t.api.wallet(key);
    await expect
      .poll(() => received.some((r) => r.headers.path === '/hooks/main' && JSON.parse(r.body).data.id === late), { timeout: 20_000 })
      .toBe(true);
    expect(received.filter((r) => r.headers.path === '/hooks/gone').length).toBe(goneHits);
    // The dead endpoint held its deliveries only until the per-request timeout, and the main
    // endpoint received everything meanwhile (asserted above).
    expect(slowHits.length).toBeGreaterThan(0);
    const slow = await t.api.request('GET', `/v1/webhook-endpoints/${slowEndpoint.id}/deliveries?limit=200`, { key });
    expect(slow.body.data.length).toBeGreaterThan(0);
    expect(slow.body.data.some((d: any) => d.log.some((a: any) => /timed out/.test(a.error ?? '')))).toBe(true);
    expect(slow.body.data.every((d: any) => d.status !== 'succeeded')).toBe(true);
    // Another client cannot see this endpoint.
    const other = await t.api.adminKey('other');
    expect((await t.api.request('GET', `/v1/webhook-endpoints/${endpoint.id}/deliveries`, { key: other })).status).toBe(404);
  }, 90_000);

  it('audit:verify passes on the clean log and names the record edited in SQL', async () => {
    const run = () =>
      spawnSync(process.execPath, ['--import', 'tsx', 'src/events/audit-verify-main.ts'], {
        env: { PATH: process.env.PATH ?? '', ...t.env },
        encoding: 'utf8',
      });
    const clean = run();
    expect(clean.stdout).toMatch(/audit log OK/);
    expect(clean.status).toBe(0);
    // The trigger refuses edits...
    await expect(t.pool.query(`UPDATE audit_log SET event_type = 'x' WHERE seq = 3`)).rejects.toThrow(/append-only/);
    await expect(t.pool.query(`DELETE FROM audit_log WHERE seq = 3`)).rejects.toThrow(/append-only/);
    // ...so an attacker with superuser disables it first.
    await t.pool.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete');
    const { rows } = await t.pool.query(`UPDATE audit_log SET payload = jsonb_set(payload, '{status}', '"tampered"') WHERE seq = 3 RETURNING event_id`);
    const edited = run();
    expect(edited.status).toBe(1);
    expect(edited.stdout).toContain(`seq=3 event_id=${rows[0].event_id}`);
    expect(edited.stdout).toMatch(/edited/);
  }, 30_000);
});
