/**
 * One chaos run: a private world, the bank workload, the nemesis on a schedule, recovery
 * (heal, stop the clients, wait until every operation is terminal, the outbox empty and every
 * consumer caught up), then a snapshot and the checker. Writes history.jsonl, report.json and
 * report.md (and the processes' logs) into `outDir`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createLedgerlineAdminClient, createLedgerlineClient } from '../src/client/ledgerline-client.ts';
import { check, type Snapshot, type Violation } from './checker.ts';
import { FAULT_KINDS, HistoryWriter, readHistory, type FaultKind } from './history.ts';
import { Nemesis, type FaultLog } from './nemesis.ts';
import { renderMarkdown } from './report.ts';
import { isQuiet, openPools, readProgress, readSnapshot, type Progress } from './snapshot.ts';
import { systemViolations } from '../test/support/env.ts';
import { BankWorkload, type WorkloadStats } from './workload.ts';
import { CHAOS_ADMIN_TOKEN, CONSUMERS, World } from './world.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const WEBHOOK_EVENTS = ['wallet.created', 'wallet.funded', 'wallet.fund_failed', 'transfer.completed', 'transfer.failed'] as const;

export interface ChaosOptions {
  /** Seconds of workload under faults. */
  durationS: number;
  /** Calm seconds between one fault's end and the next one's start. */
  intervalS: number;
  /** How long a broker pause or gateway outage lasts. */
  faultS: number;
  clients: number;
  wallets: number;
  databases: number;
  apis: number;
  workers: number;
  thinkMs: number;
  seed: number;
  outDir: string;
  /**
   * How long the wait for quiet after the faults goes on with nothing moving (no operation
   * settled, no event published or consumed, no webhook sent): a stall, which the checker then
   * reports. A backlog that keeps draining is waited for, up to MAX_RECOVERY_S in all.
   */
  recoveryTimeoutS: number;
  faults?: readonly FaultKind[];
  progress?: (line: string) => void;
}

/** The longest wait for quiet after the faults, however steadily the backlog drains. */
export const MAX_RECOVERY_S = 600;

export const DEFAULT_OPTIONS: Omit<ChaosOptions, 'outDir' | 'seed'> = {
  durationS: 45,
  intervalS: 2,
  faultS: 5,
  clients: 8,
  wallets: 12,
  databases: 3,
  apis: 2,
  workers: 2,
  thinkMs: 40,
  recoveryTimeoutS: 90,
};

export interface ChaosReport {
  at: string;
  seed: number;
  options: Omit<ChaosOptions, 'progress' | 'outDir'>;
  machine: { cores: number; node: string };
  outDir: string;
  workload: WorkloadStats & { wallets: number; secondsUnderFaults: number };
  outcomes: { operations: number; byStatus: Record<string, number>; failures: Record<string, number>; events: number };
  money: { fundedMinor: string; customerTotalMinor: string };
  /** Each fault's start and end, in ms since the workload started. */
  faults: Record<FaultKind, { count: number; at: { start: number; end: number; detail: string }[] }>;
  unexpectedExits: { t: number; service: string; code: number | null; signal: string | null }[];
  recovery: { quiet: boolean; seconds: number; last: Progress };
  /** `books`: what test/support's systemViolations (SQL over every shard database) says; empty when sound. */
  checker: { ok: boolean; violations: number; kinds: Record<string, { count: number; examples: string[] }>; books: string[] };
}

export interface ChaosResult {
  report: ChaosReport;
  violations: Violation[];
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const say = options.progress ?? (() => {});
  mkdirSync(options.outDir, { recursive: true });
  const history = new HistoryWriter(join(options.outDir, 'history.jsonl'));
  const exits: ChaosReport['unexpectedExits'] = [];
  say(`starting a private world in ${options.outDir}`);
  const world = await World.start({
    outDir: options.outDir,
    databases: options.databases,
    apis: options.apis,
    workers: options.workers,
    onEvent: (event) => {
      history.info(event);
      if (event.kind === 'process-exit') {
        exits.push({ t: history.now(), service: String(event.service), code: (event.code as number | null) ?? null, signal: (event.signal as string | null) ?? null });
        say(`unexpected exit: ${String(event.service)} (${String(event.code ?? event.signal)}); restarting it`);
      }
    },
  });
  let pools: ReturnType<typeof openPools> = [];
  try {
    const admin = createLedgerlineAdminClient({ baseUrl: world.apiUrls()[0]!, adminToken: CHAOS_ADMIN_TOKEN });
    const { data: key } = await admin.apiKeys.create({
      name: 'chaos-bank',
      rateLimits: { createWallet: 1e9, fund: 1e9, transfer: 1e9, read: 1e9, webhooks: 1e9 },
    });
    history.info({ kind: 'api-key', clientId: key.id });
    // The bank listens to its own events on a webhook endpoint (the harness's receiver).
    const { data: endpoint, response } = await createLedgerlineClient({ baseUrl: world.apiUrls()[0]!, apiKey: key.key }).http.POST(
      '/v1/webhook-endpoints',
      { body: { url: world.webhooks.url, events: [...WEBHOOK_EVENTS] } },
    );
    if (!endpoint) throw new Error(`webhook endpoint: ${response.status}`);
    world.webhooks.secret = endpoint.secret;
    const workload = new BankWorkload(history, world.apiUrls(), key.key, {
      clients: options.clients,
      wallets: options.wallets,
      databases: options.databases,
      thinkMs: options.thinkMs,
      requestTimeoutMs: 5000,
      initialFundMinor: 10_000n,
      maxTransferMinor: 2_000,
      seed: options.seed,
    });
    say(`world up; funding ${options.wallets} wallets over ${options.databases} databases`);
    await workload.setup();

    const nemesis = new Nemesis(world, workload, history, {
      intervalMs: options.intervalS * 1000,
      faultMs: options.faultS * 1000,
      kinds: options.faults ?? FAULT_KINDS,
    });
    history.info({ kind: 'phase', phase: 'workload' });
    const workloadT0 = history.now();
    const started = Date.now();
    workload.start();
    const ticker = setInterval(() => {
      const s = workload.stats;
      const last = nemesis.log.at(-1);
      say(
        `t=${Math.round((Date.now() - started) / 1000)}s requests=${s.requests} accepted=${s.accepted.transfer + s.accepted.fund} retries=${s.retries} ` +
          `errors=${Object.values(s.errors).reduce((a, b) => a + b, 0)} faults=${nemesis.log.length}${last ? ` last=${last.fault}` : ''}`,
      );
    }, 5000);
    await nemesis.run(started + options.durationS * 1000);
    const remaining = started + options.durationS * 1000 - Date.now();
    if (remaining > 0) await sleep(remaining);
    clearInterval(ticker);
    const secondsUnderFaults = (Date.now() - started) / 1000;

    // Recovery: heal, stop the clients (their in-flight operations may still retry a while), wait for quiet.
    history.info({ kind: 'phase', phase: 'heal' });
    await nemesis.healAll();
    const healedAt = Date.now();
    say('healed; stopping the clients');
    await workload.stop(30_000);
    history.info({ kind: 'phase', phase: 'recovery' });
    pools = openPools(world.databaseUrls);
    let progress = await readProgress(pools, CONSUMERS);
    // The backlog the consumers drain after the faults grows with the workload, which grows with
    // the machine's speed (30,720 requests in 300 s on one day, 17,000–18,000 the day before), so
    // the bound is on a stall, not on the drain.
    const hardDeadline = Date.now() + MAX_RECOVERY_S * 1000;
    let lastMoveAt = Date.now();
    let lastSeen = JSON.stringify(progress);
    while (!isQuiet(progress) && Date.now() - lastMoveAt < options.recoveryTimeoutS * 1000 && Date.now() < hardDeadline) {
      await sleep(500);
      progress = await readProgress(pools, CONSUMERS).catch(() => progress);
      const seen = JSON.stringify(progress);
      if (seen !== lastSeen) {
        lastSeen = seen;
        lastMoveAt = Date.now();
      }
      if ((Date.now() - healedAt) % 5000 < 500) {
        say(
          `recovering: ${progress.open} open operations, ${progress.unsent} unsent events, consumers ${JSON.stringify(progress.consumed)} of ${progress.events}, ${progress.webhooksPending} webhooks pending`,
        );
      }
    }
    const recovery = { quiet: isQuiet(progress), seconds: (Date.now() - healedAt) / 1000, last: progress };
    history.info({ kind: 'phase', phase: recovery.quiet ? 'quiet' : 'recovery-timeout', progress });
    say(recovery.quiet ? `quiet after ${recovery.seconds.toFixed(1)} s` : `NOT quiet after ${recovery.seconds.toFixed(1)} s`);

    const snapshot = await readSnapshot(pools, world.gateway, { receiver: world.webhooks, subscribed: WEBHOOK_EVENTS }, CONSUMERS);
    // A second opinion on the books, in SQL: the test suite's own check over every shard database.
    const books = await systemViolations(pools);
    await history.close();
    const violations = check(readHistory(history.path), snapshot);
    const report = buildReport(options, workload, nemesis.log, exits, recovery, snapshot, violations, secondsUnderFaults, workloadT0, books);
    writeFileSync(join(options.outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(options.outDir, 'report.md'), renderMarkdown(report));
    return { report, violations };
  } finally {
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    await history.close().catch(() => {});
    await world.close();
  }
}

function buildReport(
  options: ChaosOptions,
  workload: BankWorkload,
  faultLog: FaultLog[],
  unexpectedExits: ChaosReport['unexpectedExits'],
  recovery: ChaosReport['recovery'],
  snapshot: Snapshot,
  violations: Violation[],
  secondsUnderFaults: number,
  workloadT0: number,
  books: string[],
): ChaosReport {
  const { progress: _progress, outDir, ...rest } = options;
  // Times in the report count from the start of the workload (the history's from the harness's start).
  const faults = Object.fromEntries(
    FAULT_KINDS.map((kind) => {
      const at = faultLog
        .filter((f) => f.fault === kind)
        .map(({ start, end, detail }) => ({ start: start - workloadT0, end: end - workloadT0, detail }));
      return [kind, { count: at.length, at }];
    }),
  ) as ChaosReport['faults'];
  const operations = snapshot.databases.flatMap((d) => d.operations);
  const byStatus: Record<string, number> = {};
  const failures: Record<string, number> = {};
  for (const op of operations) {
    byStatus[`${op.type} ${op.status}`] = (byStatus[`${op.type} ${op.status}`] ?? 0) + 1;
    if (op.failureCode) failures[`${op.type} ${op.failureCode}`] = (failures[`${op.type} ${op.failureCode}`] ?? 0) + 1;
  }
  const funded = operations.filter((o) => o.type === 'fund' && o.status === 'succeeded').reduce((s, o) => s + o.amount, 0n);
  const customerTotal = snapshot.databases
    .flatMap((d) => d.wallets)
    .filter((w) => w.kind === 'customer')
    .reduce((s, w) => s + w.balance, 0n);
  const kinds: ChaosReport['checker']['kinds'] = {};
  for (const v of violations) {
    const k = (kinds[v.kind] ??= { count: 0, examples: [] });
    k.count++;
    if (k.examples.length < 10) k.examples.push(v.message);
  }
  return {
    at: new Date().toISOString(),
    seed: options.seed,
    options: rest,
    machine: { cores: cpus().length, node: process.version },
    outDir,
    workload: { ...workload.stats, wallets: workload.wallets.length, secondsUnderFaults },
    outcomes: { operations: operations.length, byStatus, failures, events: snapshot.databases.reduce((s, d) => s + d.outbox.length, 0) },
    money: { fundedMinor: funded.toString(), customerTotalMinor: customerTotal.toString() },
    faults,
    unexpectedExits: unexpectedExits.map((e) => ({ ...e, t: e.t - workloadT0 })),
    recovery,
    checker: { ok: violations.length === 0 && books.length === 0, violations: violations.length, kinds, books },
  };
}
