/**
 * Hostile input at every route: a fast-check fuzz over the whole documented API, then the
 * transport-level abuses (slow clients, huge headers, deep JSON, broken escapes).
 */
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_MAP, isErrorCode } from '../src/api/error-map.ts';
import { ADMIN_TOKEN, createTestEnv, type TestEnv } from './support/env.ts';

let t: TestEnv;
let doc: any;
let key: string;
let wallet: string;
let operation: string;

beforeAll(async () => {
  // Short server timeouts so the slow-client tests are quick; nothing here long-polls.
  t = await createTestEnv({ env: { HTTP_HEADERS_TIMEOUT_MS: '1000', HTTP_REQUEST_TIMEOUT_MS: '2000' } });
  doc = (await t.api.request('GET', '/openapi.json')).body;
  key = await t.api.adminKey('fuzz');
  wallet = await t.api.wallet(key);
  operation = (await t.api.waitTerminal(key, (await t.api.fund(key, wallet, '1000')).body.id)).id;
});
afterAll(() => t?.close());

/** Rows in every table a request could write. */
async function footprint(): Promise<string> {
  const { rows } = await t.pool.query(`SELECT
    (SELECT COUNT(*)::text FROM wallets) AS w, (SELECT COUNT(*)::text FROM operations) AS o,
    (SELECT COUNT(*)::text FROM ledger_entries) AS e, (SELECT COUNT(*)::text FROM outbox) AS x,
    (SELECT COUNT(*)::text FROM clients) AS c, (SELECT COUNT(*)::text FROM api_keys) AS k`);
  return JSON.stringify(rows[0]);
}

function expectValidProblem(status: number, contentType: string | null, body: unknown) {
  expect(contentType).toMatch(/^application\/problem\+json/);
  const p = body as Record<string, unknown>;
  expect(typeof p.code === 'string' && isErrorCode(p.code), JSON.stringify(p)).toBe(true);
  const entry = ERROR_MAP[p.code as keyof typeof ERROR_MAP];
  expect(p).toMatchObject({ status, title: entry.title, type: expect.stringMatching(/^https:\/\//), detail: expect.any(String) });
  expect(entry.status).toBe(status);
  if (p.errors !== undefined) {
    expect(Array.isArray(p.errors)).toBe(true);
    for (const e of p.errors as unknown[]) expect(e).toEqual({ path: expect.any(String), message: expect.any(String) });
  }
  // No internals: stack frames, SQL, driver or file names.
  expect(JSON.stringify(p)).not.toMatch(/\bat [\w.<>]+ \(|\.ts:\d|node_modules|SELECT |INSERT |UPDATE |duplicate key|ECONN|drizzle|ioredis|stack/i);
}

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 300 });
const ids = () =>
  fc.oneof(
    fc.constantFrom(wallet, wallet.toUpperCase(), operation, randomUUID(), '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
    fc.uuid(),
    // '.' and '..' segments are resolved by the URL parser before sending: another route.
    fc.string({ maxLength: 60 }).map(encodeURIComponent).filter((s) => !/^(\.|%2e){1,2}$/i.test(s)),
    fc.constantFrom('%zz', '%E0%A4%A', 'null', '-1', '9'.repeat(400), `${wallet}%00`, `${wallet} `.replace(' ', '%20')),
  );
const amounts = fc.oneof(
  fc.constantFrom('1', '1000000000000000', '1000000000000001', '0', '-1', '01', '1.0', '1e3', ' 1', '١٢', '9'.repeat(40)),
  fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }).map(String),
  fc.oneof(fc.integer(), fc.double(), fc.constant(1e15), fc.constant(null)),
);
const text = fc.oneof(fc.string({ maxLength: 300 }), fc.constantFrom('Café ☕ 東京', '\u0000', '\u202e', '\ud800', 'ﬀ'.repeat(300), ''));
const bodies = (shape: Record<string, fc.Arbitrary<unknown>>) =>
  fc.oneof(
    fc.record(shape, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
    fc.record({ ...shape, extra: fc.jsonValue() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 200 }),
    fc.integer({ min: 1, max: 40 }).map((d) => '['.repeat(d) + ']'.repeat(d)),
    fc.constantFrom('', '{', '{"amount":"1"', 'null', '"x"', '{"__proto__":{"x":1}}', '{"amount":"1","amount":"2"}'),
  );
const query = fc
  .dictionary(fc.constantFrom('limit', 'cursor', 'wait', 'at', 'x', 'limit[]', 'granularity', 'currency', 'from', 'to'), fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('0', '1', '30', '31', '100', '101', '-1', '1e2', 'MQ', 'OTk5OTk5OTk5OTk5OTk5OTk5OQ', 'OTIyMzM3MjAzNjg1NDc3NTgwOA', '0000-01-01T00:00:00Z', '9999-12-31T23:59:59-05:00', '2026-11-28t12:00:00z')), {
    maxKeys: 3,
  })
  .map((q) => (Object.keys(q).length ? `?${new URLSearchParams(q)}` : ''));

interface Case {
  method: 'GET' | 'POST';
  template: string;
  path: string;
  body?: string;
}

function cases(): fc.Arbitrary<Case> {
  const get = (template: string, path: fc.Arbitrary<string>) =>
    fc.tuple(path, query).map(([p, q]): Case => ({ method: 'GET', template, path: p + q }));
  const post = (template: string, path: fc.Arbitrary<string>, body: fc.Arbitrary<string>) =>
    fc.tuple(path, body).map(([p, b]): Case => ({ method: 'POST', template, path: p, body: b }));
  return fc.oneof(
    get('/healthz', fc.constant('/healthz')),
    get('/readyz', fc.constant('/readyz')),
    get('/openapi.json', fc.constant('/openapi.json')),
    get('/docs', fc.constant('/docs')),
    get('/docs/init.js', fc.constant('/docs/init.js')),
    get('/admin/queues', fc.constant('/admin/queues')),
    post('/admin/api-keys', fc.constant('/admin/api-keys'), bodies({ name: text, rateLimits: fc.dictionary(fc.string({ maxLength: 12 }), fc.oneof(fc.integer(), fc.double(), fc.string())) })),
    post('/v1/wallets', fc.constant('/v1/wallets'), bodies({ currency: fc.oneof(fc.constantFrom('USD', 'EUR', 'usd', 'XXX', 'US', ''), fc.string({ maxLength: 5 })), reference: text })),
    get('/v1/wallets/{id}', ids().map((id) => `/v1/wallets/${id}`)),
    get('/v1/wallets/{id}/entries', ids().map((id) => `/v1/wallets/${id}/entries`)),
    post('/v1/wallets/{id}/fund', ids().map((id) => `/v1/wallets/${id}/fund`), bodies({ amount: amounts, paymentMethod: fc.oneof(fc.constantFrom('pm_card_declined', 'pm_x', 'visa'), fc.string({ maxLength: 120 })) })),
    post('/v1/transfers', fc.constant('/v1/transfers'), bodies({ fromWalletId: ids(), toWalletId: ids(), amount: amounts, reference: text })),
    post(
      '/v1/transfers/batch',
      fc.constant('/v1/transfers/batch'),
      bodies({
        transfers: fc.oneof(
          fc.array(fc.record({ idempotencyKey: text, fromWalletId: ids(), toWalletId: ids(), amount: amounts, reference: text }, { requiredKeys: [] }), { maxLength: 4 }),
          fc.jsonValue(),
        ),
      }),
    ),
    get('/v1/operations/{id}', ids().map((id) => `/v1/operations/${id}`)),
    get('/v1/wallets/{id}/balance', ids().map((id) => `/v1/wallets/${id}/balance`)),
    get('/metrics', fc.constant('/metrics')),
    get('/admin/analytics', fc.constant('/admin/analytics')),
    post('/admin/wallets/{id}/unfreeze', ids().map((id) => `/admin/wallets/${id}/unfreeze`), bodies({})),
    post('/v1/webhook-endpoints', fc.constant('/v1/webhook-endpoints'), bodies({ url: fc.oneof(fc.webUrl(), text), events: fc.array(text, { maxLength: 3 }) })),
    get('/v1/webhook-endpoints/{id}/deliveries', ids().map((id) => `/v1/webhook-endpoints/${id}/deliveries`)),
    post(
      '/v1/webhook-endpoints/{id}/deliveries/{deliveryId}/retry',
      fc.tuple(ids(), ids()).map(([a, b]) => `/v1/webhook-endpoints/${a}/deliveries/${b}/retry`),
      bodies({}),
    ),
  );
}

const auths = fc.oneof(
  fc.constant<'key' | 'admin' | 'none' | 'garbage' | 'basic'>('key'),
  fc.constantFrom<'key' | 'admin' | 'none' | 'garbage' | 'basic'>('admin', 'none', 'garbage', 'basic'),
);

describe('fuzz over every route', () => {
  it('covers every documented operation', () => {
    const documented = Object.entries(doc.paths as Record<string, object>).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
    const fuzzed = fc.sample(cases(), 3000).map((c) => `${c.method} ${c.template}`);
    expect(new Set(fuzzed)).toEqual(new Set(documented));
  });

  it('answers only documented statuses, valid problems, never 5xx, and a rejected request writes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        cases(),
        auths,
        fc.option(printable, { nil: undefined }),
        fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/json; charset=latin1', undefined),
        async (c, auth, idempotencyKey, contentType) => {
          const headers: Record<string, string> = {};
          if (auth === 'key') headers.authorization = `Bearer ${key}`;
          if (auth === 'admin') headers.authorization = `Bearer ${ADMIN_TOKEN}`;
          if (auth === 'garbage') headers.authorization = `Bearer ${key.slice(0, -1)}x`;
          if (auth === 'basic') headers.authorization = `Basic ${Buffer.from(`u:${ADMIN_TOKEN}`).toString('base64')}`;
          if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
          if (contentType && c.method === 'POST') headers['content-type'] = contentType;
          const before = await footprint();
          const res = await fetch(`${t.baseUrl}${c.path}`, { method: c.method, headers, ...(c.method === 'POST' ? { body: c.body ?? '' } : {}) });
          const raw = await res.text();
          const label = `${c.method} ${c.path} (${auth}) → ${res.status} ${raw.slice(0, 300)}`;
          expect(res.status, label).toBeLessThan(500);
          const documented = Object.keys(doc.paths[c.template][c.method.toLowerCase()].responses);
          expect(documented, label).toContain(String(res.status));
          if (res.status >= 400) {
            expectValidProblem(res.status, res.headers.get('content-type'), JSON.parse(raw));
            expect(await footprint(), label).toBe(before);
          }
          if (c.template.startsWith('/v1/') && auth === 'key') expect(res.headers.get('ratelimit-limit'), label).toMatch(/^[0-9]+$/);
        },
      ),
      { numRuns: 400 },
    );
  });
});

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe('values the syntax admits and Postgres would refuse', () => {
  const cursor = (n: string) => Buffer.from(n).toString('base64url');
  const get = (path: string, auth: 'key' | 'admin' = 'key') => t.api.request('GET', path, auth === 'key' ? { key } : { headers: admin });

  it.each([
    [`entries cursor 2^63`, (): string => `/v1/wallets/${wallet}/entries?cursor=${cursor('9223372036854775808')}`, 'key'],
    [`entries cursor 10^19 - 1`, (): string => `/v1/wallets/${wallet}/entries?cursor=${cursor('9999999999999999999')}`, 'key'],
    ['balance at year 0000', (): string => `/v1/wallets/${wallet}/balance?at=0000-01-01T00:00:00Z`, 'key'],
    ['balance at year 10000 by its offset', (): string => `/v1/wallets/${wallet}/balance?at=9999-12-31T23:59:59-05:00`, 'key'],
    ['analytics from year 0000', (): string => '/admin/analytics?from=0000-01-01T00:00:00Z', 'admin'],
    ['analytics to year 10000', (): string => '/admin/analytics?to=9999-12-31T23:00:00-02:00', 'admin'],
  ] as const)('%s: 400, not a 500', async (_name, path, auth) => {
    const res = await get(path(), auth);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expectValidProblem(400, res.headers.get('content-type'), res.body);
  });

  it('still answers the edges that fit', async () => {
    const last = await get(`/v1/wallets/${wallet}/entries?cursor=${cursor('9223372036854775807')}`);
    expect(last.status).toBe(200);
    expect(last.body.data.length).toBeGreaterThan(0); // every entry's seq is below the largest bigint
    expect((await get(`/v1/wallets/${wallet}/balance?at=0001-01-01T00:00:00Z`)).status).toBe(200);
    expect((await get(`/v1/wallets/${wallet}/balance?at=9999-12-31T23:59:59Z`)).status).toBe(200);
    expect((await get(`/v1/wallets/${wallet}/balance?at=2026-11-28t12:00:00z`)).status).toBe(200); // RFC 3339 § 5.6: t and z
    expect((await get('/admin/analytics?from=0001-01-01T00:00:00Z&to=9999-12-31T23:00:00Z', 'admin')).status).toBe(200);
  });
});

describe('actions without a body', () => {
  it('are answered by their route, not refused as an unsupported media type', async () => {
    // fetch sends Content-Length: 0; curl -X POST sends no Content-Length at all.
    const unfreeze = await t.api.request('POST', `/admin/wallets/${wallet}/unfreeze`, { headers: admin });
    expect(unfreeze.status).toBe(200);
    expect(unfreeze.body.status).toBe('active');
    const retry = await rawExchange((s) =>
      s.write(`POST /v1/webhook-endpoints/${randomUUID()}/deliveries/${randomUUID()}/retry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nConnection: close\r\n\r\n`),
    );
    expect(retry).toMatch(/^HTTP\/1\.1 404/);
    expect(retry).toContain('"code":"webhook_endpoint_not_found"');
  });

  it('still refuses a body that is not JSON (415), and a route that needs a body refuses none (400)', async () => {
    const text = await t.api.request('POST', `/admin/wallets/${wallet}/unfreeze`, { rawBody: 'x', headers: { ...admin, 'content-type': 'text/plain' } });
    expect(text.status).toBe(415);
    const empty = await t.api.request('POST', '/v1/transfers', { key, idempotencyKey: randomUUID() });
    expect(empty.status).toBe(400);
    expectValidProblem(400, empty.headers.get('content-type'), empty.body);
  });

  it('names the limit of the route in a 413', async () => {
    const big = await t.api.request('POST', '/v1/transfers/batch', { key, idempotencyKey: randomUUID(), rawBody: JSON.stringify({ transfers: [], pad: 'x'.repeat(1_100_000) }) });
    expect(big.status).toBe(413);
    expect(big.body.detail).toBe('the request body is larger than 1024 kB');
    const small = await t.api.request('POST', '/v1/transfers', { key, idempotencyKey: randomUUID(), rawBody: JSON.stringify({ pad: 'x'.repeat(70_000) }) });
    expect(small.body.detail).toBe('the request body is larger than 64 kB');
    // The batch's limit follows the route as the router matches it: any case, a trailing slash.
    for (const path of ['/V1/Transfers/Batch', '/v1/transfers/batch/']) {
      const batch = await t.api.request('POST', path, { key, idempotencyKey: randomUUID(), rawBody: JSON.stringify({ transfers: [], pad: 'x'.repeat(70_000) }) });
      expect([path, batch.status, batch.body.code]).toEqual([path, 400, 'validation_failed']);
    }
    const nearMiss = await t.api.request('POST', '/v1/transfers/batchx', { key, idempotencyKey: randomUUID(), rawBody: JSON.stringify({ pad: 'x'.repeat(70_000) }) });
    expect([nearMiss.status, nearMiss.body.detail]).toEqual([413, 'the request body is larger than 64 kB']);
  });
});

describe('unknown methods and paths', () => {
  it('answers a documented path asked with another method 405 with Allow, an unknown path 404', async () => {
    const del = await t.api.request('DELETE', `/v1/wallets/${wallet}`, { key });
    expect(del.status).toBe(405);
    expect(del.headers.get('allow')).toBe('GET, HEAD');
    expectValidProblem(405, del.headers.get('content-type'), del.body);
    const put = await t.api.request('PUT', '/v1/transfers', { key });
    expect([put.status, put.headers.get('allow')]).toEqual([405, 'POST']);
    // OPTIONS lists the methods, on the accept routes (on the app itself) as on the others.
    for (const path of ['/v1/transfers', `/v1/wallets/${wallet}/fund`, '/v1/transfers/batch', '/v1/webhook-endpoints']) {
      const options = await t.api.request('OPTIONS', path, { key });
      expect([path, options.status, options.headers.get('allow')]).toEqual([path, 200, 'POST']);
    }
    const unknown = await t.api.request('GET', `/v1/wallets/${wallet}/nothing`, { key });
    expect(unknown.status).toBe(404);
    expectValidProblem(404, unknown.headers.get('content-type'), unknown.body);
  });
});

/** Sends raw bytes and resolves with what the server answered before closing. */
function rawExchange(write: (socket: import('node:net').Socket) => void, timeoutMs = 10_000): Promise<string> {
  const url = new URL(t.baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`server kept the connection open; got ${JSON.stringify(got.slice(0, 100))}`));
    }, timeoutMs);
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.on('error', () => {});
    socket.on('connect', () => write(socket));
  });
}

describe('transport abuse', () => {
  it('drops a slowloris client that never finishes its headers (408)', async () => {
    let drip: NodeJS.Timeout | undefined;
    const answer = await rawExchange((s) => {
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
      drip = setInterval(() => s.writable && s.write('X-Slow: 1\r\n'), 200);
    });
    clearInterval(drip);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });

  it('drops a client that trickles its body past the request timeout (408)', async () => {
    let drip: NodeJS.Timeout | undefined;
    const answer = await rawExchange((s) => {
      s.write(`POST /v1/wallets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
      drip = setInterval(() => s.writable && s.write(' '), 200);
    });
    clearInterval(drip);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });

  it('refuses huge headers with 431 before any handler runs', async () => {
    const answer = await rawExchange((s) => s.write(`GET /v1/wallets/${wallet} HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
    expect(answer).toMatch(/^HTTP\/1\.1 431/);
    const many = await rawExchange((s) => s.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n${'X-H: 1234567890\r\n'.repeat(2000)}\r\n`));
    expect(many).toMatch(/^HTTP\/1\.1 431/);
  });

  it('refuses JSON nested deeper than 16 levels, even 20 000 deep, without a 500', async () => {
    const nested = (d: number) => `{"currency":"USD","reference":${'['.repeat(d)}${']'.repeat(d)}}`;
    const deep = await t.api.request('POST', '/v1/wallets', { key, rawBody: nested(16) });
    expect(deep.status).toBe(400);
    expect(deep.body.errors).toEqual([{ path: 'body', message: 'must not nest deeper than 16 levels' }]);
    const ok = await t.api.request('POST', '/v1/wallets', { key, rawBody: nested(14) });
    expect(ok.body.errors[0].path).toBe('body.reference'); // reached validation: depth was fine
    const huge = await t.api.request('POST', '/v1/transfers', { key, idempotencyKey: 'deep', rawBody: '['.repeat(20_000) + ']'.repeat(20_000) });
    expect([400]).toContain(huge.status);
    expectValidProblem(huge.status, huge.headers.get('content-type'), huge.body);
  });

  it('answers 400 for a path with a broken %-escape, not a 500', async () => {
    const res = await t.api.request('GET', '/v1/wallets/%E0%A4%A', { key });
    expect(res.status).toBe(400);
    expectValidProblem(400, res.headers.get('content-type'), res.body);
  });
});
