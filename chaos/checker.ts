/**
 * The chaos checker: a pure function of the run's history and a snapshot of every database
 * (shards, consumer tables) and of the gateway's charges, taken after recovery. It returns
 * every violation it finds, each with a kind; an empty list is a clean run. No I/O here, so
 * tests plant one violation at a time in a clean history and snapshot and drive it directly.
 */
import { ANALYTICS_EVENT_TYPES } from '../src/domain/analytics.ts';
import { firstChainProblem, type AuditRecord } from '../src/domain/audit-chain.ts';
import type { HistoryRecord, RequestRecord, TransferRequest } from './history.ts';

export const VIOLATION_KINDS = [
  /** Entries do not sum to zero (per database, per operation), clearing does not net out, or customer money ≠ money funded. */
  'money-created-or-destroyed',
  /** A fund's outcome disagrees with the gateway: succeeded without a charge, failed with one kept, a charge for no fund. */
  'charge-mismatch',
  /** A customer balance or available amount below zero, in the database or in an answer. */
  'negative-balance',
  'balance-not-sum-of-entries',
  /** Funds still held by a cross-shard transfer once every operation is terminal. */
  'hold-left-behind',
  /** Answered 202, but the operation is in no database. */
  'operation-lost',
  /** Still pending or processing after recovery. */
  'operation-not-terminal',
  /** More entries than one application writes, or two customer debit (or credit) legs for one operation. */
  'operation-applied-twice',
  /** A terminal status that its entries do not match: succeeded without its entries, failed with entries, entries for no operation. */
  'effect-mismatch',
  /** An operation in the database that no client asked for. */
  'unknown-operation',
  /** One idempotency key, two operations (in the answers or in the databases). */
  'idempotency-key-two-operations',
  /** A repeated key answered with something other than the first operation, or an operation that is not what was asked. */
  'replay-mismatch',
  /** A terminal status seen by a client that later changed (or differs from the final one). */
  'status-changed',
  /** A well-formed request for the client's own wallets refused with a 4xx other than 409 or 429. */
  'unexpected-rejection',
  /** A terminal operation with no event in the outbox, an event of the wrong type, or one never published. */
  'event-missing',
  /** A published event that some consumer never applied. */
  'event-not-consumed',
  /** A consumer that applied an event twice (duplicate records, analytics counts above the events). */
  'event-applied-twice',
  'audit-chain-broken',
  /** A subscribed event the client's webhook endpoint never received (validly signed), or a delivery given up or still pending. */
  'webhook-not-delivered',
] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export interface Violation {
  kind: ViolationKind;
  message: string;
}

export interface WalletRow {
  id: string;
  kind: 'customer' | 'settlement' | 'clearing';
  currency: string;
  balance: bigint;
  held: bigint;
}
export interface EntryRow {
  operationId: string;
  walletId: string;
  leg: 'debit' | 'credit';
  amount: bigint;
}
export interface OperationRow {
  id: string;
  clientId: string;
  type: 'fund' | 'transfer';
  status: 'pending' | 'processing' | 'succeeded' | 'failed';
  amount: bigint;
  fromWalletId: string | null;
  toWalletId: string;
  idempotencyKey: string;
  failureCode: string | null;
}
export interface IdempotencyKeyRow {
  clientId: string;
  key: string;
  operationId: string;
}
export interface OutboxRow {
  eventId: string;
  type: string;
  operationId: string | null;
  sent: boolean;
}
export interface DatabaseSnapshot {
  wallets: WalletRow[];
  entries: EntryRow[];
  operations: OperationRow[];
  idempotencyKeys: IdempotencyKeyRow[];
  outbox: OutboxRow[];
}
/** An audit_log row: the chained record and its hashes. */
export type AuditRow = AuditRecord & { prevHash: string; hash: string };
export interface Snapshot {
  /** One per shard database, in SHARD_DATABASE_URLS order (the first is the control database). */
  databases: DatabaseSnapshot[];
  consumers: {
    names: readonly string[];
    processed: { consumer: string; eventId: string }[];
    audit: AuditRow[];
    /** Hour buckets, summed per event type. */
    analytics: { eventType: string; count: bigint }[];
  };
  /** The gateway simulator's charges; its idempotency key is the fund's operation id. */
  gateway: { idempotencyKey: string; amount: string; status: string }[];
  /** The bank client's webhook endpoint: what it subscribed to, what it received, the service's delivery rows. */
  webhooks: {
    subscribed: readonly string[];
    received: { eventId: string; count: number }[];
    badSignatures: number;
    deliveries: { eventId: string; status: string }[];
  };
}

const TERMINAL = new Set(['succeeded', 'failed']);
const EVENT_TYPE: Record<string, string> = {
  'fund:succeeded': 'wallet.funded',
  'fund:failed': 'wallet.fund_failed',
  'transfer:succeeded': 'transfer.completed',
  'transfer:failed': 'transfer.failed',
};
/** Answers that say "not now", never "no": a client retries them with the same key. */
const TRANSIENT = (status: number | undefined) => status === undefined || status >= 500 || status === 409 || status === 429;
const MONEY_KINDS = new Set(['fund', 'transfer', 'replay']);

function sumBy<T>(items: Iterable<T>, f: (t: T) => bigint): bigint {
  let s = 0n;
  for (const item of items) s += f(item);
  return s;
}

function groupBy<T>(items: Iterable<T>, key: (t: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = groups.get(k);
    if (list) list.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/** Checks a chaos run; returns every violation found (empty: the run is clean). */
export function check(history: readonly HistoryRecord[], snapshot: Snapshot): Violation[] {
  const out: Violation[] = [];
  const report = (kind: ViolationKind, message: string) => out.push({ kind, message });
  checkLedger(snapshot, report);
  checkOperations(history, snapshot, report);
  checkEvents(snapshot, report);
  checkWebhooks(snapshot, report);
  return out;
}

type Report = (kind: ViolationKind, message: string) => void;

interface Located {
  op: OperationRow;
  database: number;
}

function indexOperations(snapshot: Snapshot): Map<string, Located[]> {
  const byId = new Map<string, Located[]>();
  snapshot.databases.forEach((d, database) => {
    for (const op of d.operations) byId.set(op.id, [...(byId.get(op.id) ?? []), { op, database }]);
  });
  return byId;
}

function walletDatabases(snapshot: Snapshot): Map<string, number> {
  const at = new Map<string, number>();
  snapshot.databases.forEach((d, i) => d.wallets.forEach((w) => at.set(w.id, i)));
  return at;
}

/** Money, balances and entries: what the ledger itself must satisfy. */
function checkLedger(snapshot: Snapshot, report: Report): void {
  const operations = indexOperations(snapshot);
  const walletAt = walletDatabases(snapshot);
  let customerTotal = 0n;
  let clearingTotal = 0n;
  snapshot.databases.forEach((d, i) => {
    const dbTotal = sumBy(d.entries, (e) => e.amount);
    if (dbTotal !== 0n) report('money-created-or-destroyed', `database ${i}: entries sum to ${dbTotal}, not 0`);
    const entriesOf = groupBy(d.entries, (e) => e.walletId);
    const walletIds = new Set(d.wallets.map((w) => w.id));
    for (const w of d.wallets) {
      const sum = sumBy(entriesOf.get(w.id) ?? [], (e) => e.amount);
      if (w.kind === 'clearing') clearingTotal += sum;
      if (w.kind !== 'customer') continue;
      customerTotal += w.balance;
      if (w.balance < 0n || w.balance - w.held < 0n) {
        report('negative-balance', `wallet ${w.id}: balance ${w.balance}, held ${w.held}`);
      }
      if (w.balance !== sum) report('balance-not-sum-of-entries', `wallet ${w.id}: balance ${w.balance}, entries sum to ${sum}`);
      if (w.held !== 0n) report('hold-left-behind', `wallet ${w.id}: ${w.held} still held`);
    }
    for (const walletId of entriesOf.keys()) {
      if (!walletIds.has(walletId)) report('effect-mismatch', `database ${i}: entries for wallet ${walletId}, which it does not hold`);
    }
  });
  if (clearingTotal !== 0n) report('money-created-or-destroyed', `clearing accounts net to ${clearingTotal} across databases, not 0`);

  const funded = sumBy(
    [...operations.values()].flat().filter(({ op }) => op.type === 'fund' && op.status === 'succeeded'),
    ({ op }) => op.amount,
  );
  if (customerTotal !== funded) {
    report('money-created-or-destroyed', `customer wallets hold ${customerTotal}, succeeded funds brought in ${funded} (${customerTotal - funded > 0n ? '+' : ''}${customerTotal - funded})`);
  }

  // Per operation, over all databases.
  const entriesByOp = groupBy(
    snapshot.databases.flatMap((d) => d.entries),
    (e) => e.operationId,
  );
  const customers = new Set(snapshot.databases.flatMap((d) => d.wallets.filter((w) => w.kind === 'customer').map((w) => w.id)));
  for (const [operationId, entries] of entriesByOp) {
    const sum = sumBy(entries, (e) => e.amount);
    if (sum !== 0n) report('money-created-or-destroyed', `operation ${operationId}: entries sum to ${sum}`);
    const located = operations.get(operationId);
    if (!located) {
      report('effect-mismatch', `entries for operation ${operationId}, which no database holds`);
      continue;
    }
    const { op } = located[0]!;
    const customerDebits = entries.filter((e) => e.leg === 'debit' && customers.has(e.walletId));
    const customerCredits = entries.filter((e) => e.leg === 'credit' && customers.has(e.walletId));
    const crossDatabase = op.type === 'transfer' && walletAt.get(op.fromWalletId ?? '') !== walletAt.get(op.toWalletId);
    const expected = crossDatabase ? 4 : 2;
    if (entries.length > expected || customerDebits.length > 1 || customerCredits.length > 1) {
      report('operation-applied-twice', `operation ${op.id} (${op.type}, ${op.status}): ${entries.length} entries, ${customerDebits.length} customer debits, ${customerCredits.length} customer credits`);
      continue;
    }
    if (op.status !== 'succeeded') {
      report('effect-mismatch', `operation ${op.id} is ${op.status} but has ${entries.length} entries`);
      continue;
    }
    const credit = customerCredits[0];
    const debit = customerDebits[0];
    const rightCredit = credit?.walletId === op.toWalletId && credit.amount === op.amount;
    const rightDebit = op.type === 'fund' ? debit === undefined : debit?.walletId === op.fromWalletId && debit.amount === -op.amount;
    if (entries.length !== expected || !rightCredit || !rightDebit) {
      report('effect-mismatch', `operation ${op.id} succeeded but its entries are not its effect (${entries.length} of ${expected})`);
    }
  }
  for (const located of operations.values()) {
    const { op } = located[0]!;
    if (op.status === 'succeeded' && !entriesByOp.has(op.id)) report('effect-mismatch', `operation ${op.id} succeeded with no entries`);
  }

  // The gateway: a succeeded fund is a kept charge; a failed one kept nothing.
  const charges = groupBy(snapshot.gateway, (c) => c.idempotencyKey);
  const funds = [...operations.values()].map((l) => l[0]!.op).filter((op) => op.type === 'fund');
  const fundIds = new Set(funds.map((op) => op.id));
  for (const op of funds) {
    const charge = charges.get(op.id)?.[0];
    if (op.status === 'succeeded' && (charge?.status !== 'succeeded' || BigInt(charge.amount) !== op.amount)) {
      report('charge-mismatch', `fund ${op.id} succeeded, gateway charge ${charge ? `${charge.status} ${charge.amount}` : 'missing'}`);
    }
    if (op.status === 'failed' && charge?.status === 'succeeded') report('charge-mismatch', `fund ${op.id} failed, but the customer's charge was kept`);
  }
  for (const [key, list] of charges) {
    if (!fundIds.has(key) && list.some((c) => c.status === 'succeeded')) report('charge-mismatch', `gateway charge with key ${key} for no fund operation`);
  }
}

interface KeyHistory {
  kind: 'fund' | 'transfer';
  body: Record<string, unknown> | undefined;
  records: RequestRecord[];
}

/** Operations against the history: lost, open, unknown, keys, replays, statuses. */
function checkOperations(history: readonly HistoryRecord[], snapshot: Snapshot, report: Report): void {
  const operations = indexOperations(snapshot);
  const requests = history.filter((r): r is RequestRecord => r.type === 'request');
  // Keys by their text alone: a run has one API client, so every key is that client's.
  const keys = new Map<string, KeyHistory>();
  for (const r of requests) {
    if (!MONEY_KINDS.has(r.kind) || !r.idempotencyKey) continue;
    const kind = r.kind === 'replay' ? r.op! : (r.kind as 'fund' | 'transfer');
    const entry = keys.get(r.idempotencyKey) ?? { kind, body: r.body as Record<string, unknown> | undefined, records: [] };
    entry.records.push(r);
    keys.set(r.idempotencyKey, entry);
  }

  for (const r of requests) {
    if (r.status !== undefined && r.status >= 400 && r.status < 500 && !TRANSIENT(r.status)) {
      report('unexpected-rejection', `${r.client} ${r.kind} ${r.idempotencyKey ?? ''} at ${r.t} ms: ${r.status} ${JSON.stringify(r.answer)}`);
    }
    if (r.kind === 'read-wallet' && r.status === 200) {
      const w = r.answer as { id?: string; balance?: string; available?: string };
      if ((w.balance !== undefined && BigInt(w.balance) < 0n) || (w.available !== undefined && BigInt(w.available) < 0n)) {
        report('negative-balance', `read of wallet ${w.id} at ${r.t} ms: balance ${w.balance}, available ${w.available}`);
      }
    }
  }

  for (const [key, k] of keys) {
    const accepted = k.records.filter((r) => r.status === 202);
    const ids = new Set(accepted.map((r) => r.operationId));
    if (ids.size > 1) report('idempotency-key-two-operations', `key ${key} was answered with operations ${[...ids].join(', ')}`);
    const first = accepted.sort((a, b) => a.end - b.end)[0];
    if (!first) continue;
    const firstId = first.operationId!;
    for (const r of k.records) {
      if (r.end < first.end && r.status !== 202) continue;
      if (r === first || TRANSIENT(r.status)) continue;
      if (r.status !== 202) report('replay-mismatch', `key ${key} answered ${firstId}, then ${r.status} at ${r.t} ms`);
      else if (r.operationId !== firstId) report('replay-mismatch', `key ${key} answered ${firstId}, then ${r.operationId} at ${r.t} ms`);
      else if (!answerMatches(k, r.answer)) report('replay-mismatch', `key ${key}: answer at ${r.t} ms does not describe the request`);
    }
    if (!answerMatches(k, first.answer)) report('replay-mismatch', `key ${key}: the 202 does not describe the request`);
    if (!operations.has(firstId)) report('operation-lost', `key ${key}: 202 with operation ${firstId} at ${first.t} ms, in no database`);
  }

  const byKey = new Map<string, Located[]>();
  for (const located of operations.values()) {
    for (const l of located) byKey.set(`${l.op.clientId}\0${l.op.idempotencyKey}`, [...(byKey.get(`${l.op.clientId}\0${l.op.idempotencyKey}`) ?? []), l]);
  }
  for (const [clientKey, list] of byKey) {
    if (new Set(list.map((l) => l.op.id)).size > 1) {
      report('idempotency-key-two-operations', `key ${clientKey.split('\0')[1]} names operations ${list.map((l) => `${l.op.id} (db ${l.database})`).join(', ')}`);
    }
  }
  const claimed = new Map<string, string>();
  for (const d of snapshot.databases) for (const k of d.idempotencyKeys) claimed.set(`${k.clientId}\0${k.key}`, k.operationId);
  for (const located of operations.values()) {
    const { op } = located[0]!;
    if (located.length > 1) report('idempotency-key-two-operations', `operation ${op.id} is in ${located.length} databases`);
    const claim = claimed.get(`${op.clientId}\0${op.idempotencyKey}`);
    if (claim !== undefined && claim !== op.id) report('idempotency-key-two-operations', `key ${op.idempotencyKey} is claimed by ${claim}, but operation ${op.id} holds it`);
    if (!TERMINAL.has(op.status)) report('operation-not-terminal', `operation ${op.id} (${op.type}) is still ${op.status}`);
    const asked = keys.get(op.idempotencyKey);
    if (!asked) {
      report('unknown-operation', `operation ${op.id} (key ${op.idempotencyKey}) was never requested`);
      continue;
    }
    const body = asked.body ?? {};
    const same =
      asked.kind === op.type &&
      String(body.amount) === op.amount.toString() &&
      (op.type === 'fund' ? body.walletId === op.toWalletId : body.fromWalletId === op.fromWalletId && body.toWalletId === op.toWalletId);
    if (!same) report('replay-mismatch', `operation ${op.id} (key ${op.idempotencyKey}) is not what was requested`);
  }

  // Terminal statuses seen by clients never change, and are the final ones. A read counts as
  // later only if it was sent after the terminal answer arrived (overlapping reads may differ).
  const seen = new Map<string, { status: string; end: number }>();
  for (const r of [...requests].sort((a, b) => a.end - b.end)) {
    if (r.kind !== 'read-operation' || r.status !== 200) continue;
    const op = r.answer as { id: string; status: string };
    const before = seen.get(op.id);
    if (before && r.t > before.end && before.status !== op.status) {
      report('status-changed', `operation ${op.id} was ${before.status} at ${before.end} ms, then ${op.status} at ${r.t} ms`);
    }
    if (TERMINAL.has(op.status) && !before) seen.set(op.id, { status: op.status, end: r.end });
  }
  for (const [id, { status }] of seen) {
    const final = operations.get(id)?.[0]?.op.status;
    if (final !== undefined && final !== status) report('status-changed', `operation ${id} was seen ${status}, is ${final} at the end`);
  }
}

/** Does a 202 body describe the operation the key's request asked for? */
function answerMatches(k: KeyHistory, answer: unknown): boolean {
  const a = answer as { type?: string; amount?: string; fromWalletId?: string; toWalletId?: string } | undefined;
  if (!a) return false;
  const body = (k.body ?? {}) as Partial<TransferRequest> & { walletId?: string };
  if (a.type !== k.kind || a.amount !== body.amount) return false;
  return k.kind === 'fund' ? a.toWalletId === body.walletId : a.fromWalletId === body.fromWalletId && a.toWalletId === body.toWalletId;
}

/** Outbox → broker → consumers: every terminal operation announced once, every event applied once by every consumer. */
function checkEvents(snapshot: Snapshot, report: Report): void {
  const outbox = snapshot.databases.flatMap((d) => d.outbox);
  const byOperation = groupBy(
    outbox.filter((e) => e.operationId !== null && !e.type.startsWith('risk.')),
    (e) => e.operationId!,
  );
  for (const d of snapshot.databases) {
    for (const op of d.operations) {
      if (!TERMINAL.has(op.status)) continue;
      const events = byOperation.get(op.id) ?? [];
      const want = EVENT_TYPE[`${op.type}:${op.status}`];
      if (events.length !== 1) report('event-missing', `operation ${op.id} (${op.type} ${op.status}) has ${events.length} outbox events`);
      else if (events[0]!.type !== want) report('event-missing', `operation ${op.id} (${op.type} ${op.status}) announced as ${events[0]!.type}`);
      else if (!events[0]!.sent) report('event-missing', `operation ${op.id}: its event ${events[0]!.eventId} was never published`);
    }
  }

  const sent = outbox.filter((e) => e.sent);
  const typeOf = new Map(outbox.map((e) => [e.eventId, e.type]));
  const processed = groupBy(snapshot.consumers.processed, (p) => p.consumer);
  for (const name of snapshot.consumers.names) {
    const mine = processed.get(name) ?? [];
    const ids = new Set(mine.map((p) => p.eventId));
    if (ids.size !== mine.length) report('event-applied-twice', `consumer ${name} recorded ${mine.length - ids.size} events twice`);
    const missing = sent.filter((e) => !ids.has(e.eventId));
    if (missing.length > 0) report('event-not-consumed', `consumer ${name} never applied ${missing.length} published events (first ${missing[0]!.eventId}, ${missing[0]!.type})`);
  }
  const audited = new Set(snapshot.consumers.audit.map((a) => a.eventId));
  if (audited.size !== snapshot.consumers.audit.length) {
    report('event-applied-twice', `the audit log holds ${snapshot.consumers.audit.length - audited.size} events twice`);
  }
  const unaudited = sent.filter((e) => !audited.has(e.eventId));
  if (unaudited.length > 0) report('event-not-consumed', `${unaudited.length} published events are not in the audit log (first ${unaudited[0]!.eventId})`);

  // Analytics: each counted event once; its counters equal the distinct events it applied.
  const applied = new Set((processed.get('analytics') ?? []).map((p) => p.eventId));
  for (const type of ANALYTICS_EVENT_TYPES) {
    const distinct = [...applied].filter((id) => typeOf.get(id) === type).length;
    const counted = sumBy(
      snapshot.consumers.analytics.filter((a) => a.eventType === type),
      (a) => a.count,
    );
    if (counted > BigInt(distinct)) report('event-applied-twice', `analytics counts ${counted} ${type} events, but applied ${distinct} distinct ones`);
    else if (counted < BigInt(distinct)) report('event-not-consumed', `analytics counts ${counted} ${type} events, but recorded ${distinct} as applied`);
  }

  const chain = firstChainProblem([...snapshot.consumers.audit].sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0)));
  if (chain) report('audit-chain-broken', `audit record ${chain.seq} (${chain.eventId}): ${chain.reason}`);
}

/** Every subscribed event the webhooks consumer applied reached the endpoint at least once, signed. */
function checkWebhooks(snapshot: Snapshot, report: Report): void {
  const { subscribed, received, badSignatures, deliveries } = snapshot.webhooks;
  const applied = new Set(snapshot.consumers.processed.filter((p) => p.consumer === 'webhooks').map((p) => p.eventId));
  const got = new Set(received.filter((r) => r.count > 0).map((r) => r.eventId));
  const missing = snapshot.databases
    .flatMap((d) => d.outbox)
    .filter((e) => e.sent && subscribed.includes(e.type) && applied.has(e.eventId) && !got.has(e.eventId));
  if (missing.length > 0) {
    report('webhook-not-delivered', `${missing.length} subscribed events never reached the endpoint (first ${missing[0]!.eventId}, ${missing[0]!.type})`);
  }
  const pending = deliveries.filter((d) => d.status === 'pending');
  if (pending.length > 0) report('webhook-not-delivered', `${pending.length} deliveries still pending after recovery (first for event ${pending[0]!.eventId})`);
  const failed = deliveries.filter((d) => d.status === 'failed');
  if (failed.length > 0) report('webhook-not-delivered', `${failed.length} deliveries were given up (first for event ${failed[0]!.eventId})`);
  if (badSignatures > 0) report('webhook-not-delivered', `${badSignatures} deliveries had a bad signature`);
}
