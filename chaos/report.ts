/** The chaos run's Markdown report, from its JSON report. */
import type { ChaosReport } from './chaos.ts';
import { VIOLATION_KINDS } from './checker.ts';
import { FAULT_KINDS } from './history.ts';

const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function renderMarkdown(r: ChaosReport): string {
  const w = r.workload;
  const lines = [
    `# Chaos run ${r.at}`,
    '',
    `**Verdict: ${r.checker.ok ? 'PASS' : 'FAIL'}** — ${r.checker.violations} violations; ` +
      `${FAULT_KINDS.filter((k) => r.faults[k].count > 0).length} of ${FAULT_KINDS.length} fault kinds injected; ` +
      `recovery ${r.recovery.quiet ? `quiet after ${r.recovery.seconds.toFixed(1)} s` : `NOT quiet after ${r.recovery.seconds.toFixed(1)} s`}.`,
    '',
    `Machine: ${r.machine.cores} cores, Node ${r.machine.node}, shared with other work. Seed ${r.seed}. ` +
      `Options: ${r.workload.secondsUnderFaults.toFixed(0)} s under faults, a fault every ${r.options.intervalS} s of calm ` +
      `(pauses and outages last ${r.options.faultS} s), ${r.options.clients} clients, ${w.wallets} wallets over ${r.options.databases} shard databases, ` +
      `${r.options.apis} api and ${r.options.workers} worker processes, relay, 4 consumers.`,
    '',
    '## Faults',
    '',
    '| fault | injected | at (s since the workload started: start→end) |',
    '|---|---|---|',
    ...FAULT_KINDS.map((k) => {
      const f = r.faults[k];
      const at = f.at.map((a) => `${(a.start / 1000).toFixed(1)}→${(a.end / 1000).toFixed(1)}`);
      return `| ${k} | ${f.count} | ${at.slice(0, 12).join(', ')}${at.length > 12 ? ` … (+${at.length - 12})` : ''} |`;
    }),
    '',
    r.unexpectedExits.length === 0
      ? 'No process exited on its own (every exit was a nemesis SIGKILL).'
      : `Processes that exited on their own (restarted by the supervisor): ${r.unexpectedExits
          .map((e) => `${e.service} at ${s(e.t)} (${e.code ?? e.signal})`)
          .join(', ')}.`,
    '',
    '## Workload',
    '',
    '| measure | value |',
    '|---|---|',
    `| requests (every attempt) | ${w.requests} |`,
    `| accepted (202) transfers / funds | ${w.accepted.transfer} / ${w.accepted.fund} |`,
    `| retries with the same key | ${w.retries} |`,
    `| deliberate replays of an earlier key | ${w.replays} |`,
    `| reads (wallets, operations) | ${w.reads} |`,
    `| funds submitted during gateway outages | ${w.fundsDuringOutage} |`,
    `| given up after the grace period | ${w.gaveUp} |`,
    `| answers by status | ${Object.entries(w.byStatus).map(([k, v]) => `${k}: ${v}`).join(', ')} |`,
    `| errors without an answer | ${Object.entries(w.errors).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'} |`,
    `| operations in the databases | ${r.outcomes.operations} (${Object.entries(r.outcomes.byStatus).map(([k, v]) => `${k}: ${v}`).join(', ')}) |`,
    `| failure codes | ${Object.entries(r.outcomes.failures).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'} |`,
    `| events in the outbox | ${r.outcomes.events} |`,
    `| money funded / held by customers | ${r.money.fundedMinor} / ${r.money.customerTotalMinor} |`,
    '',
    '## Recovery',
    '',
    `After the last fault was healed and the clients stopped: ${r.recovery.quiet ? 'quiet' : 'NOT quiet'} after ${r.recovery.seconds.toFixed(1)} s ` +
      `(${r.recovery.last.open} open operations, ${r.recovery.last.unsent} unsent events, consumers ${JSON.stringify(r.recovery.last.consumed)} of ${r.recovery.last.events} events, ${r.recovery.last.webhooksPending} webhook deliveries pending).`,
    '',
    '## Checker',
    '',
    '| violation kind | verdict | count | first examples |',
    '|---|---|---|---|',
    ...VIOLATION_KINDS.map((k) => {
      const found = r.checker.kinds[k];
      return `| ${k} | ${found ? 'FAIL' : 'ok'} | ${found?.count ?? 0} | ${(found?.examples ?? []).slice(0, 3).join('; ').replace(/\|/g, '\\|')} |`;
    }),
    '',
    r.checker.books.length === 0
      ? 'Second opinion (`systemViolations` of test/support/env.ts, in SQL over every shard database): the books are sound.'
      : `Second opinion (\`systemViolations\`, in SQL): ${r.checker.books.join('; ')}.`,
    '',
  ];
  return `${lines.join('\n')}\n`;
}
