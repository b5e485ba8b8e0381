import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invalidateWallets, WalletCache } from '../src/api/wallet-cache.ts';
import { createLedgerlineAdminClient, createLedgerlineClient, LedgerlineError, type LedgerlineClient } from '../src/client/ledgerline-client.ts';
import { ADMIN_TOKEN, createTestEnv, type TestEnv } from './support/env.ts';
import { startRedisServer } from './support/processes.ts';

let t: TestEnv;
let client: LedgerlineClient;

beforeAll(async () => {
  t = await createTestEnv();
  const admin = createLedgerlineAdminClient({ baseUrl: t.baseUrl, adminToken: ADMIN_TOKEN });
  client = createLedgerlineClient({ baseUrl: t.baseUrl, apiKey: (await admin.apiKeys.create({ name: 'cache' })).data.key });
});
afterAll(() => t?.close());

describe('wallet read cache', () => {
  it('serves reads from Redis, and a client that saw succeeded reads the new balance at once', async () => {
    const a = (await client.wallets.create({ currency: 'USD', reference: 'before' })).data.id;
    const b = (await client.wallets.create({ currency: 'USD' })).data.id;
    const fund = await client.funds.create(a, { amount: '1000' }, { idempotencyKey: randomUUID() });
    expect((await client.operations.wait(fund.data.id)).status).toBe('succeeded');

    // Read (fills the cache), then change a field behind the API's back: the next read is
    // served from the cache, so the cache is really in use.
    expect((await client.wallets.get(a)).data).toMatchObject({ balance: '1000', reference: 'before' });
    await t.pool.query(`UPDATE wallets SET reference = 'after' WHERE id = $1`, [a]);
    expect((await client.wallets.get(a)).data.reference).toBe('before');
    expect(await t.redis.exists(`${t.config.REDIS_PREFIX}:wallet:${a}`)).toBe(1);

    // Transfer, poll to succeeded, read again: the settling worker invalidated both wallets
    // before announcing the settlement.
    expect((await client.wallets.get(b)).data.balance).toBe('0');
    const tr = await client.transfers.create({ fromWalletId: a, toWalletId: b, amount: '250' }, { idempotencyKey: randomUUID() });
    expect((await client.operations.wait(tr.data.id)).status).toBe('succeeded');
    expect((await client.wallets.get(a)).data).toMatchObject({ balance: '750', available: '750', reference: 'after' });
    expect((await client.wallets.get(b)).data.balance).toBe('250');
  });

  it('still checks ownership on a cache hit', async () => {
    const a = (await client.wallets.create({ currency: 'USD' })).data.id;
    await client.wallets.get(a); // cached now
    const admin = createLedgerlineAdminClient({ baseUrl: t.baseUrl, adminToken: ADMIN_TOKEN });
    const other = createLedgerlineClient({ baseUrl: t.baseUrl, apiKey: (await admin.apiKeys.create({ name: 'other' })).data.key });
    const err = await other.wallets.get(a).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LedgerlineError);
    expect((err as LedgerlineError).status).toBe(404);
    expect((err as LedgerlineError).code).toBe('wallet_not_found');
  });

  it('ignores a fill that raced with an invalidation (a pre-commit value written late)', async () => {
    const cache = new WalletCache(t.redis, t.config.REDIS_PREFIX, 30);
    const id = randomUUID();
    const view = (balance: string) => ({
      id,
      currency: 'USD',
      balance,
      available: balance,
      status: 'active' as const,
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
    });
    // A reader misses and reads the old row from Postgres...
    const miss = await cache.get(id);
    expect('miss' in miss && miss.miss).toBe('0');
    // ...the settling transaction commits and the worker invalidates...
    await invalidateWallets(t.redis, t.config.REDIS_PREFIX, [id]);
    // ...then the slow reader stores its stale view. Nobody accepts it.
    await cache.fill('miss' in miss ? miss.miss : undefined, 'client', view('0'));
    const next = await cache.get(id);
    expect('miss' in next && next.miss).toBe('1');
    // A fill under the current generation is served.
    await cache.fill('1', 'client', view('5'));
    const hit = await cache.get(id);
    expect('hit' in hit && hit.hit.view.balance).toBe('5');
  });
  it('invalidates and then announces in one command, also after Redis has forgotten the script', async () => {
    // A private Redis: SCRIPT FLUSH must not reach the server other test files share.
    const server = await startRedisServer();
    const redis = new Redis(server.url);
    const sub = new Redis(server.url);
    const prefix = 'cache-test';
    const channel = `${prefix}:notice`;
    const walletId = randomUUID();
    const generation = `${prefix}:wallet-gen:${walletId}`;
    try {
      await sub.subscribe(channel);
      // Each notice records the generation seen on another connection when it arrives.
      let heard: (seen: string) => void = () => {};
      sub.on('message', (_c: string, message: string) => void redis.get(generation).then((g) => heard(`${message}@${g}`)));
      const next = () => new Promise<string>((resolve) => (heard = resolve));

      await redis.set(`${prefix}:wallet:${walletId}`, '{}');
      let notice = next();
      await invalidateWallets(redis, prefix, [walletId], { channel, message: 'first' });
      expect(await notice).toBe('first@1');
      expect(await redis.exists(`${prefix}:wallet:${walletId}`)).toBe(0);
      expect(await redis.ttl(generation)).toBeGreaterThan(24 * 3600);

      await redis.script('FLUSH'); // a restarted Redis: EVALSHA fails with NOSCRIPT, the script is sent again
      notice = next();
      await invalidateWallets(redis, prefix, [walletId], { channel, message: 'second' });
      expect(await notice).toBe('second@2');

      // A notice without wallets (a fund the gateway refused) is published alone.
      notice = next();
      await invalidateWallets(redis, prefix, [], { channel, message: 'third' });
      expect(await notice).toBe('third@2');
    } finally {
      sub.disconnect();
      redis.disconnect();
      server.child.kill();
    }
  });
});
