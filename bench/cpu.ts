/** CPU time per process on this machine, read from /proc: where a phase's cores went. */
import { readdirSync, readFileSync } from 'node:fs';

type Snapshot = Map<string, { name: string; ticks: number }>;
const TICKS_PER_SECOND = 100;

function nameOf(pid: string, comm: string): string {
  if (comm.startsWith('postgres')) return 'postgres';
  if (!comm.startsWith('node')) return comm;
  const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  const entry = args.find((a) => a.endsWith('.ts') || a.endsWith('.js'));
  return entry ? `node ${entry.replace(/^.*\/(src|bench)\//, '$1/')}` : 'node';
}

/** utime + stime of every process now, keyed by pid. */
export function cpuSnapshot(): Snapshot {
  const out: Snapshot = new Map();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(pid, { name: nameOf(pid, comm), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // the process ended between the listing and the read
    }
  }
  return out;
}

/** CPU seconds spent between two snapshots, summed by process name, largest first (≥ 0.1 s). */
export function cpuSpent(before: Snapshot, after: Snapshot): { process: string; seconds: number }[] {
  const by = new Map<string, number>();
  for (const [pid, { name, ticks }] of after) by.set(name, (by.get(name) ?? 0) + ticks - (before.get(pid)?.ticks ?? 0));
  return [...by]
    .map(([process, ticks]) => ({ process, seconds: ticks / TICKS_PER_SECOND }))
    .filter((x) => x.seconds >= 0.1)
    .sort((a, b) => b.seconds - a.seconds);
}
