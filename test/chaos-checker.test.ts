/**
 * The chaos checker on a small synthetic run: a clean history and snapshot (funds, same- and
 * cross-database transfers, a declined fund, an overdraft, replays, reads, events consumed by
 * all four consumers, a valid audit chain) has no violation; then, for each violation kind,
 * one planted fault in a fresh copy makes the checker report that kind.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { check, VIOLATION_KINDS, type DatabaseSnapshot, type OperationRow, type Snapshot, type ViolationKind } from '../chaos/checker.ts';
import type { HistoryRecord, RequestRecord } from '../chaos/history.ts';
import { ANALYTICS_EVENT_TYPES } from '../src/domain/analytics.ts';
import { auditHash, GENESIS_HASH } from '../src/domain/audit-chain.ts';

const CONSUMERS = ['audit', 'analytics', 'fraud', 'webhooks'];

/** A tiny ledger that writes what the real service writes, and the history a client would record. */
class SyntheticRun {
  readonly clientId = randomUUID();
  readonly databases: DatabaseSnapshot[] = [0, 1].map(() => ({ wallets: [], entries: [], operations: [], idempotencyKeys: [], outbox: [] }));
  readonly history: HistoryRecord[] = [];
  readonly gateway: Snapshot['gateway'] = [];
  private t = 0;
  private readonly internal = this.databases.map((d) => {
    const settlement = randomUUID();
    const clearing = randomUUID();
    d.wallets.push({ id: settlement, kind: 'settlement', currency: 'USD', balance: 0n, held: 0n });
    d.wallets.push({ id: clearing, kind: 'clearing', currency: 'USD', balance: 0n, held: 0n });
    return { settlement, clearing };
  });

  private dbOf(walletId: string): number {
    return this.databases.findIndex((d) => d.wallets.some((w) => w.id === walletId));
  }

  private wallet(walletId: string) {
    return this.databases[this.dbOf(walletId)]!.wallets.find((w) => w.id === walletId)!;
  }

  private entry(db: number, operationId: string, walletId: string, amount: bigint) {
    this.databases[db]!.entries.push({ operationId, walletId, leg: amount < 0n ? 'debit' : 'credit', amount });
    const w = this.databases[db]!.wallets.find((x) => x.id === walletId)!;
    if (w.kind === 'customer') w.balance += amount;
  }

  request(fields: Partial<RequestRecord> & Pick<RequestRecord, 'kind'>): RequestRecord {
    const record: RequestRecord = { type: 'request', t: this.t++, end: this.t++, client: 'c0', attempt: 1, api: 'http://api-0', ...fields };
    this.history.push(record);
    return record;
  }

  createWallet(db: number): string {
    const id = randomUUID();
    this.databases[db]!.wallets.push({ id, kind: 'customer', currency: 'USD', balance: 0n, held: 0n });
    this.databases[db]!.outbox.push({ eventId: randomUUID(), type: 'wallet.created', operationId: null, sent: true });
    return id;
  }

  private operation(type: 'fund' | 'transfer', key: string, amount: bigint, from: string | null, to: string, body: Record<string, string>) {
    const op: OperationRow = {
      id: randomUUID(),
      clientId: this.clientId,
      type,
      status: 'pending',
      amount,
      fromWalletId: from,
      toWalletId: to,
      idempotencyKey: key,
      failureCode: null,
    };
    this.databases[this.dbOf(from ?? to)]!.operations.push(op);
    this.databases[0]!.idempotencyKeys.push({ clientId: this.clientId, key, operationId: op.id });
    // A first attempt lost to a dead api, then the 202 on the retry.
    this.request({ kind: type, idempotencyKey: key, body, err: 'ECONNREFUSED: fetch failed' });
    const answer = { id: op.id, type, status: 'pending', amount: String(amount), currency: 'USD', toWalletId: to, ...(from ? { fromWalletId: from } : {}) };
    this.request({ kind: type, attempt: 2, idempotencyKey: key, body, status: 202, operationId: op.id, answer });
    return op;
  }

  private finish(op: OperationRow, ok: boolean, failureCode?: string) {
    op.status = ok ? 'succeeded' : 'failed';
    op.failureCode = failureCode ?? null;
    const type = `${op.type === 'fund' ? 'wallet' : 'transfer'}.${op.type === 'fund' ? (ok ? 'funded' : 'fund_failed') : ok ? 'completed' : 'failed'}`;
    this.databases[this.dbOf(op.fromWalletId ?? op.toWalletId)]!.outbox.push({ eventId: randomUUID(), type, operationId: op.id, sent: true });
    this.request({ kind: 'read-operation', body: { operationId: op.id }, status: 200, answer: { id: op.id, status: op.status } });
  }

  fund(walletId: string, amount: bigint, declined = false): OperationRow {
    const op = this.operation('fund', `fund-${randomUUID()}`, amount, null, walletId, { walletId, amount: String(amount) });
    this.gateway.push({ idempotencyKey: op.id, amount: String(amount), status: declined ? 'declined' : 'succeeded' });
    const db = this.dbOf(walletId);
    if (!declined) {
      this.entry(db, op.id, this.internal[db]!.settlement, -amount);
      this.entry(db, op.id, walletId, amount);
    }
    this.finish(op, !declined, declined ? 'payment_declined' : undefined);
    return op;
  }

  transfer(from: string, to: string, amount: bigint): OperationRow {
    const op = this.operation('transfer', `tr-${randomUUID()}`, amount, from, to, { fromWalletId: from, toWalletId: to, amount: String(amount) });
    if (this.wallet(from).balance < amount) {
      this.finish(op, false, 'insufficient_funds');
      return op;
    }
    const [a, b] = [this.dbOf(from), this.dbOf(to)];
    if (a === b) {
      this.entry(a, op.id, from, -amount);
      this.entry(a, op.id, to, amount);
    } else {
      this.entry(a, op.id, from, -amount);
      this.entry(a, op.id, this.internal[a]!.clearing, amount);
      this.entry(b, op.id, this.internal[b]!.clearing, -amount);
      this.entry(b, op.id, to, amount);
    }
    this.finish(op, true);
    return op;
  }

  /** Every published event applied once by every consumer; the audit chain and analytics to match. */
  snapshot(): Snapshot {
    const events = this.databases.flatMap((d) => d.outbox).filter((e) => e.sent);
    const audit: Snapshot['consumers']['audit'] = [];
    let prevHash = GENESIS_HASH;
    for (const [i, e] of events.entries()) {
      const record = { seq: BigInt(i + 1), eventId: e.eventId, eventType: e.type, subject: null, eventTime: '2026-01-01T00:00:00.000Z', payload: { n: i } };
      const hash = auditHash(prevHash, record);
      audit.push({ ...record, prevHash, hash });
      prevHash = hash;
    }
    const analytics = ANALYTICS_EVENT_TYPES.map((eventType) => ({ eventType, count: BigInt(events.filter((e) => e.type === eventType).length) }));
    // The client's endpoint got every subscribed event, one of them twice (at least once is the promise).
    const subscribed = ['wallet.created', 'wallet.funded', 'transfer.completed'];
    const delivered = events.filter((e) => subscribed.includes(e.type));
    return {
      databases: this.databases,
      consumers: {
        names: CONSUMERS,
        processed: CONSUMERS.flatMap((consumer) => events.map((e) => ({ consumer, eventId: e.eventId }))),
        audit,
        analytics,
      },
      gateway: this.gateway,
      webhooks: {
        subscribed,
        received: delivered.map((e, i) => ({ eventId: e.eventId, count: i === 0 ? 2 : 1 })),
        badSignatures: 0,
        deliveries: delivered.map((e) => ({ eventId: e.eventId, status: 'succeeded' })),
      },
    };
  }
}

interface Run {
  history: HistoryRecord[];
  snapshot: Snapshot;
  /** Wallets a, b in database 0, c in database 1; operations by role. */
  wallets: { a: string; b: string; c: string };
  ops: { fundA: OperationRow; sameDb: OperationRow; crossDb: OperationRow; overdraft: OperationRow; declined: OperationRow };
}

function cleanRun(): Run {
  const run = new SyntheticRun();
  const a = run.createWallet(0);
  const b = run.createWallet(0);
  const c = run.createWallet(1);
  const fundA = run.fund(a, 1000n);
  run.fund(b, 500n);
  run.fund(c, 700n);
  const declined = run.fund(c, 300n, true);
  const sameDb = run.transfer(a, b, 200n);
  const crossDb = run.transfer(b, c, 600n);
  const overdraft = run.transfer(c, a, 5000n);
  run.transfer(c, b, 100n);
  // A deliberate replay of an earlier key, answered with the same operation.
  const first = run.history.find((r): r is RequestRecord => r.type === 'request' && r.status === 202 && r.operationId === sameDb.id)!;
  run.request({ kind: 'replay', op: 'transfer', idempotencyKey: first.idempotencyKey, body: first.body, status: 202, operationId: sameDb.id, replayed: true, answer: first.answer });
  run.request({ kind: 'read-wallet', body: { walletId: a }, status: 200, answer: { id: a, balance: '800', available: '800' } });
  // Faults are part of a history too; the checker ignores them.
  run.history.push({ type: 'fault', t: 3, fault: 'kill-api', phase: 'start' }, { type: 'fault', t: 5, fault: 'kill-api', phase: 'end' });
  return { history: run.history, snapshot: run.snapshot(), wallets: { a, b, c }, ops: { fundA, sameDb, crossDb, overdraft, declined } };
}

const requests = (r: Run) => r.history.filter((x): x is RequestRecord => x.type === 'request');
const dbOfOp = (r: Run, id: string) => r.snapshot.databases.find((d) => d.operations.some((o) => o.id === id))!;
const walletRow = (r: Run, id: string) => r.snapshot.databases.flatMap((d) => d.wallets).find((w) => w.id === id)!;

/** One planted violation per kind, each on a fresh clean run. */
const PLANTS: Record<ViolationKind, (r: Run) => void> = {
  'money-created-or-destroyed': (r) => {
    // A fund's credit is 50 more than its settlement debit: money from nowhere.
    const credit = dbOfOp(r, r.ops.fundA.id).entries.find((e) => e.operationId === r.ops.fundA.id && e.leg === 'credit')!;
    credit.amount += 50n;
    walletRow(r, r.wallets.a).balance += 50n;
  },
  'charge-mismatch': (r) => {
    r.snapshot.gateway.find((c) => c.idempotencyKey === r.ops.fundA.id)!.status = 'refunded';
  },
  'negative-balance': (r) => {
    const read = requests(r).find((x) => x.kind === 'read-wallet')!;
    read.answer = { ...(read.answer as object), available: '-40' };
  },
  'balance-not-sum-of-entries': (r) => {
    walletRow(r, r.wallets.b).balance += 1n;
  },
  'hold-left-behind': (r) => {
    walletRow(r, r.wallets.a).held = 100n;
  },
  'operation-lost': (r) => {
    const db = dbOfOp(r, r.ops.overdraft.id);
    db.operations = db.operations.filter((o) => o.id !== r.ops.overdraft.id);
    db.outbox = db.outbox.filter((e) => e.operationId !== r.ops.overdraft.id);
  },
  'operation-not-terminal': (r) => {
    r.ops.overdraft.status = 'pending';
  },
  'operation-applied-twice': (r) => {
    // The same-database transfer applied a second time, balances and all.
    const { sameDb } = r.ops;
    const db = dbOfOp(r, sameDb.id);
    db.entries.push(...db.entries.filter((e) => e.operationId === sameDb.id).map((e) => ({ ...e })));
    walletRow(r, sameDb.fromWalletId!).balance -= sameDb.amount;
    walletRow(r, sameDb.toWalletId).balance += sameDb.amount;
  },
  'effect-mismatch': (r) => {
    // The overdraft failed, yet moved its money (both sides, balances and all).
    const { overdraft } = r.ops;
    dbOfOp(r, overdraft.id).entries.push({ operationId: overdraft.id, walletId: overdraft.fromWalletId!, leg: 'debit', amount: -10n });
    r.snapshot.databases[0]!.entries.push({ operationId: overdraft.id, walletId: overdraft.toWalletId, leg: 'credit', amount: 10n });
    walletRow(r, overdraft.fromWalletId!).balance -= 10n;
    walletRow(r, overdraft.toWalletId).balance += 10n;
  },
  'unknown-operation': (r) => {
    r.ops.declined.idempotencyKey = 'never-sent';
    r.snapshot.databases[0]!.idempotencyKeys.find((k) => k.operationId === r.ops.declined.id)!.key = 'never-sent';
  },
  'idempotency-key-two-operations': (r) => {
    r.snapshot.databases[0]!.idempotencyKeys.find((k) => k.operationId === r.ops.crossDb.id)!.operationId = randomUUID();
  },
  'replay-mismatch': (r) => {
    const replay = requests(r).find((x) => x.kind === 'replay')!;
    replay.answer = { ...(replay.answer as object), amount: '999' };
  },
  'status-changed': (r) => {
    const read = requests(r).find((x) => x.kind === 'read-operation' && (x.answer as { id: string }).id === r.ops.crossDb.id)!;
    r.history.push({ ...read, t: 1000, end: 1001, answer: { id: r.ops.crossDb.id, status: 'failed' } });
  },
  'unexpected-rejection': (r) => {
    r.history.push({
      type: 'request', t: 900, end: 901, client: 'c1', kind: 'transfer', attempt: 1, api: 'http://api-1', idempotencyKey: 'tr-x',
      body: { fromWalletId: r.wallets.a, toWalletId: r.wallets.b, amount: '1' }, status: 404, answer: { code: 'wallet_not_found' },
    });
  },
  'event-missing': (r) => {
    dbOfOp(r, r.ops.crossDb.id).outbox.find((e) => e.operationId === r.ops.crossDb.id)!.sent = false;
  },
  'event-not-consumed': (r) => {
    const event = dbOfOp(r, r.ops.sameDb.id).outbox.find((e) => e.operationId === r.ops.sameDb.id)!;
    r.snapshot.consumers.processed = r.snapshot.consumers.processed.filter((p) => !(p.consumer === 'fraud' && p.eventId === event.eventId));
  },
  'event-applied-twice': (r) => {
    r.snapshot.consumers.analytics.find((a) => a.eventType === 'transfer.completed')!.count += 1n;
  },
  'audit-chain-broken': (r) => {
    r.snapshot.consumers.audit[2]!.payload = { edited: true };
  },
  'webhook-not-delivered': (r) => {
    // Redis lost the delivery's job: the endpoint never heard of this transfer.
    const event = dbOfOp(r, r.ops.crossDb.id).outbox.find((e) => e.operationId === r.ops.crossDb.id)!;
    r.snapshot.webhooks.received = r.snapshot.webhooks.received.filter((x) => x.eventId !== event.eventId);
  },
};

describe('chaos checker', () => {
  it('finds nothing wrong with a clean run', () => {
    const r = cleanRun();
    expect(check(r.history, r.snapshot)).toEqual([]);
    // The run is not trivial: it has every path the checker reasons about.
    const ops = r.snapshot.databases.flatMap((d) => d.operations);
    expect(ops.filter((o) => o.status === 'failed').length).toBe(2);
    expect(r.snapshot.databases[1]!.entries.some((e) => e.operationId === r.ops.crossDb.id)).toBe(true);
  });

  it('has a planted violation for every kind', () => {
    expect(Object.keys(PLANTS).sort()).toEqual([...VIOLATION_KINDS].sort());
  });

  it.each(VIOLATION_KINDS)('reports %s', (kind) => {
    const r = cleanRun();
    PLANTS[kind](r);
    const violations = check(r.history, r.snapshot);
    expect(violations.map((v) => v.kind)).toContain(kind);
  });
});
