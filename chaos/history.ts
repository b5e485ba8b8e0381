/**
 * The chaos run's history: one JSON line per request attempt (what was asked, what came back,
 * or the error), per fault (start and end) and per notable process event. The checker reads
 * it back from the file, so the file is the record of the run.
 */
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';

/** What a client did: submit money movement, replay an earlier key, or read. */
export type RequestKind = 'fund' | 'transfer' | 'replay' | 'read-wallet' | 'read-operation' | 'create-wallet' | 'create-api-key';

export interface TransferRequest {
  fromWalletId: string;
  toWalletId: string;
  amount: string;
}
export interface FundRequest {
  walletId: string;
  amount: string;
}

/** One HTTP attempt and its outcome. */
export interface RequestRecord {
  type: 'request';
  /** ms since the run started, when the request was sent and when it ended. */
  t: number;
  end: number;
  client: string;
  kind: RequestKind;
  /** For a replay: what was replayed. */
  op?: 'fund' | 'transfer';
  attempt: number;
  api: string;
  idempotencyKey?: string;
  body?: TransferRequest | FundRequest | Record<string, unknown>;
  /** Absent when there was no HTTP answer (connection error, timeout). */
  status?: number;
  /** The `id` of the answer: an operation's (fund, transfer, replay, read-operation) or, for create-wallet, the wallet's. */
  operationId?: string;
  replayed?: boolean;
  /** The answer's JSON body (operation, wallet or problem), or the error text. */
  answer?: unknown;
  err?: string;
}

export type FaultKind =
  | 'kill-api'
  | 'kill-worker'
  | 'redis-restart'
  | 'redis-flushall'
  | 'pg-terminate'
  | 'pg-restart'
  | 'broker-pause'
  | 'gateway-outage';

export const FAULT_KINDS: readonly FaultKind[] = [
  'kill-api',
  'kill-worker',
  'redis-restart',
  'redis-flushall',
  'pg-terminate',
  'pg-restart',
  'broker-pause',
  'gateway-outage',
];

export interface FaultRecord {
  type: 'fault';
  t: number;
  fault: FaultKind;
  phase: 'start' | 'end';
  detail?: string;
}

/** Anything else worth knowing when reading the history (process exits, phase changes). */
export interface InfoRecord {
  type: 'info';
  t: number;
  [key: string]: unknown;
}

export type HistoryRecord = RequestRecord | FaultRecord | InfoRecord;

/** Appends records to a JSONL file; `now()` is the run's clock (ms since start). */
export class HistoryWriter {
  private readonly out: WriteStream;
  readonly startedAt = Date.now();
  constructor(readonly path: string) {
    this.out = createWriteStream(path, { flags: 'w' });
  }

  now(): number {
    return Date.now() - this.startedAt;
  }

  write(record: HistoryRecord): void {
    this.out.write(`${JSON.stringify(record)}\n`);
  }

  info(fields: Record<string, unknown>): void {
    this.write({ type: 'info', t: this.now(), ...fields });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve, reject) => this.out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
}

export function readHistory(path: string): HistoryRecord[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as HistoryRecord);
}
