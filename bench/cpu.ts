/** CPU time per process on this machine, read from /proc: where a phase's cores went. */
import { readdirSync, readFileSync } from 'node:fs';

type Snapshot = Map<string, { name: string; ticks: number; ppid: string; started: number }>;
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
      out.set(pid, { name: nameOf(pid, comm), ticks: Number(fields[11]) + Number(fields[12]), ppid: fields[1]!, started: Number(fields[19]) });
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

/** The services the bench measures beside its own processes (Postgres, Redis, the Kafka mock). */
const SERVICES = new Set(['postgres', 'redis-server', 'kcat']);

/** Clock ticks since boot: the unit of a process's start time in /proc/<pid>/stat. */
function ticksSinceBoot(): number {
  return Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * TICKS_PER_SECOND);
}

/**
 * Watches, while the bench runs, for CPU taken by processes outside it: not the bench or a
 * process it started (`root` and its descendants), not a service it measures with, not a kernel
 * thread. A typecheck or a test run beside a phase takes cores from what the phase measures, and
 * its ratios then compare different machines. Samples /proc every `intervalMs`, so a process
 * that lives less than that can be missed; one first seen mid-run counts from its start.
 */
export function watchOutsiders(root = String(process.pid), intervalMs = 1000): { stop: () => { process: string; seconds: number }[] } {
  const since = ticksSinceBoot();
  const seen = new Map<string, { name: string; first: number; last: number }>();
  const sample = () => {
    const now = cpuSnapshot();
    const inside = (pid: string) => {
      for (let p: string | undefined = pid, hops = 0; p && hops < 64; p = now.get(p)?.ppid, hops++) if (p === root) return true;
      return false;
    };
    for (const [pid, proc] of now) {
      if (pid === '2' || proc.ppid === '2' || SERVICES.has(proc.name) || inside(pid)) continue;
      const known = seen.get(pid);
      if (known) known.last = proc.ticks;
      else seen.set(pid, { name: proc.name, first: proc.started >= since ? 0 : proc.ticks, last: proc.ticks });
    }
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      sample();
      const by = new Map<string, number>();
      for (const { name, first, last } of seen.values()) by.set(name, (by.get(name) ?? 0) + last - first);
      return [...by]
        .map(([process, ticks]) => ({ process, seconds: ticks / TICKS_PER_SECOND }))
        .filter((x) => x.seconds >= 0.5)
        .sort((a, b) => b.seconds - a.seconds);
    },
  };
}
