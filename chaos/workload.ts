/**
 * The bank workload (Jepsen's bank test, adapted to an asynchronous API): a fixed set of
 * wallets funded once, then concurrent clients moving money among them with a fresh
 * Idempotency-Key per transfer, retrying transient failures (no answer, 5xx, 409 in flight,
 * 429) with the SAME key and body on the next api process, as a careful real client would; now
 * and then replaying an earlier key on purpose, and reading balances and operations. Every
 * attempt goes into the history.
 */
import { randomUUID } from 'node:crypto';
import { createLedgerlineClient, LedgerlineError, type LedgerlineClient } from '../src/client/ledgerline-client.ts';
import { databaseIndexOf } from '../test/support/env.ts';
import type { FundRequest, HistoryWriter, RequestRecord, TransferRequest } from './history.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** mulberry32: a small seeded PRNG, so a run's choices can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface WorkloadOptions {
  clients: number;
  wallets: number;
  databases: number;
  /** Pause between a client's operations. */
  thinkMs: number;
  requestTimeoutMs: number;
  /** Every wallet gets this much once, before the faults start. */
  initialFundMinor: bigint;
  maxTransferMinor: number;
  seed: number;
}

export interface WorkloadStats {
  requests: number;
  /** Answers by HTTP status, and errors without an answer by kind (timeout, refused, reset…). */
  byStatus: Record<string, number>;
  errors: Record<string, number>;
  retries: number;
  accepted: { fund: number; transfer: number };
  /** Operations given up after the grace period without a 202. */
  gaveUp: number;
  replays: number;
  reads: number;
  fundsDuringOutage: number;
}

interface Accepted {
  kind: 'fund' | 'transfer';
  key: string;
  body: TransferRequest | FundRequest;
  operationId: string;
}

const isRetryable = (r: RequestRecord) => r.status === undefined || r.status >= 500 || r.status === 409 || r.status === 429;

function errorKind(err: unknown): string {
  const e = err as { name?: string; cause?: { code?: string }; code?: string };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'timeout';
  return e.cause?.code ?? e.code ?? e.name ?? 'error';
}

export class BankWorkload {
  readonly stats: WorkloadStats = {
    requests: 0,
    byStatus: {},
    errors: {},
    retries: 0,
    accepted: { fund: 0, transfer: 0 },
    gaveUp: 0,
    replays: 0,
    reads: 0,
    fundsDuringOutage: 0,
  };
  wallets: string[] = [];
  /** Set by the nemesis while the gateway is out: clients then also fund wallets. */
  gatewayOutage = false;
  private stopping = false;
  /** While running, clients retry forever; once stopping, until this instant. */
  private giveUpAt = Number.POSITIVE_INFINITY;
  private apiTurn = 0;
  private readonly clients: LedgerlineClient[];
  private readonly random: () => number;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly history: HistoryWriter,
    private readonly apiUrls: string[],
    private readonly apiKey: string,
    private readonly options: WorkloadOptions,
  ) {
    this.random = seededRandom(options.seed);
    const timeoutMs = options.requestTimeoutMs;
    this.clients = apiUrls.map((baseUrl) =>
      // retries: false: the workload retries itself (against the next API process) and records every attempt.
      createLedgerlineClient({ baseUrl, apiKey, retries: false, fetch: (request) => fetch(request, { signal: AbortSignal.timeout(timeoutMs) }) }),
    );
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  /** Round robin over the api processes: a dead one costs one failed attempt, then the next is tried. */
  private nextApi(): number {
    this.apiTurn = (this.apiTurn + 1) % this.clients.length;
    return this.apiTurn;
  }

  /** One HTTP attempt, recorded whatever happens. */
  private async call(
    fields: Pick<RequestRecord, 'client' | 'kind' | 'attempt' | 'idempotencyKey' | 'body' | 'op'>,
    send: (client: LedgerlineClient) => Promise<{ data: unknown; response: Response }>,
  ): Promise<RequestRecord> {
    const api = this.nextApi();
    const t = this.history.now();
    const record: RequestRecord = { type: 'request', t, end: t, api: this.apiUrls[api]!, ...fields };
    try {
      const { data, response } = await send(this.clients[api]!);
      record.status = response.status;
      const id = (data as { id?: unknown }).id;
      if (typeof id === 'string') record.operationId = id;
      if (response.headers.get('idempotent-replayed') === 'true') record.replayed = true;
      record.answer = data;
    } catch (err) {
      if (err instanceof LedgerlineError) {
        record.status = err.status;
        record.answer = err.problem;
      } else {
        const kind = errorKind(err);
        record.err = `${kind}: ${(err as Error).message}`;
        this.stats.errors[kind] = (this.stats.errors[kind] ?? 0) + 1;
      }
    }
    record.end = this.history.now();
    this.stats.requests++;
    if (record.status !== undefined) this.stats.byStatus[record.status] = (this.stats.byStatus[record.status] ?? 0) + 1;
    this.history.write(record);
    return record;
  }

  /** Submits a fund or transfer until it is accepted (202) or refused for good; returns the operation id if accepted. */
  private async submit(client: string, kind: 'fund' | 'transfer', key: string, body: TransferRequest | FundRequest): Promise<string | undefined> {
    for (let attempt = 1; ; attempt++) {
      const record = await this.call({ client, kind, attempt, idempotencyKey: key, body }, (c) =>
        kind === 'fund'
          ? c.funds.create((body as FundRequest).walletId, { amount: body.amount }, { idempotencyKey: key })
          : c.transfers.create(body as TransferRequest, { idempotencyKey: key }),
      );
      if (record.status === 202 && record.operationId) {
        this.stats.accepted[kind]++;
        return record.operationId;
      }
      if (!isRetryable(record)) return undefined;
      if (Date.now() > this.giveUpAt) {
        this.stats.gaveUp++;
        return undefined;
      }
      this.stats.retries++;
      await sleep(Math.min(2000, 50 * 2 ** Math.min(attempt, 6)) * (0.5 + this.random() / 2));
    }
  }

  /** Creates the wallets (spread evenly over the shard databases) and funds each once. */
  async setup(): Promise<void> {
    const perDatabase = Math.ceil(this.options.wallets / this.options.databases);
    const counts = new Map<number, number>();
    for (let tries = 0; this.wallets.length < this.options.wallets; tries++) {
      if (tries > this.options.wallets * 20) throw new Error('could not spread wallets over the databases');
      const record = await this.call({ client: 'setup', kind: 'create-wallet', attempt: 1, body: { currency: 'USD' } }, (c) =>
        c.wallets.create({ currency: 'USD' }),
      );
      if (record.status !== 201 || !record.operationId) throw new Error(`create wallet: ${record.status} ${record.err ?? ''}`);
      const db = databaseIndexOf(record.operationId, this.options.databases);
      if ((counts.get(db) ?? 0) >= perDatabase) continue; // an extra wallet, left at zero
      counts.set(db, (counts.get(db) ?? 0) + 1);
      this.wallets.push(record.operationId);
    }
    const amount = this.options.initialFundMinor.toString();
    const ids = await Promise.all(this.wallets.map((walletId) => this.submit('setup', 'fund', `setup-fund-${walletId}`, { walletId, amount })));
    // Long polls (up to 30 s each) need a client without the workload's request timeout: on a
    // loaded machine the first funds can take longer than that to settle (workers starting up).
    const waiter = createLedgerlineClient({ baseUrl: this.apiUrls[0]!, apiKey: this.apiKey });
    for (const id of ids) {
      if (!id) throw new Error('an initial fund was not accepted');
      const op = await waiter.operations.wait(id, { timeoutMs: 120_000 });
      if (op.status !== 'succeeded') throw new Error(`initial fund ${id} ${op.status}`);
    }
  }

  start(): void {
    this.loops = Array.from({ length: this.options.clients }, (_, i) => this.clientLoop(`c${i}`));
  }

  /** Stops issuing new operations; in-flight ones keep retrying for up to `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.giveUpAt = Date.now() + graceMs;
    await Promise.all(this.loops);
  }

  private async clientLoop(client: string): Promise<void> {
    const accepted: Accepted[] = [];
    for (let n = 0; !this.stopping; n++) {
      const r = this.random();
      if (this.gatewayOutage && r < 0.3) {
        // Money in while the gateway is away: accepted now, charged once it is back.
        const walletId = this.pick(this.wallets);
        const body: FundRequest = { walletId, amount: String(100 + Math.floor(this.random() * 400)) };
        const key = `${client}-f${n}-${randomUUID()}`;
        this.stats.fundsDuringOutage++;
        const id = await this.submit(client, 'fund', key, body);
        if (id) accepted.push({ kind: 'fund', key, body, operationId: id });
      } else if (r < 0.05 && accepted.length > 0) {
        const earlier = this.pick(accepted);
        this.stats.replays++;
        await this.call({ client, kind: 'replay', op: earlier.kind, attempt: 1, idempotencyKey: earlier.key, body: earlier.body }, (c) =>
          earlier.kind === 'fund'
            ? c.funds.create((earlier.body as FundRequest).walletId, { amount: earlier.body.amount }, { idempotencyKey: earlier.key })
            : c.transfers.create(earlier.body as TransferRequest, { idempotencyKey: earlier.key }),
        );
      } else if (r < 0.1) {
        this.stats.reads++;
        const walletId = this.pick(this.wallets);
        await this.call({ client, kind: 'read-wallet', attempt: 1, body: { walletId } }, (c) => c.wallets.get(walletId));
      } else if (r < 0.13 && accepted.length > 0) {
        this.stats.reads++;
        const { operationId } = this.pick(accepted);
        await this.call({ client, kind: 'read-operation', attempt: 1, body: { operationId } }, (c) => c.operations.get(operationId));
      } else {
        const from = this.pick(this.wallets);
        let to = this.pick(this.wallets);
        while (to === from) to = this.pick(this.wallets);
        const body: TransferRequest = { fromWalletId: from, toWalletId: to, amount: String(1 + Math.floor(this.random() * this.options.maxTransferMinor)) };
        const key = `${client}-t${n}-${randomUUID()}`;
        const id = await this.submit(client, 'transfer', key, body);
        if (id) accepted.push({ kind: 'transfer', key, body, operationId: id });
      }
      if (this.options.thinkMs > 0) await sleep(this.options.thinkMs * (0.5 + this.random()));
    }
  }
}
