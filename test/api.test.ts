import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createTestEnv, type TestEnv } from './support/env.ts';

let t: TestEnv;
let key: string;

beforeAll(async () => {
  t = await createTestEnv();
  key = await t.api.adminKey('acme');
});
afterAll(() => t?.close());

const count = async (table: string) =>
  Number((await t.pool.query(`SELECT COUNT(*)::int AS n FROM ${table}`)).rows[0].n);

function expectProblem(res: { status: number; headers: Headers; body: any }, status: number, code: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, code, type: expect.any(String), title: expect.any(String), detail: expect.any(String) });
  expect(JSON.stringify(res.body)).not.toMatch(/at .*\.ts|SELECT|INSERT|stack/i);
}

describe('operations endpoints', () => {
  it('healthz, readyz and openapi answer', async () => {
    expect((await t.api.request('GET', '/healthz')).status).toBe(200);
    const ready = await t.api.request('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toEqual({ postgres: 'ok', redis: 'ok', kafka: 'ok' });
    const doc = await t.api.request('GET', '/openapi.json');
    expect(doc.body.openapi).toBe('3.1.0');
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining(['/v1/transfers', '/v1/wallets/{id}/fund', '/v1/operations/{id}', '/admin/api-keys']),
    );
  });

  it('echoes X-Request-Id or makes one', async () => {
    const echoed = await t.api.request('GET', '/healthz', { headers: { 'x-request-id': 'abc-123' } });
    expect(echoed.headers.get('x-request-id')).toBe('abc-123');
    const made = await t.api.request('GET', '/healthz');
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('authentication', () => {
  it('admin routes need the operator token', async () => {
    expectProblem(await t.api.request('POST', '/admin/api-keys', { body: { name: 'x' } }), 401, 'unauthorized');
    expectProblem(
      await t.api.request('POST', '/admin/api-keys', { body: { name: 'x' }, headers: { authorization: 'Bearer wrong-token-wrong-token' } }),
      401,
      'unauthorized',
    );
    const basic = Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64');
    const ok = await t.api.request('POST', '/admin/api-keys', { body: { name: 'basic' }, headers: { authorization: `Basic ${basic}` } });
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ id: expect.any(String), name: 'basic', key: expect.stringMatching(/^llk_/) });
  });

  it('stores only the hash of an API key', async () => {
    const res = await t.api.request('POST', '/admin/api-keys', {
      body: { name: 'hashed', rateLimits: { transfer: 500 } },
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const stored = await t.pool.query('SELECT key_hash FROM api_keys WHERE client_id = $1', [res.body.id]);
    expect(stored.rows[0].key_hash).not.toContain(res.body.key);
    expect(stored.rows[0].key_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('client routes need a valid API key', async () => {
    const res = await t.api.request('POST', '/v1/wallets', { body: { currency: 'USD' } });
    expectProblem(res, 401, 'unauthorized');
    expect(res.headers.get('www-authenticate')).toMatch(/Bearer/);
    expectProblem(await t.api.request('GET', `/v1/wallets/${randomUUID()}`, { key: 'llk_not_a_key' }), 401, 'unauthorized');
    expectProblem(
      await t.api.request('GET', `/v1/operations/${randomUUID()}`, { headers: { authorization: 'Token abc' } }),
      401,
      'unauthorized',
    );
  });
});

describe('wallets', () => {
  it('creates and reads a wallet', async () => {
    const created = await t.api.request('POST', '/v1/wallets', { key, body: { currency: 'EUR', reference: 'Café ☕ 東京' } });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`/v1/wallets/${created.body.id}`);
    expect(created.body).toMatchObject({ currency: 'EUR', balance: '0', available: '0', status: 'active', reference: 'Café ☕ 東京' });
    const read = await t.api.request('GET', `/v1/wallets/${created.body.id}`, { key });
    expect(read.status).toBe(200);
    expect(read.body).toEqual(created.body);
  });

  it('hides a wallet from other clients', async () => {
    const other = await t.api.adminKey('other');
    const id = await t.api.wallet(key);
    expectProblem(await t.api.request('GET', `/v1/wallets/${id}`, { key: other }), 404, 'wallet_not_found');
    expectProblem(await t.api.request('GET', `/v1/wallets/${id}/entries`, { key: other }), 404, 'wallet_not_found');
    expectProblem(await t.api.fund(other, id, '100'), 404, 'wallet_not_found');
    expectProblem(await t.api.transfer(other, id, await t.api.wallet(other), '100'), 404, 'wallet_not_found');
  });

  it('refuses bad wallet input and writes nothing', async () => {
    const before = await count('wallets');
    for (const body of [{ currency: 'usd' }, { currency: 'XYZ' }, {}, { currency: 'USD', extra: 1 }, { currency: 'USD', reference: 'a\u0000b' }, []]) {
      expectProblem(await t.api.request('POST', '/v1/wallets', { key, body }), 400, 'validation_failed');
    }
    expect(await count('wallets')).toBe(before);
  });

  it('pages entries newest first', async () => {
    const a = await t.api.wallet(key);
    for (let i = 1; i <= 3; i++) await t.api.waitTerminal(key, (await t.api.fund(key, a, String(i * 100))).body.id);
    const first = await t.api.request('GET', `/v1/wallets/${a}/entries?limit=2`, { key });
    expect(first.body.data.map((e: any) => e.amount)).toEqual(['300', '200']);
    expect(first.body.data[0]).toMatchObject({ direction: 'credit', balanceAfter: '600', walletId: a });
    const second = await t.api.request('GET', `/v1/wallets/${a}/entries?limit=2&cursor=${first.body.nextCursor}`, { key });
    expect(second.body.data.map((e: any) => e.amount)).toEqual(['100']);
    expect(second.body.nextCursor).toBeNull();
    expectProblem(await t.api.request('GET', `/v1/wallets/${a}/entries?limit=0`, { key }), 400, 'validation_failed');
    expectProblem(await t.api.request('GET', `/v1/wallets/${a}/entries?cursor=!!`, { key }), 400, 'validation_failed');
    expectProblem(await t.api.request('GET', `/v1/wallets/${a}/entries?cursor=abc`, { key }), 400, 'validation_failed');
  });
});

describe('fund and transfer', () => {
  it('funds, transfers and polls to a terminal status', async () => {
    const a = await t.api.wallet(key);
    const b = await t.api.wallet(key);
    const fund = await t.api.fund(key, a, '5000');
    expect(fund.status).toBe(202);
    expect(fund.headers.get('location')).toBe(`/v1/operations/${fund.body.id}`);
    expect(fund.body).toMatchObject({ type: 'fund', status: 'pending', amount: '5000', currency: 'USD', walletId: a });
    expect(fund.body.id.slice(0, 2)).toBe(a.slice(0, 2));
    expect((await t.api.waitTerminal(key, fund.body.id)).status).toBe('succeeded');

    const tr = await t.api.transfer(key, a, b, '1200');
    expect(tr.status).toBe(202);
    expect(tr.body.id.slice(0, 2)).toBe(a.slice(0, 2));
    const done = await t.api.request('GET', `/v1/operations/${tr.body.id}?wait=10`, { key });
    expect(done.body).toMatchObject({ status: 'succeeded', fromWalletId: a, toWalletId: b, amount: '1200' });
    expect(done.body.completedAt).toEqual(expect.any(String));
    expect((await t.api.request('GET', `/v1/wallets/${a}`, { key })).body.balance).toBe('3800');
    expect((await t.api.request('GET', `/v1/wallets/${b}`, { key })).body).toMatchObject({ balance: '1200', available: '1200' });
  });

  it('fails transfers with the documented codes and moves nothing', async () => {
    const a = await t.api.wallet(key);
    const b = await t.api.wallet(key);
    const eur = await t.api.wallet(key, 'EUR');
    await t.api.waitTerminal(key, (await t.api.fund(key, a, '100')).body.id);
    const cases: [string, string][] = [
      [b, '101'],
      [randomUUID(), '1'],
      [eur, '1'],
      [a, '1'],
    ];
    const codes = [];
    for (const [to, amount] of cases) {
      const res = await t.api.transfer(key, a, to, amount);
      expect(res.status).toBe(202);
      const op = await t.api.waitTerminal(key, res.body.id);
      expect(op.status).toBe('failed');
      expect(op.failure.message).toEqual(expect.any(String));
      codes.push(op.failure.code);
    }
    expect(codes).toEqual(['insufficient_funds', 'wallet_not_found', 'currency_mismatch', 'same_wallet']);
    expect((await t.api.request('GET', `/v1/wallets/${a}`, { key })).body.balance).toBe('100');
    const entries = await t.pool.query('SELECT COUNT(*)::int AS n FROM ledger_entries WHERE wallet_id = $1', [a]);
    expect(entries.rows[0].n).toBe(1);
  });

  it('fails a transfer from a frozen wallet with wallet_frozen', async () => {
    const a = await t.api.wallet(key);
    const b = await t.api.wallet(key);
    await t.api.waitTerminal(key, (await t.api.fund(key, a, '100')).body.id);
    await t.pool.query(`UPDATE wallets SET status = 'frozen' WHERE id = $1`, [a]);
    const op = await t.api.waitTerminal(key, (await t.api.transfer(key, a, b, '10')).body.id);
    expect(op.failure.code).toBe('wallet_frozen');
  });

  it('accepts amounts at the limit and refuses past it', async () => {
    const a = await t.api.wallet(key);
    const res = await t.api.fund(key, a, '1000000000000000');
    expect(res.status).toBe(202);
    expect((await t.api.waitTerminal(key, res.body.id)).status).toBe('succeeded');
    expectProblem(await t.api.fund(key, a, '1000000000000001'), 400, 'validation_failed');
  });

  it('refuses malformed money requests with 4xx problems and writes nothing', async () => {
    const a = await t.api.wallet(key);
    const b = await t.api.wallet(key);
    const before = { ops: await count('operations'), entries: await count('ledger_entries') };
    const bad: [string, unknown][] = [
      ['-5', undefined], ['0', undefined], ['1.5', undefined], ['1e3', undefined], ['01', undefined],
      ['99999999999999999999', undefined], [' 5', undefined], ['', undefined],
    ];
    for (const [amount] of bad) {
      expectProblem(await t.api.transfer(key, a, b, amount), 400, 'validation_failed');
      expectProblem(await t.api.fund(key, a, amount), 400, 'validation_failed');
    }
    const tr = (body: unknown, opts: Record<string, unknown> = {}) =>
      t.api.request('POST', '/v1/transfers', { key, idempotencyKey: randomUUID(), body, ...opts });
    expectProblem(await tr({ fromWalletId: a, toWalletId: b, amount: 5 }), 400, 'validation_failed');
    expectProblem(await tr({ fromWalletId: a, toWalletId: b, amount: '5', memo: 'x' }), 400, 'validation_failed');
    expectProblem(await tr({ fromWalletId: 'not-a-uuid', toWalletId: b, amount: '5' }), 400, 'validation_failed');
    expectProblem(await tr({ fromWalletId: a, amount: '5' }), 400, 'validation_failed');
    expectProblem(await tr(null), 400, 'malformed_json'); // strict JSON: only objects and arrays
    expectProblem(await tr([]), 400, 'validation_failed');
    expectProblem(await tr(undefined, { rawBody: '{"fromWalletId":' }), 400, 'malformed_json');
    expectProblem(await tr(undefined, { rawBody: 'amount=5', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    expectProblem(await tr(undefined, { rawBody: JSON.stringify({ reference: 'x'.repeat(100_000) }) }), 413, 'payload_too_large');
    expectProblem(await t.api.transfer(key, randomUUID(), b, '5'), 404, 'wallet_not_found');
    expectProblem(await t.api.fund(key, randomUUID(), '5'), 404, 'wallet_not_found');
    expectProblem(await t.api.request('POST', '/v1/wallets/nope/fund', { key, idempotencyKey: 'k', body: { amount: '5' } }), 400, 'validation_failed');
    expectProblem(await t.api.request('POST', `/v1/wallets/${a}/fund`, { key, body: { amount: '5' } }), 400, 'idempotency_key_missing');
    expectProblem(
      await t.api.request('POST', `/v1/wallets/${a}/fund`, { key, idempotencyKey: 'x'.repeat(256), body: { amount: '5' } }),
      400,
      'idempotency_key_invalid',
    );
    expectProblem(
      await t.api.request('POST', `/v1/wallets/${a}/fund`, { key, body: { amount: '5', paymentMethod: 'visa' }, idempotencyKey: 'pm' }),
      400,
      'validation_failed',
    );
    expect(await count('operations')).toBe(before.ops);
    expect(await count('ledger_entries')).toBe(before.entries);
  });

  it('answers 404 problems for unknown routes and operations, and 400 for bad ids and waits', async () => {
    expectProblem(await t.api.request('GET', '/v1/nope', { key }), 404, 'not_found');
    expectProblem(await t.api.request('GET', `/v1/operations/${randomUUID()}`, { key }), 404, 'operation_not_found');
    expectProblem(await t.api.request('GET', '/v1/operations/123', { key }), 400, 'validation_failed');
    expectProblem(await t.api.request('GET', `/v1/wallets/xyz`, { key }), 400, 'validation_failed');
    const a = await t.api.wallet(key);
    const op = await t.api.fund(key, a, '1');
    expectProblem(await t.api.request('GET', `/v1/operations/${op.body.id}?wait=31`, { key }), 400, 'validation_failed');
    expectProblem(await t.api.request('GET', `/v1/operations/${op.body.id}?wait=abc`, { key }), 400, 'validation_failed');
    const other = await t.api.adminKey('snoop');
    expectProblem(await t.api.request('GET', `/v1/operations/${op.body.id}`, { key: other }), 404, 'operation_not_found');
  });

  it('long-polls until the operation settles', async () => {
    // Accept with no worker running, then start one while a client waits.
    const a = await t.api.wallet(key);
    const quiet = await createTestEnv({ worker: false });
    try {
      const k = await quiet.api.adminKey();
      const w = await quiet.api.wallet(k);
      const op = await quiet.api.fund(k, w, '10');
      const started = Date.now();
      const poll = quiet.api.request('GET', `/v1/operations/${op.body.id}?wait=20`, { key: k });
      await new Promise((r) => setTimeout(r, 1500));
      quiet.startWorker();
      const res = await poll;
      expect(res.body.status).toBe('succeeded');
      expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
      const immediate = await quiet.api.request('GET', `/v1/operations/${op.body.id}?wait=0`, { key: k });
      expect(immediate.body.status).toBe('succeeded');
    } finally {
      await quiet.close();
    }
    expect(a).toBeTruthy();
  });
});

describe('hostile input', () => {
  it('random bodies, keys and ids never produce a 500 and never write', async () => {
    const { default: fc } = await import('fast-check');
    const a = await t.api.wallet(key);
    const before = await count('operations');
    const anyJson = fc.oneof(fc.jsonValue(), fc.record({ fromWalletId: fc.string(), toWalletId: fc.string(), amount: fc.oneof(fc.string(), fc.integer(), fc.double()) }));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/v1/transfers', `/v1/wallets/${a}/fund`, '/v1/wallets', '/admin/api-keys'),
        fc.oneof(anyJson.map((v) => JSON.stringify(v)), fc.string()),
        fc.option(fc.string({ maxLength: 300 }), { nil: undefined }),
        async (path, rawBody, idem) => {
          const headers: Record<string, string> = {};
          let idempotencyKey: string | undefined;
          if (idem !== undefined && /^[\x20-\x7e]*$/.test(idem)) idempotencyKey = idem;
          const res = await t.api.request('POST', path, { key, rawBody, ...(idempotencyKey !== undefined ? { idempotencyKey } : {}), headers });
          expect(res.status).toBeLessThan(500);
          if (res.status >= 400) expect(res.body).toMatchObject({ status: res.status, code: expect.any(String) });
        },
      ),
      { numRuns: 150 },
    );
    expect(await count('operations')).toBe(before);
  });
});

describe('Bull Board', () => {
  it('answers 401 without the token and shows the settlement queue with it', async () => {
    expectProblem(await t.api.request('GET', '/admin/queues'), 401, 'unauthorized');
    const basic = Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64');
    const page = await t.api.request('GET', '/admin/queues', { headers: { authorization: `Basic ${basic}` } });
    expect(page.status).toBe(200);
    expect(String(page.body)).toMatch(/<html/i);
    const queues = await t.api.request('GET', '/admin/queues/api/queues', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(queues.status).toBe(200);
    expect(queues.body.queues.map((q: any) => q.name)).toContain('settlement');
  });
});
