import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_MAP } from '../src/api/error-map.ts';
import { createLedgerlineAdminClient, createLedgerlineClient, LedgerlineError } from '../src/client/ledgerline-client.ts';
import { CLIENT_TYPES_PATH, clientTypesSource } from '../scripts/generate-client-types.ts';
import { ADMIN_TOKEN, createTestEnv, type TestEnv } from './support/env.ts';

let t: TestEnv;
let doc: any;

beforeAll(async () => {
  t = await createTestEnv();
  doc = (await t.api.request('GET', '/openapi.json')).body;
});
afterAll(() => t?.close());

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
  rawPath?: unknown;
}

/** Every (METHOD path) express answers, by walking the router stacks, in OpenAPI path syntax. */
function appRoutes(stack: Layer[], prefix = ''): string[] {
  const out: string[] = [];
  for (const layer of stack) {
    const mount = typeof layer.rawPath === 'string' && layer.rawPath !== '/' ? layer.rawPath : '';
    if (prefix + mount === '/admin/queues') {
      // Bull Board is one documented UI entry; its own JSON API and assets live under it.
      out.push('GET /admin/queues');
    } else if (layer.route) {
      for (const method of Object.keys(layer.route.methods).filter((m) => m !== '_all')) {
        out.push(`${method.toUpperCase()} ${(prefix + layer.route.path).replace(/:([A-Za-z]+)/g, '{$1}')}`);
      }
    } else if (layer.handle?.stack) {
      out.push(...appRoutes(layer.handle.stack, prefix + mount));
    }
  }
  return out;
}

describe('OpenAPI document', () => {
  it('documents every route the app answers, and the app answers every documented route', () => {
    const app = t.apiServer.listeners('request')[0] as unknown as { router: { stack: Layer[] } };
    const answered = new Set(appRoutes(app.router.stack));
    const documented = new Set(
      Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
        Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
      ),
    );
    expect(answered.size).toBeGreaterThan(8);
    expect([...answered].sort()).toEqual([...documented].sort());
  });

  it('documents every error code, and 429 with rate-limit headers on every client route', () => {
    expect(Object.keys(doc['x-error-codes']).sort()).toEqual(Object.keys(ERROR_MAP).sort());
    expect(doc.components.schemas.Problem.properties.code.enum.sort()).toEqual(Object.keys(ERROR_MAP).sort());
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      if (!path.startsWith('/v1/')) continue;
      for (const op of Object.values(ops)) {
        expect(op.responses['429'], path).toBeDefined();
        expect(Object.keys(op.responses['429'].headers)).toEqual(
          expect.arrayContaining(['Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset']),
        );
        // Every answer but 401 (authentication comes before the limit, so it counts against none).
        for (const [status, response] of Object.entries(op.responses) as [string, any][]) {
          if (status === '401') expect(response.headers?.['RateLimit-Limit'], path).toBeUndefined();
          else expect(response.headers?.['RateLimit-Limit'], `${path} ${status}`).toBeDefined();
        }
      }
    }
  });

  it('renders at /docs with assets served locally', async () => {
    const page = await fetch(`${t.baseUrl}/docs`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('swagger-ui');
    const srcs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(srcs.every((s) => s.startsWith('/docs/'))).toBe(true); // no CDN
    for (const src of srcs) {
      const asset = await fetch(`${t.baseUrl}${src}`);
      expect(asset.status, src).toBe(200);
      expect((await asset.text()).length, src).toBeGreaterThan(50);
    }
    expect(await (await fetch(`${t.baseUrl}/docs/init.js`)).text()).toContain('/openapi.json');
  });
});

describe('typed client', () => {
  it('its types are generated from the current document (run `npm run client:generate`)', async () => {
    expect(readFileSync(CLIENT_TYPES_PATH, 'utf8')).toBe(await clientTypesSource());
  });

  it('creates wallets, funds, transfers, waits and reads through the typed client', async () => {
    const admin = createLedgerlineAdminClient({ baseUrl: t.baseUrl, adminToken: ADMIN_TOKEN });
    const { data: apiKey } = await admin.apiKeys.create({ name: 'typed', rateLimits: { read: 5000 } });
    const client = createLedgerlineClient({ baseUrl: t.baseUrl, apiKey: apiKey.key });
    const a = (await client.wallets.create({ currency: 'USD' })).data;
    const b = (await client.wallets.create({ currency: 'USD' })).data;
    const fund = await client.funds.create(a.id, { amount: '900' }, { idempotencyKey: randomUUID() });
    expect(fund.response.status).toBe(202);
    expect(fund.response.headers.get('location')).toBe(`/v1/operations/${fund.data.id}`);
    expect((await client.operations.wait(fund.data.id)).status).toBe('succeeded');
    const idempotencyKey = randomUUID();
    const tr = await client.transfers.create({ fromWalletId: a.id, toWalletId: b.id, amount: '400' }, { idempotencyKey });
    const replay = await client.transfers.create({ fromWalletId: a.id, toWalletId: b.id, amount: '400' }, { idempotencyKey });
    expect(replay.data.id).toBe(tr.data.id);
    expect(replay.response.headers.get('idempotent-replayed')).toBe('true');
    const done = await client.operations.wait(tr.data.id);
    expect(done).toMatchObject({ status: 'succeeded', amount: '400', fromWalletId: a.id, toWalletId: b.id });
    expect((await client.wallets.get(b.id)).data.balance).toBe('400');
    const entries = await client.wallets.entries(a.id, { limit: 1 });
    expect(entries.data.data[0]).toMatchObject({ direction: 'debit', amount: '-400', balanceAfter: '500' });
    expect(entries.data.nextCursor).toEqual(expect.any(String));

    const err = await client.transfers
      .create({ fromWalletId: a.id, toWalletId: b.id, amount: '0' }, { idempotencyKey: randomUUID() })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LedgerlineError);
    expect((err as LedgerlineError).problem).toMatchObject({ status: 400, code: 'validation_failed' });
  });
});
