/**
 * Rate limits with the production defaults (10/50/100/1000 per hour), enforced by two API
 * processes sharing one Redis.
 */
import { randomUUID } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLedgerlineAdminClient,
  createLedgerlineClient,
  LedgerlineError,
  type LedgerlineClient,
} from '../src/client/ledgerline-client.ts';
import { EXACT_UP_TO, RateLimiter, type RateLimitDecision } from '../src/api/rate-limit.ts';
import { ADMIN_TOKEN, createTestEnv, type TestEnv } from './support/env.ts';
import { freePort, startRedisServer, waitHealthy } from './support/processes.ts';

let t: TestEnv;
let apiA: string;
let apiB: string;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function spawnApi(extraEnv: Record<string, string> = {}): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = t.spawnProcess('api', { PORT: String(port), ...extraEnv });
  return { url: await waitHealthy(port, child), child };
}

async function newKey(baseUrl: string, rateLimits?: Record<string, number>): Promise<string> {
  const admin = createLedgerlineAdminClient({ baseUrl, adminToken: ADMIN_TOKEN });
  return (await admin.apiKeys.create({ name: 'rl', ...(rateLimits ? { rateLimits } : {}) })).data.key;
}

/** Calls and returns the status and headers, whether it succeeded or was refused. */
async function attempt(call: Promise<{ response: Response }>): Promise<{ status: number; headers: Headers; code?: string }> {
  try {
    const { response } = await call;
    return { status: response.status, headers: response.headers };
  } catch (err) {
    if (!(err instanceof LedgerlineError)) throw err;
    return { status: err.status, headers: err.headers, ...(err.code ? { code: err.code } : {}) };
  }
}

const transfer = (c: LedgerlineClient, from: string, to: string) =>
  attempt(c.transfers.create({ fromWalletId: from, toWalletId: to, amount: '1' }, { idempotencyKey: randomUUID() }));

beforeAll(async () => {
  t = await createTestEnv({ realRateLimits: true, worker: false });
  [apiA, apiB] = (await Promise.all([spawnApi(), spawnApi()])).map((p) => p.url) as [string, string];
}, 60_000);
afterAll(() => t?.close());

describe('rate limits across two API processes on one Redis', () => {
  it('admits 100 transfers an hour per key, refuses the 101st with 429 and RateLimit headers', async () => {
    const key = await newKey(apiA);
    const [a, b] = [createLedgerlineClient({ baseUrl: apiA, apiKey: key }), createLedgerlineClient({ baseUrl: apiB, apiKey: key })];
    const from = (await a.wallets.create({ currency: 'USD' })).data.id;
    const to = (await b.wallets.create({ currency: 'USD' })).data.id;

    // 100 at once, split between the two processes: the script is atomic, so each request
    // sees its own count and the remaining values are exactly 99..0.
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => transfer(i % 2 ? a : b, from, to)));
    expect(results.map((r) => r.status)).toEqual(Array(100).fill(202));
    expect(new Set(results.map((r) => r.headers.get('ratelimit-limit')))).toEqual(new Set(['100']));
    const remaining = results.map((r) => Number(r.headers.get('ratelimit-remaining'))).sort((x, y) => x - y);
    expect(remaining).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const before = Number((await t.pool.query('SELECT COUNT(*)::int AS n FROM operations')).rows[0].n);

    for (const client of [a, b]) {
      const refused = await transfer(client, from, to);
      expect(refused.status).toBe(429);
      expect(refused.code).toBe('rate_limited');
      const retryAfter = Number(refused.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(3600);
      expect(refused.headers.get('ratelimit-limit')).toBe('100');
      expect(refused.headers.get('ratelimit-remaining')).toBe('0');
      expect(refused.headers.get('ratelimit-reset')).toBe(String(retryAfter));
      expect(refused.headers.get('ratelimit-policy')).toBe('100;w=3600');
    }
    // A refused request writes nothing.
    expect(Number((await t.pool.query('SELECT COUNT(*)::int AS n FROM operations')).rows[0].n)).toBe(before);

    // Other classes keep their own budget: reads (1000/h) still pass, with their headers.
    const read = await attempt(b.wallets.get(from));
    expect(read.status).toBe(200);
    expect(read.headers.get('ratelimit-limit')).toBe('1000');
    expect(read.headers.get('ratelimit-remaining')).toBe('999');
    // Another key is not affected.
    const other = createLedgerlineClient({ baseUrl: apiB, apiKey: await newKey(apiA) });
    const w = (await other.wallets.create({ currency: 'USD' })).data.id;
    expect((await transfer(other, w, randomUUID())).status).toBe(202);
  });

  it('limits wallet creation to 10 an hour and funding to 50 an hour', async () => {
    const key = await newKey(apiA);
    const [a, b] = [createLedgerlineClient({ baseUrl: apiA, apiKey: key }), createLedgerlineClient({ baseUrl: apiB, apiKey: key })];
    const created = await Promise.all(
      Array.from({ length: 11 }, (_, i) => (i % 2 ? a : b).wallets.create({ currency: 'USD' }).catch((err: unknown) => err)),
    );
    const ok = created.filter((r): r is Awaited<ReturnType<typeof a.wallets.create>> => !(r instanceof Error));
    expect(ok).toHaveLength(10);
    const refusedWallet = created.find((r) => r instanceof LedgerlineError) as LedgerlineError;
    expect(refusedWallet.status).toBe(429);
    expect(refusedWallet.headers.get('ratelimit-limit')).toBe('10');
    const own = ok[0]!.data.id;
    const funds = await Promise.all(
      Array.from({ length: 51 }, (_, i) => attempt((i % 2 ? a : b).funds.create(own, { amount: '1' }, { idempotencyKey: randomUUID() }))),
    );
    expect(funds.filter((r) => r.status === 202)).toHaveLength(50);
    const refused = funds.find((r) => r.status === 429)!;
    expect(refused.headers.get('ratelimit-limit')).toBe('50');
    expect(refused.headers.get('retry-after')).toMatch(/^[1-9][0-9]*$/);
  });

  it('applies per-key overrides from POST /admin/api-keys', async () => {
    const key = await newKey(apiA, { transfer: 3, read: 2000 });
    const [a, b] = [createLedgerlineClient({ baseUrl: apiA, apiKey: key }), createLedgerlineClient({ baseUrl: apiB, apiKey: key })];
    const from = (await a.wallets.create({ currency: 'USD' })).data.id;
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await transfer(i % 2 ? a : b, from, randomUUID())).status);
    expect(statuses).toEqual([202, 202, 202, 429]);
    const read = await attempt(b.wallets.get(from));
    expect(read.headers.get('ratelimit-limit')).toBe('2000');
    expect(read.headers.get('ratelimit-policy')).toBe('2000;w=3600');
  });
});

describe('fund and transfer: counted with their accept batch, before anything is written', () => {
  const post = (key: string, path: string, body: string, idempotencyKey?: string) =>
    fetch(`${apiA}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}) },
      body,
    });

  it('a request that fails before its accept is still counted, carries RateLimit-*, and is a 429 over the limit', async () => {
    const key = await newKey(apiA, { transfer: 2, fund: 1 });
    const client = createLedgerlineClient({ baseUrl: apiA, apiKey: key });
    const from = (await client.wallets.create({ currency: 'USD' })).data.id;

    const malformed = await post(key, '/v1/transfers', '{"fromWalletId":', randomUUID());
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('ratelimit-remaining')).toBe('1');
    const noKey = await post(key, '/v1/transfers', JSON.stringify({ fromWalletId: from, toWalletId: randomUUID(), amount: '1' }));
    expect(noKey.status).toBe(400);
    expect(noKey.headers.get('ratelimit-remaining')).toBe('0');
    // Over the limit, a well-formed request and a malformed one are both refused.
    expect((await transfer(client, from, randomUUID())).status).toBe(429);
    const late = await post(key, '/v1/transfers', 'not json', randomUUID());
    expect(late.status).toBe(429);
    expect(late.headers.get('retry-after')).toMatch(/^[1-9][0-9]*$/);

    // Fund: an invalid amount counts too (limit 1), then a valid fund is refused.
    const badFund = await post(key, `/v1/wallets/${from}/fund`, JSON.stringify({ amount: '-5' }), randomUUID());
    expect(badFund.status).toBe(400);
    expect(badFund.headers.get('ratelimit-limit')).toBe('1');
    expect((await attempt(client.funds.create(from, { amount: '1' }, { idempotencyKey: randomUUID() }))).status).toBe(429);
  });

  it('counts a transfer sent to the route with another letter case or a trailing slash', async () => {
    const key = await newKey(apiA, { transfer: 1 });
    const client = createLedgerlineClient({ baseUrl: apiA, apiKey: key });
    const from = (await client.wallets.create({ currency: 'USD' })).data.id;
    const to = (await client.wallets.create({ currency: 'USD' })).data.id;
    const body = JSON.stringify({ fromWalletId: from, toWalletId: to, amount: '1' });
    const first = await post(key, '/v1/transfers/', body, randomUUID());
    expect(first.status).toBe(202);
    expect(first.headers.get('ratelimit-remaining')).toBe('0');
    expect((await post(key, '/V1/Transfers', body, randomUUID())).status).toBe(429);
  });

  it('a refused request writes nothing, not even its key; a failed accept and a retry are counted too', async () => {
    const key = await newKey(apiA, { transfer: 2 });
    const client = createLedgerlineClient({ baseUrl: apiA, apiKey: key });
    const from = (await client.wallets.create({ currency: 'USD' })).data.id;
    const to = (await client.wallets.create({ currency: 'USD' })).data.id;
    const claimed = async (k: string) =>
      (await t.pool.query(`SELECT COUNT(*)::int AS n FROM idempotency_keys WHERE key = $1`, [k])).rows[0].n as number;

    // Refused by the accept (not the client's wallet): counted, with its headers.
    const foreign = await post(key, '/v1/transfers', JSON.stringify({ fromWalletId: randomUUID(), toWalletId: to, amount: '1' }), randomUUID());
    expect(foreign.status).toBe(404);
    expect(foreign.headers.get('ratelimit-remaining')).toBe('1');

    const [first, second] = [randomUUID(), randomUUID()];
    const body = JSON.stringify({ fromWalletId: from, toWalletId: to, amount: '1' });
    const admitted = await post(key, '/v1/transfers', body, first);
    expect(admitted.status).toBe(202);
    expect(admitted.headers.get('ratelimit-remaining')).toBe('0');
    expect(await claimed(first)).toBe(1);
    const refused = await post(key, '/v1/transfers', body, second);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toMatch(/^[1-9][0-9]*$/);
    expect(await claimed(second)).toBe(0);
    // A retry of the admitted request is counted like any request: over the limit it is refused too.
    expect((await post(key, '/v1/transfers', body, first)).status).toBe(429);
  });
});

describe('the window slides', () => {
  let c: string;
  let d: string;
  beforeAll(async () => {
    // Two more processes with a 4 s window (same Redis, same prefix, their own key below).
    [c, d] = (await Promise.all([spawnApi({ RATE_LIMIT_WINDOW_SECONDS: '4' }), spawnApi({ RATE_LIMIT_WINDOW_SECONDS: '4' })])).map(
      (p) => p.url,
    ) as [string, string];
  }, 60_000);

  it('frees each slot when its own request leaves the window, not all at a boundary', async () => {
    const key = await newKey(c, { transfer: 3 });
    const [x, y] = [createLedgerlineClient({ baseUrl: c, apiKey: key }), createLedgerlineClient({ baseUrl: d, apiKey: key })];
    const from = (await x.wallets.create({ currency: 'USD' })).data.id;

    // Two requests at t0, one at t0 + 2 s: the window is full.
    expect([(await transfer(x, from, randomUUID())).status, (await transfer(y, from, randomUUID())).status]).toEqual([202, 202]);
    const firstTwoDone = Date.now();
    await sleep(2000);
    const third = await transfer(x, from, randomUUID());
    expect(third.status).toBe(202);
    expect(third.headers.get('ratelimit-remaining')).toBe('0');
    const full = await transfer(y, from, randomUUID());
    expect(full.status).toBe(429);
    expect(Number(full.headers.get('retry-after'))).toBeLessThanOrEqual(4);

    // Once the first two have left the window, two slots are free again, but not the third's:
    // a fixed window would have reset all three.
    await sleep(Math.max(0, firstTwoDone + 4300 - Date.now()));
    const slid = [await transfer(y, from, randomUUID()), await transfer(x, from, randomUUID()), await transfer(y, from, randomUUID())];
    expect(slid.map((r) => r.status)).toEqual([202, 202, 429]);
    expect(slid[0]!.headers.get('ratelimit-remaining')).toBe('1');
  });
});

describe('Redis down', () => {
  it('fails open: requests pass without RateLimit headers, and reads fall back to Postgres', async () => {
    // An API process on a private Redis, which is then killed.
    const { child: redis, url: redisUrl } = await startRedisServer();
    try {
      const port = await freePort();
      const child = t.spawnProcess('api', { PORT: String(port), REDIS_URL: redisUrl });
      const url = await waitHealthy(port, child);
      redis.kill('SIGKILL');
      await new Promise((r) => redis.once('exit', r));
      const key = await newKey(apiA, { createWallet: 1 });
      const client = createLedgerlineClient({ baseUrl: url, apiKey: key });
      const created = await Promise.all([client.wallets.create({ currency: 'USD' }), client.wallets.create({ currency: 'EUR' })]);
      expect(created.map((r) => r.response.status)).toEqual([201, 201]); // the limit of 1 is not enforced
      expect(created[0].response.headers.get('ratelimit-limit')).toBeNull();
      const read = await client.wallets.get(created[1].data.id);
      expect(read.data.currency).toBe('EUR');
      // A transfer's limit and claim share one script: with Redis away it is accepted on Postgres alone.
      const moved = await client.transfers.create({ fromWalletId: created[0].data.id, toWalletId: created[1].data.id, amount: '1' }, { idempotencyKey: randomUUID() });
      expect(moved.response.status).toBe(202);
      expect(moved.response.headers.get('ratelimit-limit')).toBeNull();
      child.kill('SIGKILL');
    } finally {
      redis.kill('SIGKILL');
    }
  });
});

describe('limits above EXACT_UP_TO: a sliding-window counter', () => {
  // A window of ~11.5 days: no fixed-window boundary passes during a test.
  const WINDOW_SECONDS = 1_000_000;
  const limiter = () => new RateLimiter(t.redis, `${t.config.REDIS_PREFIX}:unit`, WINDOW_SECONDS);

  it('admits the limit, refuses the next, and holds a few numbers however high the limit', async () => {
    const l = limiter();
    const client = randomUUID();
    const limit = EXACT_UP_TO + 50;
    const decisions: RateLimitDecision[] = [];
    for (let i = 0; i < limit; i += 500) {
      decisions.push(...(await Promise.all(Array.from({ length: Math.min(500, limit - i) }, () => l.take(l.ticket(client, 'transfer', limit))))));
    }
    expect(decisions.every((d) => d.allowed)).toBe(true);
    expect(decisions.map((d) => d.remaining).sort((a, b) => a - b).slice(0, 3)).toEqual([0, 1, 2]);
    const refused = await l.take(l.ticket(client, 'transfer', limit));
    expect(refused).toMatchObject({ allowed: false, remaining: 0 });
    const key = l.ticket(client, 'transfer', limit).key;
    expect(await t.redis.type(key)).toBe('hash');
    expect(await t.redis.hlen(key)).toBe(1);

    // At the threshold each admitted request is still logged, exactly.
    const exact = l.ticket(client, 'fund', EXACT_UP_TO);
    expect([key.includes(':rlc:'), exact.key.includes(':rl:')]).toEqual([true, true]);
    await l.take(exact);
    expect(await t.redis.type(exact.key)).toBe('zset');
  });

  it('counts concurrent transfers batch by batch, across two processes, as below the threshold', async () => {
    const key = await newKey(apiA, { transfer: EXACT_UP_TO * 2 });
    const [a, b] = [createLedgerlineClient({ baseUrl: apiA, apiKey: key }), createLedgerlineClient({ baseUrl: apiB, apiKey: key })];
    const from = (await a.wallets.create({ currency: 'USD' })).data.id;
    const to = (await a.wallets.create({ currency: 'USD' })).data.id;
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => transfer(i % 2 ? a : b, from, to)));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(202));
    expect(new Set(results.map((r) => r.headers.get('ratelimit-limit')))).toEqual(new Set([String(EXACT_UP_TO * 2)]));
    const remaining = results.map((r) => EXACT_UP_TO * 2 - Number(r.headers.get('ratelimit-remaining'))).sort((x, y) => x - y);
    expect(remaining).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    const counters = await t.redis.keys(`${t.config.REDIS_PREFIX}:rlc:*:transfer`);
    expect(counters).toHaveLength(1);
    expect(await t.redis.type(counters[0]!)).toBe('hash');
    // The same key and body again, through the other process, is a replay, not a second operation.
    const idempotencyKey = randomUUID();
    const first = await a.transfers.create({ fromWalletId: from, toWalletId: to, amount: '1' }, { idempotencyKey });
    const again = await b.transfers.create({ fromWalletId: from, toWalletId: to, amount: '1' }, { idempotencyKey });
    expect(again.data.id).toBe(first.data.id);
  });

  it('takeMany counts requests in order in one script, as take would one by one, in both algorithms', async () => {
    const l = limiter();
    const [seconds] = await t.redis.time();
    const slot = Math.floor((Number(seconds) * 1000) / (WINDOW_SECONDS * 1000));
    for (const limit of [3, EXACT_UP_TO + 3]) {
      const [x, y] = [randomUUID(), randomUUID()];
      const cls = limit > EXACT_UP_TO ? 'transfer' : 'fund';
      // The counter: x has used all but 3 of its limit in this fixed window.
      if (limit > EXACT_UP_TO) await t.redis.hset(l.ticket(x, cls, limit).key, String(slot), String(EXACT_UP_TO));
      const decisions = await l.takeMany([x, y, x, x, y, x].map((client) => l.ticket(client, cls, limit)));
      expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false]);
      expect(decisions.map((d) => d.remaining)).toEqual([2, limit - 1, 1, 0, limit - 2, 0]);
      expect(decisions.every((d) => d.limit === limit && d.resetSeconds >= 1)).toBe(true);
      expect((await l.take(l.ticket(x, cls, limit))).allowed).toBe(false);
    }
    expect(await l.takeMany([])).toEqual([]);
  });

  it('weighs the previous window by how much of it the sliding window still covers', async () => {
    const l = limiter();
    const limit = 20_000;
    const ticket = l.ticket(randomUUID(), 'transfer', limit);
    const windowMs = WINDOW_SECONDS * 1000;
    const [seconds, micros] = await t.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const slot = Math.floor(now / windowMs);
    // The previous fixed window was full, this one has 100 so far.
    await t.redis.hset(ticket.key, String(slot - 1), String(limit), String(slot), '100');
    const expected = Math.floor((limit * (windowMs - (now - slot * windowMs))) / windowMs) + 100;
    const decision = await l.take(ticket);
    if (expected < limit) {
      expect(decision.allowed).toBe(true);
      // The estimate moves by at most a request in the few ms between our clock read and the script's.
      expect(Math.abs(decision.remaining - (limit - expected - 1))).toBeLessThanOrEqual(1);
    } else {
      expect(decision.allowed).toBe(false);
    }
    // A window two back is forgotten.
    await t.redis.hset(ticket.key, String(slot - 2), '5');
    await l.take(ticket);
    expect(await t.redis.hexists(ticket.key, String(slot - 2))).toBe(0);
  });
});
