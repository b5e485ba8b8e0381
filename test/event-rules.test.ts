/** Pure rules behind the consumers: fraud findings, the audit hash chain, the webhook URL policy. */
import { describe, expect, it } from 'vitest';
import { auditHash, firstChainProblem, GENESIS_HASH, type AuditRecord } from '../src/domain/audit-chain.ts';
import { evaluateFraud, type FraudPolicy, type Movement } from '../src/domain/fraud-rules.ts';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { postWebhook } from '../src/events/webhooks/deliver.ts';
import { webhookUrlProblem } from '../src/events/webhooks/url-policy.ts';
import { startFakeDns } from './support/fake-dns.ts';
import { webhookBackoffMs } from '../src/events/webhooks/webhook-queue.ts';
import { parseConfig } from '../src/config.ts';

const policy: FraudPolicy = { velocityMax: 3, velocityWindowSeconds: 60, amountThresholdMinor: 100_000n, drainWindowSeconds: 300, drainPercent: 90 };
const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
const out = (amount: bigint, s: number): Movement => ({ kind: 'transfer_out', amountMinor: amount, at: at(s) });
const fund = (amount: bigint, s: number): Movement => ({ kind: 'fund_in', amountMinor: amount, at: at(s) });
const rules = (current: Movement, history: Movement[]) => evaluateFraud(policy, current, history).map((f) => f.rule);

describe('fraud rules', () => {
  it('large amount at the threshold, not below', () => {
    expect(rules(fund(100_000n, 0), [])).toEqual(['large_amount']);
    expect(rules(fund(99_999n, 0), [])).toEqual([]);
  });
  it('velocity: more than the max within the window only', () => {
    expect(rules(out(1n, 50), [out(1n, 10), out(1n, 20), out(1n, 30)])).toEqual(['velocity']);
    expect(rules(out(1n, 50), [out(1n, 20), out(1n, 30)])).toEqual([]);
    expect(rules(out(1n, 100), [out(1n, 10), out(1n, 20), out(1n, 90)])).toEqual([]); // two fell out of the window
  });
  it('fund then drain: a transfer of ≥ 90 % of a recent fund', () => {
    expect(rules(out(900n, 60), [fund(1000n, 0)])).toEqual(['fund_then_drain']);
    expect(rules(out(899n, 60), [fund(1000n, 0)])).toEqual([]);
    expect(rules(out(900n, 400), [fund(1000n, 0)])).toEqual([]); // outside the drain window
  });
});

describe('audit hash chain', () => {
  const chain = () => {
    let prev = GENESIS_HASH;
    return Array.from({ length: 5 }, (_, i) => {
      const record: AuditRecord = { seq: BigInt(i + 1), eventId: `e${i + 1}`, eventType: 'transfer.completed', subject: 'w', eventTime: 't', payload: { amount: String(i), b: { y: 1, x: 2 } } };
      const hash = auditHash(prev, record);
      const row = { ...record, prevHash: prev, hash };
      prev = hash;
      return row;
    });
  };
  it('an intact chain passes; key order in the payload does not matter', () => {
    const rows = chain();
    rows[2]!.payload = { b: { x: 2, y: 1 }, amount: '2' };
    expect(firstChainProblem(rows)).toBeUndefined();
  });
  it('names the edited, deleted and reordered record', () => {
    const edited = chain();
    edited[2]!.payload = { amount: '999', b: { y: 1, x: 2 } };
    expect(firstChainProblem(edited)).toMatchObject({ seq: 3n, reason: expect.stringMatching(/edited/) });
    const deleted = chain().filter((r) => r.seq !== 3n);
    expect(firstChainProblem(deleted)).toMatchObject({ seq: 4n, reason: expect.stringMatching(/missing/) });
    // Swap two records' contents but keep the seq column in order (an UPDATE-based reorder).
    const swapped = chain();
    const [a, b] = [swapped[1]!, swapped[2]!];
    swapped[1] = { ...b, seq: 2n };
    swapped[2] = { ...a, seq: 3n };
    expect(firstChainProblem(swapped)).toMatchObject({ seq: 2n });
  });
});

describe('webhook URL policy', () => {
  it('in production: https to public addresses only', async () => {
    expect(await webhookUrlProblem('http://93.184.216.34/hook', false)).toMatch(/https/);
    for (const url of ['https://127.0.0.1/x', 'https://10.1.2.3/', 'https://169.254.169.254/latest', 'https://[::1]/', 'https://192.168.0.1/', 'https://[::ffff:127.0.0.1]/',
      // IPv4 carried in IPv6: compatible, translated, local NAT64, 6to4 (of 10.0.0.1), Teredo.
      'https://[::10.0.0.1]/', 'https://[::ffff:0:a00:1]/', 'https://[64:ff9b:1::a00:1]/', 'https://[2002:a00:1::1]/', 'https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/']) {
      expect(await webhookUrlProblem(url, false), url).toMatch(/non-public|resolve/);
    }
    expect(await webhookUrlProblem('https://93.184.216.34/hook', false)).toBeUndefined();
    expect(await webhookUrlProblem('https://[2606:2800:220:1:248:1893:25c8:1946]/hook', false)).toBeUndefined();
    expect(await webhookUrlProblem('https://user:pw@93.184.216.34/', false)).toMatch(/credentials/);
    // Before a delivery: names are left to the connection's lookup; IP literals and the rest are still checked.
    expect(await webhookUrlProblem('https://localhost/', false, { resolve: false })).toBeUndefined();
    expect(await webhookUrlProblem('https://127.0.0.1/', false, { resolve: false })).toMatch(/non-public/);
    expect(await webhookUrlProblem('http://93.184.216.34/hook', false, { resolve: false })).toMatch(/https/);
  });
  it('checks the address again as the delivery connects (a name that rebinds to a private address after the check)', async () => {
    const server = createServer((_req, res) => res.writeHead(204).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const dns = await startFakeDns({ a: '127.0.0.1' }); // the name points at this machine
    const port = (server.address() as AddressInfo).port;
    try {
      const send = (host: string, allowPrivate: boolean) =>
        postWebhook(`http://${host}:${port}/hook`, {}, '{}', { signal: AbortSignal.timeout(2000), allowPrivate, dnsServers: [dns.server] });
      await expect(send('hooks.example.test', false)).rejects.toThrow(/^the host resolves to a non-public address \(127\.0\.0\.1\)$/);
      expect(await send('localhost', true)).toBe(204); // in development the system's lookup (/etc/hosts) resolves it
    } finally {
      server.close();
      await dns.close();
    }
  });
  it('in development: http and loopback are allowed; production config defaults to strict', async () => {
    expect(await webhookUrlProblem('http://127.0.0.1:9/x', true)).toBeUndefined();
    expect(parseConfig({ NODE_ENV: 'production', ADMIN_TOKEN: 'x'.repeat(20) }).WEBHOOK_ALLOW_PRIVATE_URLS).toBe(false);
    expect(parseConfig({ NODE_ENV: 'development' }).WEBHOOK_ALLOW_PRIVATE_URLS).toBe(true);
  });
  it('WEBHOOK_DNS_SERVERS takes IP addresses with optional ports, and refuses a host name at start', () => {
    expect(parseConfig({ WEBHOOK_DNS_SERVERS: '10.0.0.2, [fd00::53]:5353' }).WEBHOOK_DNS_SERVERS).toEqual(['10.0.0.2', '[fd00::53]:5353']);
    expect(parseConfig({}).WEBHOOK_DNS_SERVERS).toEqual([]);
    expect(() => parseConfig({ WEBHOOK_DNS_SERVERS: 'dns.example.com' })).toThrow(/WEBHOOK_DNS_SERVERS/);
  });
  it('the default retry schedule spans at least 24 hours', () => {
    const schedule = parseConfig({}).WEBHOOK_RETRY_SCHEDULE_MS;
    const total = schedule.reduce((s, ms) => s + ms, 0);
    expect(total).toBeGreaterThanOrEqual(24 * 3600 * 1000);
    expect(webhookBackoffMs(schedule, 1)).toBe(schedule[0]);
    expect(webhookBackoffMs(schedule, 99)).toBe(schedule.at(-1));
  });
});

describe('configuration bounds the contract sets', () => {
  it('the wallet read cache lives at most 30 s (API.md: reads at most 30 s old)', () => {
    expect(parseConfig({ WALLET_CACHE_TTL_SECONDS: '30' }).WALLET_CACHE_TTL_SECONDS).toBe(30);
    expect(() => parseConfig({ WALLET_CACHE_TTL_SECONDS: '31' })).toThrow();
  });
});
