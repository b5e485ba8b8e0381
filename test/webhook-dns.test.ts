/**
 * In production, webhook hosts are resolved through DNS by c-ares (src/events/webhooks/url-policy.ts):
 * each answer is checked, and a DNS server that does not answer holds none of libuv's threads.
 */
import { pbkdf2 } from 'node:crypto';
import type { LookupAddress } from 'node:dns';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dnsHostResolver, publicOnlyLookup, webhookUrlProblem } from '../src/events/webhooks/url-policy.ts';
import { createTestEnv } from './support/env.ts';
import { startFakeDns } from './support/fake-dns.ts';

describe('webhook host resolution in production', () => {
  let dns: Awaited<ReturnType<typeof startFakeDns>>;
  beforeAll(async () => {
    dns = await startFakeDns({});
  });
  afterAll(() => dns?.close());

  const problem = (url: string) => webhookUrlProblem(url, false, { dnsServers: [dns.server] });
  const lookup = (host: string) =>
    new Promise<LookupAddress[]>((resolve, reject) =>
      publicOnlyLookup(false, [dns.server])(host, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses as unknown as LookupAddress[]))),
    );

  it('registration: a name whose every answer is public passes; a private answer or no name is refused', async () => {
    dns.set({ a: '93.184.216.34' });
    expect(await problem('https://hooks.example.test/x')).toBeUndefined();
    dns.set({ a: '10.0.0.5' });
    expect(await problem('https://hooks.example.test/x')).toBe('the host resolves to a non-public address (10.0.0.5)');
    dns.set({ nxdomain: true });
    expect(await problem('https://hooks.example.test/x')).toBe('the host hooks.example.test does not resolve');
    dns.set({});
    expect(await problem('https://hooks.example.test/x')).toBe('the host hooks.example.test does not resolve');
  });

  it("a delivery's connection gets the public answers, and an error for a private one", async () => {
    dns.set({ a: '93.184.216.34' });
    expect(await lookup('hooks.example.test')).toEqual([{ address: '93.184.216.34', family: 4 }]);
    dns.set({ a: '169.254.169.254' });
    await expect(lookup('hooks.example.test')).rejects.toMatchObject({ code: 'ENOTPUBLIC' });
    dns.set({ nxdomain: true });
    await expect(lookup('hooks.example.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('a DNS server that never answers holds none of the threads file and crypto work needs, and the lookup gives up', async () => {
    dns.set({ silent: true });
    const resolve = dnsHostResolver({ servers: [dns.server], timeoutMs: 1_500, tries: 1 });
    let settled = 0;
    const lookups = Array.from({ length: 8 }, (_, i) => resolve(`slow-${i}.example.test`).finally(() => settled++));
    // libuv's pool has 4 threads; 8 getaddrinfo calls stuck on this server would hold them all.
    await Promise.all(Array.from({ length: 4 }, () => promisify(pbkdf2)('secret', 'salt', 1, 32, 'sha256')));
    expect(settled).toBe(0);
    for (const l of lookups) await expect(l).rejects.toMatchObject({ code: 'ETIMEOUT' });
  }, 30_000);

  it('registration answers 503 while DNS does not answer, 422 for a private answer, 201 for a public one', async () => {
    const t = await createTestEnv({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE_URLS: 'false', WEBHOOK_DNS_SERVERS: dns.server } });
    try {
      const key = await t.api.adminKey();
      const register = () => t.api.request('POST', '/v1/webhook-endpoints', { key, body: { url: 'https://hooks.example.test/x', events: ['transfer.completed'] } });
      dns.set({ silent: true });
      const unanswered = await register();
      expect(unanswered.status).toBe(503);
      expect(unanswered.headers.get('retry-after')).toBe('5');
      expect(unanswered.body).toMatchObject({ code: 'service_unavailable', detail: "the URL's host could not be resolved (ETIMEOUT); retry later" });
      dns.set({ a: '10.0.0.5' });
      expect(await register()).toMatchObject({ status: 422, body: { code: 'webhook_url_not_allowed', detail: 'the host resolves to a non-public address (10.0.0.5)' } });
      dns.set({ a: '93.184.216.34' });
      expect((await register()).status).toBe(201);
    } finally {
      await t.close();
    }
  }, 60_000);
});
