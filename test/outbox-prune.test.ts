/**
 * Outbox retention (src/events/relay.ts): the active relay deletes published rows older than
 * OUTBOX_RETENTION_HOURS, a window of the oldest rows at a time, and never a row it has not
 * published.
 */
import { register } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/client.ts';
import { pruneOutbox } from '../src/events/relay.ts';
import { createTestEnv, type TestEnv } from './support/env.ts';

describe('pruneOutbox', () => {
  let t: TestEnv;
  let database: Database;
  beforeAll(async () => {
    t = await createTestEnv({ worker: false });
    database = openDatabase(t.config.DATABASE_URL, t.config, 'outbox-prune-test');
  });
  afterAll(async () => {
    await database?.pool.end();
    await t?.close();
  });

  it('deletes rows published before the cutoff among the oldest, never unpublished or recent ones', async () => {
    const day = 86_400_000;
    const now = Date.now();
    // In seq order: [label, created, sent (null: not yet published)].
    const rows: [string, number, number | null][] = [
      ['old-1', now - 3 * day, now - 3 * day],
      ['old-2', now - 3 * day, now - 3 * day],
      ['old-unsent', now - 3 * day, null],
      ['old-3', now - 2 * day, now - 2 * day],
      ['recent', now - 60_000, now - 59_000],
    ];
    for (const [label, created, sent] of rows) {
      await t.pool.query(
        `INSERT INTO outbox (event_id, type, key, payload, created_at, sent_at) VALUES (gen_random_uuid(), 'test.event', $1, '{}', $2, $3)`,
        [label, new Date(created), sent === null ? null : new Date(sent)],
      );
    }
    const left = async () => (await t.pool.query<{ key: string }>(`SELECT key FROM outbox WHERE type = 'test.event' ORDER BY seq`)).rows.map((r) => r.key);
    const cutoff = new Date(now - day);

    expect(await pruneOutbox(database.db, cutoff, 2)).toBe(2); // a full window: there may be more
    expect(await left()).toEqual(['old-unsent', 'old-3', 'recent']);
    expect(await pruneOutbox(database.db, cutoff, 2)).toBe(1); // the unpublished row stays
    expect(await pruneOutbox(database.db, cutoff, 2)).toBe(0);
    expect(await left()).toEqual(['old-unsent', 'recent']);
  });
});

describe('the relay with a retention', () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = await createTestEnv({ relay: true, env: { OUTBOX_RETENTION_HOURS: String(1 / 3600) } }); // one second
  });
  afterAll(async () => t?.close());

  it('publishes every event, then deletes it once it is older than the retention', async () => {
    const prunedBefore = (await register.getSingleMetric('outbox_events_pruned_total')?.get())?.values.reduce((s, v) => s + v.value, 0) ?? 0;
    const key = await t.api.adminKey();
    const [a, b] = [await t.api.wallet(key), await t.api.wallet(key)];
    const fund = await t.api.fund(key, a, '1000');
    await t.api.waitTerminal(key, fund.body.id);
    const transfer = await t.api.transfer(key, a, b, '250');
    await t.api.waitTerminal(key, transfer.body.id);
    const ids = [fund.body.id, transfer.body.id];

    const eventsOf = async () =>
      (await t.pool.query<{ sent: boolean }>('SELECT sent_at IS NOT NULL AS sent FROM outbox WHERE operation_id = ANY($1::uuid[])', [ids])).rows;
    // Published first (no row is ever deleted unsent)...
    await expect.poll(async () => (await eventsOf()).filter((e) => !e.sent).length, { timeout: 20_000 }).toBe(0);
    // ...then gone a retention later.
    await expect.poll(async () => (await eventsOf()).length, { timeout: 20_000, interval: 250 }).toBe(0);
    const prunedAfter = (await register.getSingleMetric('outbox_events_pruned_total')?.get())?.values.reduce((s, v) => s + v.value, 0) ?? 0;
    expect(prunedAfter - prunedBefore).toBeGreaterThanOrEqual(2);
  });
});
