/** CPU time per process on this machine, read from /proc: where a phase's cores went. */
import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';

type Process = { name: string; ticks: number; ppid: string; started: number };
type Snapshot = Map<string, Process>;
const TICKS_PER_SECOND = 100;

/** A process from its /proc/<pid>/stat line; `cmdline` is read only for a node process (its entry script names it). */
function parseStat(stat: string, cmdline: (() => string) | undefined): Process {
  const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let name = comm;
  if (comm.startsWith('postgres')) name = 'postgres';
  else if (comm.startsWith('node') && cmdline) {
    const entry = cmdline()
      .split('\0')
      .find((a) => a.endsWith('.ts') || a.endsWith('.js'));
    name = entry ? `node ${entry.replace(/^.*\/(src|bench)\//, '$1/')}` : 'node';
  }
  return { name, ticks: Number(fields[11]) + Number(fields[12]), ppid: fields[1]!, started: Number(fields[19]) };
}

const pids = (entries: string[]) => entries.filter((d) => /^\d+$/.test(d));

/** utime + stime of every process now, keyed by pid. */
export function cpuSnapshot(): Snapshot {
  const out: Snapshot = new Map();
  for (const pid of pids(readdirSync('/proc'))) {
    try {
      out.set(pid, parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'), () => readFileSync(`/proc/${pid}/cmdline`, 'utf8')));
    } catch {
      // the process ended between the listing and the read
    }
  }
  return out;
}

/**
 * The same, read without blocking the event loop: the bench's load generator runs on it, and a
 * synchronous walk of /proc (a few milliseconds) would delay its sends.
 */
async function cpuSnapshotAsync(): Promise<Snapshot> {
  const out: Snapshot = new Map();
  await Promise.all(
    pids(await readdir('/proc')).map(async (pid) => {
      try {
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
        const cmdline = stat.includes('(node') ? await readFile(`/proc/${pid}/cmdline`, 'utf8') : '';
        out.set(pid, parseStat(stat, () => cmdline));
      } catch {
        // the process ended between the listing and the read
      }
    }),
  );
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
  const record = (now: Snapshot) => {
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
  record(cpuSnapshot());
  let sampling = false;
  const timer = setInterval(() => {
    if (sampling) return; // the last one is still reading
    sampling = true;
    cpuSnapshotAsync()
      .then(record, () => {}) // /proc unreadable for a moment: the next sample counts it
      .finally(() => (sampling = false));
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      record(cpuSnapshot());
      const by = new Map<string, number>();
      for (const { name, first, last } of seen.values()) by.set(name, (by.get(name) ?? 0) + last - first);
      return [...by]
        .map(([process, ticks]) => ({ process, seconds: ticks / TICKS_PER_SECOND }))
        .filter((x) => x.seconds >= 0.5)
        .sort((a, b) => b.seconds - a.seconds);
    },
  };
}
