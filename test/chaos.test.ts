/**
 * A short chaos run (`npm run chaos` in miniature): a private world (its own Postgres cluster,
 * Redis, Kafka mock and gateway simulator; 3 shard databases, 2 api and 2 worker processes,
 * relay, 4 consumers), the bank workload, every fault kind at least once, recovery, and the
 * checker. The run must be clean and every fault kind must have been injected.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { DEFAULT_OPTIONS, runChaos } from '../chaos/chaos.ts';
import { FAULT_KINDS } from '../chaos/history.ts';
import { renderMarkdown } from '../chaos/report.ts';

const outDir = mkdtempSync(join(tmpdir(), 'ledgerline-chaos-test-'));
let keep = false;
afterAll(() => {
  if (!keep) rmSync(outDir, { recursive: true, force: true });
});

it('survives every fault kind with no violation', async () => {
  const { report, violations } = await runChaos({
    ...DEFAULT_OPTIONS,
    durationS: 35,
    intervalS: 1,
    faultS: 4,
    clients: 6,
    recoveryTimeoutS: 60,
    seed: 9,
    outDir,
  });
  keep = !report.checker.ok || !report.recovery.quiet; // leave the history and logs to look at
  const summary = `${renderMarkdown(report)}\n(history and logs in ${outDir})`;
  expect(violations, summary).toEqual([]);
  expect(report.checker.books, summary).toEqual([]);
  expect(report.recovery.quiet, summary).toBe(true);
  for (const kind of FAULT_KINDS) expect(report.faults[kind].count, `${kind} injected`).toBeGreaterThanOrEqual(1);
  expect(report.workload.accepted.transfer).toBeGreaterThan(50);
  expect(report.workload.fundsDuringOutage).toBeGreaterThan(0);
  expect(report.workload.retries).toBeGreaterThan(0); // the faults reached the clients
}, 240_000);
