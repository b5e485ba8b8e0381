/**
 * Outbox retention (src/events/relay.ts): the active relay deletes published rows older than
 * OUTBOX_RETENTION_HOURS, a window of the oldest rows at a time, and never a row it has not
 * published.
 */
import { register } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/client.ts';
import { OutboxPruner, pruneOutbox } from '../src/events/relay.ts';
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

  const day = 86_400_000;
  /** Inserts rows in this order (seq order): [key, created, sent (null: not yet published)]. */
  const insert = async (rows: [string, number, number | null][]) => {
    for (const [key, created, sent] of rows) {
      await t.pool.query(
        `INSERT INTO outbox (event_id, type, key, payload, created_at, sent_at) VALUES (gen_random_uuid(), 'test.event', $1, '{}', $2, $3)`,
        [key, new Date(created), sent === null ? null : new Date(sent)],
      );
    }
  };
  const left = async () => (await t.pool.query<{ key: string }>(`SELECT key FROM outbox WHERE type = 'test.event' ORDER BY seq`)).rows.map((r) => r.key);
  const seqOf = async (key: string) => BigInt((await t.pool.query(`SELECT seq FROM outbox WHERE key = $1`, [key])).rows[0].seq);

  it('deletes rows published before the cutoff among the oldest from a seq on, never unpublished or recent ones', async () => {
    await t.pool.query(`DELETE FROM outbox`);
    const now = Date.now();
    await insert([
      ['old-1', now - 3 * day, now - 3 * day],
      ['old-2', now - 3 * day, now - 3 * day],
      ['old-unsent', now - 3 * day, null],
      ['old-3', now - 2 * day, now - 2 * day],
      ['recent', now - 60_000, now - 59_000],
    ]);
    const seq = Object.fromEntries(await Promise.all(['old-2', 'old-unsent', 'old-3', 'recent'].map(async (k) => [k, await seqOf(k)])));
    const cutoff = new Date(now - day);
    const first = await pruneOutbox(database.db, cutoff, 0n, 2);
    expect(first).toEqual({ deleted: 2, seen: 2, last: seq['old-2'], kept: undefined });
    expect(await left()).toEqual(['old-unsent', 'old-3', 'recent']);
    const second = await pruneOutbox(database.db, cutoff, first.last! + 1n, 2);
    expect(second).toEqual({ deleted: 1, seen: 2, last: seq['old-3'], kept: seq['old-unsent'] });
    const third = await pruneOutbox(database.db, cutoff, second.last! + 1n, 2);
    expect(third).toEqual({ deleted: 0, seen: 1, last: seq.recent, kept: seq.recent });
    expect(await left()).toEqual(['old-unsent', 'recent']);
    // From a seq on: what lies before it is not looked at, even past the cutoff.
    expect(await pruneOutbox(database.db, new Date(now), seq.recent + 1n, 2)).toEqual({ deleted: 0, seen: 0, last: undefined, kept: undefined });
    expect(await left()).toEqual(['old-unsent', 'recent']);
  });

  it('runs windows back to back while they delete, then starts the next run at the oldest row it left', async () => {
    await t.pool.query(`DELETE FROM outbox`);
    const now = Date.now();
    await insert([
      ['a', now - 3 * day, now - 3 * day],
      ['b', now - 3 * day, now - 3 * day],
      ['unsent', now - 3 * day, null],
      ['c', now - 3 * day, now - 3 * day],
      ['d', now - 3 * day, now - 3 * day],
      ['recent', now - 1000, now - 1000],
    ]);
    const pruner = new OutboxPruner(database.db, day, 2);
    expect(await pruner.step(now)).toBe(2); // a, b: full, so another at once
    expect(await pruner.step(now)).toBe(1); // [unsent, c]
    expect(await pruner.step(now)).toBe(1); // [d, recent]
    expect(await pruner.step(now)).toBe(0); // past the end: the run is over
    expect(await pruner.step(now + 1000)).toBe(0); // not due for a minute
    expect(await left()).toEqual(['unsent', 'recent']);

    await t.pool.query(`UPDATE outbox SET sent_at = $1 WHERE key = 'unsent'`, [new Date(now - 2 * day)]); // published since
    expect(await pruner.step(now + 61_000)).toBe(1); // the next run starts back at it
    expect(await left()).toEqual(['recent']);
  });

  it('while the relay works off a backlog, prunes one window per interval and never stops for good', async () => {
    await t.pool.query(`DELETE FROM outbox`);
    const now = Date.now();
    await insert([
      ['a', now - 3 * day, now - 3 * day],
      ['b', now - 3 * day, now - 3 * day],
      ['c', now - 3 * day, now - 3 * day],
      ['d', now - 3 * day, now - 3 * day],
      ['e', now - 3 * day, now - 3 * day],
    ]);
    const pruner = new OutboxPruner(database.db, day, 2, 10_000);
    expect(await pruner.step(now, true)).toBe(2); // busy, but nothing pruned yet: one window
    expect(await pruner.step(now + 1, true)).toBe(0); // busy: the back-to-back window waits...
    expect(await pruner.step(now + 9_999, true)).toBe(0);
    expect(await pruner.step(now + 10_000, true)).toBe(2); // ...an interval
    expect(await left()).toEqual(['e']);
    expect(await pruner.step(now + 10_001)).toBe(1); // caught up: back to back again
    expect(await left()).toEqual([]);
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
    // Both published (a row stays at least the 1 s retention after that)...
    await expect.poll(async () => (await eventsOf()).filter((e) => e.sent).length, { timeout: 20_000, interval: 50 }).toBe(2);
    // ...then gone a retention later.
    await expect.poll(async () => (await eventsOf()).length, { timeout: 20_000, interval: 250 }).toBe(0);
    const pruned = async () => ((await register.getSingleMetric('outbox_events_pruned_total')?.get())?.values.reduce((s, v) => s + v.value, 0) ?? 0) - prunedBefore;
    await expect.poll(pruned, { timeout: 5_000 }).toBeGreaterThanOrEqual(2);
  });
});
