/**
 * Funding through the payment gateway simulator behind the circuit breaker: outage under load,
 * timeouts, a worker killed between charge and credit, declines, and the spent retry budget.
 * The simulator's own ledger of charges is compared with ours every time.
 */
import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import { register } from 'prom-client';
import type { Job } from 'bullmq';
import { ShardRouter } from '../src/db/shard-router.ts';
import { createLogger } from '../src/infra/logger.ts';
import { chargeFund } from '../src/workers/charge-fund.ts';
import type { FundGateway } from '../src/workers/gateway-breaker.ts';
import { handlers, type WorkerDeps } from '../src/workers/processor.ts';
import { FundNotCharged, settleOperation } from '../src/workers/settle-operation.ts';
import { createTestEnv, ledgerViolations, uniqueName, type TestEnv } from './support/env.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface SimCharge {
  id: string;
  idempotencyKey: string;
  amount: string;
  currency: string;
  status: 'succeeded' | 'declined' | 'refunded' | 'voided';
}
interface SimLedger {
  charges: SimCharge[];
  requests: { total: number; charges: number; byKey: Record<string, number> };
}

async function sim(t: TestEnv): Promise<SimLedger> {
  return (await fetch(`${t.gateway.url}/charges`)).json() as Promise<SimLedger>;
}
async function control(t: TestEnv, body: { latencyMs?: number; errorRate?: number; outage?: boolean }) {
  const res = await fetch(`${t.gateway.url}/control`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
}
async function fund(t: TestEnv, key: string, walletId: string, amount: string, paymentMethod?: string): Promise<string> {
  const res = await t.api.request('POST', `/v1/wallets/${walletId}/fund`, {
    key,
    idempotencyKey: uniqueName('fund'),
    body: { amount, ...(paymentMethod ? { paymentMethod } : {}) },
  });
  expect(res.status).toBe(202);
  return res.body.id as string;
}
/** Sum of a counter's values matching `labels` in this process (the in-process worker records there). */
async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = register.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x))
    .reduce((a, v) => a + v.value, 0);
}
async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
async function statuses(t: TestEnv, ids: string[]) {
  const r = await t.pool.query(`SELECT id, status, failure_code FROM operations WHERE id = ANY($1::uuid[])`, [ids]);
  return r.rows as { id: string; status: string; failure_code: string | null }[];
}
/** Credits on customer wallets per operation id, from our ledger. */
async function credits(t: TestEnv, ids: string[]): Promise<Map<string, bigint[]>> {
  const r = await t.pool.query(
    `SELECT e.operation_id, e.amount FROM ledger_entries e JOIN wallets w ON w.id = e.wallet_id
     WHERE w.kind = 'customer' AND e.operation_id = ANY($1::uuid[])`,
    [ids],
  );
  const out = new Map<string, bigint[]>();
  for (const row of r.rows) out.set(row.operation_id, [...(out.get(row.operation_id) ?? []), BigInt(row.amount)]);
  return out;
}
async function readyzBreaker(t: TestEnv): Promise<string> {
  const res = await t.api.request('GET', '/readyz');
  return res.body?.detail?.gateway?.breaker;
}

/** Every operation charged exactly once at the gateway and credited exactly once, for the same amount. */
async function expectOneChargeOneCredit(t: TestEnv, ids: string[]) {
  const { charges } = await sim(t);
  const ours = await credits(t, ids);
  const ops = await t.pool.query(`SELECT id, amount FROM operations WHERE id = ANY($1::uuid[])`, [ids]);
  for (const op of ops.rows) {
    const atGateway = charges.filter((c) => c.idempotencyKey === op.id);
    expect(atGateway).toHaveLength(1);
    expect(atGateway[0]!.status).toBe('succeeded');
    expect(atGateway[0]!.amount).toBe(String(op.amount));
    expect(ours.get(op.id)).toEqual([BigInt(op.amount)]);
  }
  expect(await ledgerViolations(t.pool)).toEqual([]);
}

describe('gateway simulator', () => {
  let t: TestEnv;
  afterAll(() => t?.close());

  it('charges once per idempotency key, even for concurrent calls', async () => {
    t = await createTestEnv({ worker: false });
    const call = () =>
      fetch(`${t.gateway.url}/v1/charges`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'k-1' },
        body: JSON.stringify({ amount: '100', currency: 'USD' }),
      }).then((r) => r.json() as Promise<SimCharge>);
    const answers = await Promise.all(Array.from({ length: 20 }, call));
    expect(new Set(answers.map((a) => a.id)).size).toBe(1);
    const ledger = await sim(t);
    expect(ledger.charges).toHaveLength(1);
    expect(ledger.requests.byKey['k-1']).toBe(20);
  });
});

describe('declines', () => {
  let t: TestEnv;
  afterAll(() => t?.close());

  it('a declined payment ends failed / payment_declined with no entry; the default method is credited', async () => {
    t = await createTestEnv();
    const key = await t.api.adminKey();
    const wallet = await t.api.wallet(key);
    const bad = await fund(t, key, wallet, '700', 'pm_card_declined');
    const good = await fund(t, key, wallet, '300');
    const badOp = await t.api.waitTerminal(key, bad);
    const goodOp = await t.api.waitTerminal(key, good);
    expect(badOp.status).toBe('failed');
    expect(badOp.failure.code).toBe('payment_declined');
    expect(goodOp.status).toBe('succeeded');
    const entries = await t.pool.query(`SELECT 1 FROM ledger_entries WHERE operation_id = $1`, [bad]);
    expect(entries.rowCount).toBe(0);
    const event = await t.pool.query(`SELECT type FROM outbox WHERE operation_id = $1`, [bad]);
    expect(event.rows).toEqual([{ type: 'wallet.fund_failed' }]);
    const recorded = await t.pool.query(`SELECT status, decline_code FROM gateway_charges WHERE operation_id = $1`, [bad]);
    expect(recorded.rows).toEqual([{ status: 'declined', decline_code: 'card_declined' }]);
    const { charges } = await sim(t);
    expect(charges.filter((c) => c.idempotencyKey === bad).map((c) => c.status)).toEqual(['declined']);
    expect((await t.api.request('GET', `/v1/wallets/${wallet}`, { key })).body.balance).toBe('300');
    await expectOneChargeOneCredit(t, [good]);
  });
});

describe('funds the ledger refuses', () => {
  let t: TestEnv;
  afterAll(() => t?.close());

  it('a frozen wallet is not charged at all', async () => {
    t = await createTestEnv();
    const key = await t.api.adminKey();
    const wallet = await t.api.wallet(key);
    await t.pool.query(`UPDATE wallets SET status = 'frozen' WHERE id = $1`, [wallet]);
    const id = await fund(t, key, wallet, '400');
    const op = await t.api.waitTerminal(key, id);
    expect(op.failure.code).toBe('wallet_frozen');
    expect((await sim(t)).requests.byKey[id]).toBeUndefined();
  });

  it('a wallet frozen while the charge is in flight gets the charge reversed', async () => {
    const key = await t.api.adminKey();
    const wallet = await t.api.wallet(key);
    await control(t, { latencyMs: 1500 });
    const id = await fund(t, key, wallet, '400');
    await until('the gateway to charge', async () => (await sim(t)).charges.some((c) => c.idempotencyKey === id));
    await t.pool.query(`UPDATE wallets SET status = 'frozen' WHERE id = $1`, [wallet]);
    const op = await t.api.waitTerminal(key, id);
    expect(op.failure.code).toBe('wallet_frozen');
    expect((await credits(t, [id])).size).toBe(0);
    await until('the charge to be refunded', async () =>
      (await sim(t)).charges.some((c) => c.idempotencyKey === id && c.status === 'refunded'),
    );
    await control(t, { latencyMs: 0 });
  });
});

describe('gateway outage under load', () => {
  let t: TestEnv;
  afterAll(() => t?.close());

  it('the breaker opens, jobs wait, and after recovery every fund succeeds, each charged once', async () => {
    t = await createTestEnv({
      env: { BREAKER_RESET_TIMEOUT_MS: '1000', BREAKER_VOLUME_THRESHOLD: '4', GATEWAY_TIMEOUT_MS: '1000' },
    });
    const key = await t.api.adminKey();
    const wallets = await Promise.all(Array.from({ length: 8 }, () => t.api.wallet(key)));
    const opensBefore = await metric('ledgerline_gateway_breaker_opens_total');
    const rejectsBefore = await metric('ledgerline_gateway_breaker_rejects_total');
    await control(t, { outage: true });
    const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => fund(t, key, wallets[i % 8]!, String(100 + i))));

    await until('the breaker to open', async () => (await metric('ledgerline_gateway_breaker_opens_total')) > opensBefore);
    await until('/readyz to report the open breaker', async () => (await readyzBreaker(t)) === 'open');
    expect((await t.api.request('GET', '/readyz')).status).toBe(200); // detail only, still ready
    await sleep(3000); // jobs keep retrying against the outage
    const rejects = (await metric('ledgerline_gateway_breaker_rejects_total')) - rejectsBefore;
    expect(rejects).toBeGreaterThan(0); // calls refused without reaching the gateway
    const during = await sim(t);
    expect(during.charges).toHaveLength(0);
    // Each failed attempt (BullMQ's count) sent at most one request (the simulator's count):
    // fewer requests than attempts means the open breaker kept calls off the wire.
    const queue = (await import('../src/jobs/catalog.ts')).createSettlementQueue(t.config, t.redis);
    const jobs = await Promise.all(ids.map((id) => queue.getJob(id)));
    const attempts = jobs.reduce((a, j) => a + (j?.attemptsMade ?? 0), 0);
    await queue.close();
    expect(during.requests.charges).toBeLessThan(attempts);
    expect((await statuses(t, ids)).every((o) => o.status === 'pending' || o.status === 'processing')).toBe(true);

    await control(t, { outage: false });
    const ops = await Promise.all(ids.map((id) => t.api.waitTerminal(key, id, 60_000)));
    expect(ops.map((o) => o.status)).toEqual(ids.map(() => 'succeeded'));
    await until('/readyz to report the closed breaker', async () => (await readyzBreaker(t)) === 'closed');
    await expectOneChargeOneCredit(t, ids);
    const { charges } = await sim(t);
    expect(charges).toHaveLength(40);
  }, 90_000);
});

describe('gateway slower than the timeout', () => {
  let t: TestEnv;
  afterAll(() => t?.close());

  it('counts timeouts as failures, retries, and never charges twice', async () => {
    t = await createTestEnv({ env: { GATEWAY_TIMEOUT_MS: '300', BREAKER_RESET_TIMEOUT_MS: '1000' } });
    const key = await t.api.adminKey();
    const wallet = await t.api.wallet(key);
    const timeoutsBefore = await metric('ledgerline_gateway_breaker_failures_total', { reason: 'timeout' });
    await control(t, { latencyMs: 1000 });
    const ids = await Promise.all(Array.from({ length: 5 }, (_, i) => fund(t, key, wallet, String(1000 + i))));
    // The gateway charged each on arrival, but answered too late: the charge outcome is unknown to us.
    await until('the gateway to charge every fund', async () => (await sim(t)).charges.length === 5);
    await until('timeouts to be counted', async () =>
      (await metric('ledgerline_gateway_breaker_failures_total', { reason: 'timeout' })) - timeoutsBefore >= 5,
    );
    expect((await credits(t, ids)).size).toBe(0);
    expect((await statuses(t, ids)).every((o) => o.status === 'processing')).toBe(true);

    await control(t, { latencyMs: 0 });
    const ops = await Promise.all(ids.map((id) => t.api.waitTerminal(key, id, 60_000)));
    expect(ops.map((o) => o.status)).toEqual(ids.map(() => 'succeeded'));
    const { requests } = await sim(t);
    for (const id of ids) expect(requests.byKey[id]).toBeGreaterThanOrEqual(2); // retried with the same key
    await expectOneChargeOneCredit(t, ids);
    expect((await t.api.request('GET', `/v1/wallets/${wallet}`, { key })).body.balance).toBe('5010');
  }, 60_000);
});

describe('worker killed between charge and credit', () => {
  let t: TestEnv;
  afterAll(() => t?.close());

  for (const point of ['after-charge', 'after-charge-recorded']) {
    it(`${point}: after restart, exactly one charge and one credit`, async () => {
      t ??= await createTestEnv({ worker: false });
      const key = await t.api.adminKey();
      const wallet = await t.api.wallet(key);
      const faulty = t.spawnWorker({ FAULT_INJECTION: `${point}:1` });
      const id = await fund(t, key, wallet, '2500');
      const [, signal] = (await once(faulty, 'exit')) as [number | null, string | null];
      expect(signal).toBe('SIGKILL');
      // Charged at the gateway, not credited here.
      expect((await sim(t)).charges.filter((c) => c.idempotencyKey === id)).toHaveLength(1);
      expect((await credits(t, [id])).size).toBe(0);

      const healthy = t.spawnWorker();
      const op = await t.api.waitTerminal(key, id, 45_000);
      expect(op.status).toBe('succeeded');
      await expectOneChargeOneCredit(t, [id]);
      const { requests } = await sim(t);
      // after-charge: the restart asks the gateway again and gets the first charge back;
      // after-charge-recorded: the restart finds the recorded charge and does not ask at all.
      expect(requests.byKey[id]).toBe(point === 'after-charge' ? 2 : 1);
      healthy.kill('SIGTERM');
      await once(healthy, 'exit');
    }, 60_000);
  }
});

describe('retry budget spent', () => {
  let t: TestEnv;
  afterAll(() => t?.close());

  it('fails gateway_unavailable and reverses a charge made on a timed-out call', async () => {
    t = await createTestEnv({ env: { JOB_ATTEMPTS: '2', GATEWAY_TIMEOUT_MS: '300' } });
    const key = await t.api.adminKey();
    const wallet = await t.api.wallet(key);
    await control(t, { latencyMs: 1000 });
    const id = await fund(t, key, wallet, '900');
    const op = await t.api.waitTerminal(key, id, 30_000);
    expect(op.status).toBe('failed');
    expect(op.failure.code).toBe('gateway_unavailable');
    expect((await credits(t, [id])).size).toBe(0);
    const atGateway = (await sim(t)).charges.filter((c) => c.idempotencyKey === id);
    expect(atGateway.map((c) => c.status)).toEqual(['refunded']);
    expect(await ledgerViolations(t.pool)).toEqual([]);
    await control(t, { latencyMs: 0 });
  }, 60_000);

  it('with the gateway down, stays open until the key can be reversed, then fails (the reconciler loop ends)', async () => {
    const key = await t.api.adminKey();
    const wallet = await t.api.wallet(key);
    await control(t, { outage: true });
    const id = await fund(t, key, wallet, '900');
    // Both attempts hit the outage; the reversal cannot reach the gateway, so the job fails for good…
    const queue = (await import('../src/jobs/catalog.ts')).createSettlementQueue(t.config, t.redis);
    await until('the job to fail for good', async () => (await (await queue.getJob(id))?.getState()) === 'failed');
    // …and the operation stays open: a charge may stand, so it must not be failed yet.
    expect((await statuses(t, [id]))[0]!.status).toBe('processing');
    await control(t, { outage: false });
    const op = await t.api.waitTerminal(key, id, 30_000);
    expect(op.status).toBe('failed');
    expect(op.failure.code).toBe('gateway_unavailable');
    const atGateway = (await sim(t)).charges.filter((c) => c.idempotencyKey === id);
    expect(atGateway.map((c) => c.status)).toEqual(['voided']); // a tombstone: a late charge can never land
    expect((await credits(t, [id])).size).toBe(0);
    await sleep(2500); // a reconciler pass later, nothing changed
    expect((await statuses(t, [id]))[0]!.status).toBe('failed');
    await queue.close();
  }, 60_000);
});

describe('races of a fund with its own gateway step (no worker: each step called directly)', () => {
  let t: TestEnv;
  let shards: ShardRouter;
  let key: string;
  afterAll(async () => {
    await shards?.close();
    await t?.close();
  });
  const timeout = () => Object.assign(new Error('gateway timed out'), { code: 'ETIMEDOUT' });
  const lastAttempt = (operationId: string) => ({ id: operationId, data: { operationId }, attemptsMade: 1, opts: { attempts: 2 } }) as unknown as Job;
  const deps = (gateway: Partial<FundGateway>) =>
    ({ shards, logger: createLogger(t.config, 'gateway-race-test'), gateway: { voidKey: () => Promise.reject(new Error('voidKey must not be called')), ...gateway } }) as unknown as WorkerDeps & { gateway: FundGateway };
  /** A gateway that approves every charge, recording its key in `charged`. */
  const approvingGateway = (charged: string[]) =>
    deps({
      charge: async (req, beforeSend) => {
        await beforeSend();
        charged.push(req.idempotencyKey);
        return { status: 'approved', chargeId: `ch_${charged.length}` };
      },
    });
  const newFund = async () => {
    const wallet = await t.api.wallet(key);
    return { wallet, id: await fund(t, key, wallet, '500') };
  };
  const approve = (id: string) => t.pool.query(`INSERT INTO gateway_charges (operation_id, status, gateway_charge_id) VALUES ($1, 'approved', 'ch_test') ON CONFLICT (operation_id) DO UPDATE SET status = 'approved'`, [id]);

  it('credits a fund only with an approved charge (its wallet was refusable when the charge was skipped)', async () => {
    t = await createTestEnv({ worker: false });
    shards = ShardRouter.open(t.config, 'gateway-race-test');
    key = await t.api.adminKey();
    const { wallet, id } = await newFund();
    // The charge step skipped the gateway (the wallet was frozen then); the wallet is active now.
    await expect(settleOperation(shards.forId(id).db, id)).rejects.toBeInstanceOf(FundNotCharged);
    expect((await statuses(t, [id]))[0]!.status).toBe('pending');
    expect((await credits(t, [id])).size).toBe(0);
    await approve(id);
    expect(await settleOperation(shards.forId(id).db, id)).toMatchObject({ outcome: 'settled', status: 'succeeded' });
    expect((await t.api.request('GET', `/v1/wallets/${wallet}`, { key })).body.balance).toBe('500');
    expect(await ledgerViolations(t.pool)).toEqual([]);
  });

  it('a request of a timed-out call cannot go out after the give-up failed the fund as never charged', async () => {
    const { id } = await newFund();
    let late: (() => Promise<void>) | undefined;
    // The breaker's timeout fired before this call recorded its request; the call itself goes on.
    const step = await chargeFund(lastAttempt(id), deps({ charge: (_req, beforeSend) => ((late = beforeSend), Promise.reject(timeout())) }));
    expect(step).toEqual({ outcome: 'failed', failureCode: 'gateway_unavailable' });
    await expect(late!()).rejects.toThrow(/no charge may go out/);
    expect((await statuses(t, [id]))[0]!.status).toBe('failed');
  });

  it('the give-up credits a charge another delivery of the job had approved, and does not reverse it', async () => {
    const { id } = await newFund();
    const step = await chargeFund(
      lastAttempt(id),
      deps({
        charge: async (_req, beforeSend) => {
          await beforeSend();
          await approve(id); // another delivery of the same job: approved and recorded meanwhile
          throw timeout();
        },
      }),
    );
    expect(step).toEqual({ outcome: 'credit' });
    expect(await settleOperation(shards.forId(id).db, id)).toMatchObject({ outcome: 'settled', status: 'succeeded' });
  });

  it('a fund whose retry budget was spent before the gateway was ever asked gets one try when the reconciler re-runs it', async () => {
    // Every attempt failed before the charge step reached the gateway (a long Postgres outage, say).
    const spent = (operationId: string) => ({ ...lastAttempt(operationId), attemptsMade: 2 }) as unknown as Job;
    const charged: string[] = [];
    const approving = approvingGateway(charged);
    const { wallet, id } = await newFund();
    expect(await chargeFund(spent(id), approving)).toEqual({ outcome: 'credit' });
    expect(charged).toEqual([id]);
    expect(await settleOperation(shards.forId(id).db, id)).toMatchObject({ outcome: 'settled', status: 'succeeded' });
    expect((await t.api.request('GET', `/v1/wallets/${wallet}`, { key })).body.balance).toBe('500');

    // That one try is refused before it leaves (the breaker): the fund fails with that cause.
    const refused = await newFund();
    const failing = deps({ charge: () => Promise.reject(Object.assign(new Error('Breaker is open'), { code: 'EOPENBREAKER' })) });
    expect(await chargeFund(spent(refused.id), failing)).toEqual({ outcome: 'failed', failureCode: 'gateway_unavailable' });
    const { rows } = await t.pool.query(`SELECT status, failure_message FROM operations WHERE id = $1`, [refused.id]);
    expect(rows[0]).toEqual({ status: 'failed', failure_message: 'payment gateway unavailable: Breaker is open' });

    // That one try is sent and times out: the key is reversed, the fund fails with that cause, and
    // a later re-run of the job asks the gateway nothing more.
    const sent = await newFund();
    const voided: string[] = [];
    const timingOut = {
      ...deps({
        charge: async (_req, beforeSend) => {
          await beforeSend();
          throw timeout();
        },
      }),
    };
    timingOut.gateway.voidKey = async (req) => (voided.push(req.idempotencyKey), { status: 'voided', chargeId: 'void_1' });
    expect(await chargeFund(spent(sent.id), timingOut)).toEqual({ outcome: 'failed', failureCode: 'gateway_unavailable' });
    expect(voided).toEqual([sent.id]);
    const after = await t.pool.query(`SELECT status, failure_message FROM operations WHERE id = $1`, [sent.id]);
    expect(after.rows[0]).toEqual({ status: 'failed', failure_message: 'payment gateway unavailable: gateway timed out' });
    expect(await chargeFund(spent(sent.id), approving)).toEqual({ outcome: 'credit' }); // terminal: settling it does nothing
    expect(charged).toEqual([id]);
    expect((await statuses(t, [sent.id]))[0]!.status).toBe('failed');
    expect(await ledgerViolations(t.pool)).toEqual([]);
  });

  it('a fund whose charge request cannot be recorded (our database failing) is not given up on, even past its budget', async () => {
    const { wallet, id } = await newFund();
    // Recording the request fails for this fund only, as a Postgres error would (a failed fund could still be recorded).
    await t.pool.query(`CREATE OR REPLACE FUNCTION test_refuse_charge() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.operation_id = '${id}' AND NEW.status = 'requested' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$`);
    await t.pool.query('DROP TRIGGER IF EXISTS test_refuse_charge ON gateway_charges');
    await t.pool.query('CREATE TRIGGER test_refuse_charge BEFORE INSERT ON gateway_charges FOR EACH ROW EXECUTE FUNCTION test_refuse_charge()');
    const charged: string[] = [];
    const approving = approvingGateway(charged);
    try {
      await expect(chargeFund(lastAttempt(id), approving)).rejects.toMatchObject({ cause: { message: 'injected failure' } });
      await expect(chargeFund({ ...lastAttempt(id), attemptsMade: 2 } as unknown as Job, approving)).rejects.toMatchObject({ cause: { message: 'injected failure' } });
      expect((await statuses(t, [id]))[0]!.status).toBe('pending'); // not failed: the gateway was never asked
    } finally {
      await t.pool.query('DROP TRIGGER IF EXISTS test_refuse_charge ON gateway_charges');
    }
    // The database works again; the reconciler's re-run charges it.
    expect(await chargeFund({ ...lastAttempt(id), attemptsMade: 2 } as unknown as Job, approving)).toEqual({ outcome: 'credit' });
    expect(charged).toEqual([id]);
    expect(await settleOperation(shards.forId(id).db, id)).toMatchObject({ outcome: 'settled', status: 'succeeded' });
    expect((await t.api.request('GET', `/v1/wallets/${wallet}`, { key })).body.balance).toBe('500');
  });

  it('a fund whose wallet became creditable after its charge was skipped is charged in the same attempt, even its last', async () => {
    const { wallet, id } = await newFund();
    await t.pool.query(`UPDATE wallets SET status = 'frozen' WHERE id = $1`, [wallet]);
    const charged: string[] = [];
    const job: WorkerDeps = {
      ...approvingGateway(charged),
      publisher: t.redis,
      redisPrefix: t.config.REDIS_PREFIX,
      settle: (database, operationId) => settleOperation(database.db, operationId),
      // The charge step saw the wallet frozen and skipped the gateway; it is unfrozen before the credit.
      faultPoint: async (point) => {
        if (point === 'before-settle') await t.pool.query(`UPDATE wallets SET status = 'active' WHERE id = $1`, [wallet]);
      },
    };
    const result = await handlers['settle-fund'](id, job, createLogger(t.config, 'gateway-race-test'), lastAttempt(id));
    expect(result).toMatchObject({ outcome: 'settled', status: 'succeeded' });
    expect(charged).toEqual([id]); // charged once, in the second round
    expect((await t.api.request('GET', `/v1/wallets/${wallet}`, { key })).body.balance).toBe('500');
    expect(await ledgerViolations(t.pool)).toEqual([]);
  });
});
