/**
 * `npm run chaos -- [--duration s] [--interval s] [--fault s] [--clients n] [--wallets n]
 *   [--databases n] [--api n] [--workers n] [--think ms] [--seed n] [--out dir] [--faults a,b]`
 * Runs the bank workload under the nemesis in a private world and checks the result; writes
 * history.jsonl, report.json and report.md to the output directory (default
 * chaos/results/<time>/). Exits 1 if the checker found any violation.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_OPTIONS, runChaos } from './chaos.ts';
import { FAULT_KINDS, type FaultKind } from './history.ts';

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: String(DEFAULT_OPTIONS.durationS) },
    interval: { type: 'string', default: String(DEFAULT_OPTIONS.intervalS) },
    fault: { type: 'string', default: String(DEFAULT_OPTIONS.faultS) },
    clients: { type: 'string', default: String(DEFAULT_OPTIONS.clients) },
    wallets: { type: 'string', default: String(DEFAULT_OPTIONS.wallets) },
    databases: { type: 'string', default: String(DEFAULT_OPTIONS.databases) },
    api: { type: 'string', default: String(DEFAULT_OPTIONS.apis) },
    workers: { type: 'string', default: String(DEFAULT_OPTIONS.workers) },
    think: { type: 'string', default: String(DEFAULT_OPTIONS.thinkMs) },
    recovery: { type: 'string', default: String(DEFAULT_OPTIONS.recoveryTimeoutS) },
    seed: { type: 'string' },
    out: { type: 'string' },
    faults: { type: 'string' },
  },
});

const positive = (name: string, value: string | undefined, min = 1): number => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`--${name} must be a number ≥ ${min}\n`);
    process.exit(64);
  }
  return n;
};
const faults = opt.faults?.split(',').map((f) => f.trim()) as FaultKind[] | undefined;
const unknown = faults?.filter((f) => !FAULT_KINDS.includes(f));
if (unknown?.length) {
  process.stderr.write(`unknown fault kinds: ${unknown.join(', ')} (known: ${FAULT_KINDS.join(', ')})\n`);
  process.exit(64);
}
const at = new Date().toISOString().replace(/[:.]/g, '-');
const outDir = opt.out ?? fileURLToPath(new URL(`results/${at}`, import.meta.url));

const { report } = await runChaos({
  durationS: positive('duration', opt.duration),
  intervalS: positive('interval', opt.interval, 0),
  faultS: positive('fault', opt.fault),
  clients: positive('clients', opt.clients),
  wallets: positive('wallets', opt.wallets, 2),
  databases: positive('databases', opt.databases),
  apis: positive('api', opt.api),
  workers: positive('workers', opt.workers),
  thinkMs: positive('think', opt.think, 0),
  recoveryTimeoutS: positive('recovery', opt.recovery),
  seed: opt.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : positive('seed', opt.seed, 0),
  outDir,
  ...(faults ? { faults } : {}),
  progress: (line) => process.stderr.write(`[chaos] ${line}\n`),
});
const { checker } = report;
const verdict = checker.ok
  ? 'PASS: no violations'
  : `FAIL: ${checker.violations} violations (${Object.keys(checker.kinds).join(', ') || 'none'}); books: ${checker.books.join('; ') || 'sound'}`;
process.stderr.write(`[chaos] ${verdict}\n[chaos] report: ${outDir}/report.md\n`);
process.exitCode = report.checker.ok ? 0 : 1;
