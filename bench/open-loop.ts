/**
 * An open-loop load generator: requests leave at evenly spaced instants at a fixed rate, whether
 * or not earlier ones were answered, and each latency is measured from its scheduled instant
 * (so a stall shows up in every request it delays: no coordinated omission).
 */
import http from 'node:http';

export interface OpenLoopResult {
  sent: number;
  statuses: Record<string, number>;
  errors: number;
  /** Errors by kind (the error's code, else its message): a connection reset is not a timeout. */
  errorKinds: Record<string, number>;
  /** Latencies of every answered request, ms from its scheduled send, sorted. */
  latenciesMs: number[];
  /** Per second of the schedule: requests answered, and their worst latency (ms); stalls show here. */
  perSecond: { answered: number; maxMs: number }[];
}

export async function openLoop(options: {
  urls: string[];
  rate: number;
  durationSeconds: number;
  /** Seconds at the same rate before the measured ones, not recorded (connections open, caches warm). */
  warmupSeconds?: number;
  request: () => { path: string; headers: Record<string, string>; body: string };
  /** Called after the warm-up, just before the measured schedule starts. */
  onMeasure?: () => Promise<void>;
}): Promise<OpenLoopResult> {
  // `timeout`: node's agent honours the server's `Keep-Alive: timeout=5` hint (closing an idle
  // socket a second before the server does) only when it has a timeout of its own; without one
  // a request can go out on a socket the server is closing, and fail with ECONNRESET.
  const agents = options.urls.map(() => new http.Agent({ keepAlive: true, maxSockets: 512, timeout: 60_000 }));
  try {
    if (options.warmupSeconds) await run(options, agents, options.warmupSeconds);
    await options.onMeasure?.();
    return await run(options, agents, options.durationSeconds);
  } finally {
    for (const a of agents) a.destroy();
  }
}

/** One schedule of `durationSeconds` at the rate, through `agents` (one per url). */
async function run(
  options: { urls: string[]; rate: number; request: () => { path: string; headers: Record<string, string>; body: string } },
  agents: http.Agent[],
  durationSeconds: number,
): Promise<OpenLoopResult> {
  const targets = options.urls.map((u) => new URL(u));
  const total = Math.round(options.rate * durationSeconds);
  const interval = 1000 / options.rate;
  const latencies: number[] = [];
  const perSecond = Array.from({ length: Math.ceil(durationSeconds) }, () => ({ answered: 0, maxMs: 0 }));
  const statuses: Record<string, number> = {};
  let errors = 0;
  const errorKinds: Record<string, number> = {};
  let sent = 0;
  let answered = 0;
  const start = performance.now();
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const settle = () => {
    answered++;
    if (answered === total) done();
  };

  const fire = (scheduled: number, i: number) => {
    const target = targets[i % targets.length]!;
    const { path, headers, body } = options.request();
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: 'POST',
        path,
        agent: agents[i % agents.length],
        headers: { ...headers, 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          const latency = performance.now() - scheduled;
          latencies.push(latency);
          const second = perSecond[Math.min(perSecond.length - 1, Math.floor((scheduled - start) / 1000))]!;
          second.answered++;
          second.maxMs = Math.max(second.maxMs, Math.round(latency));
          statuses[res.statusCode ?? 0] = (statuses[res.statusCode ?? 0] ?? 0) + 1;
          settle();
        });
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      errors++;
      const kind = err.code ?? err.message;
      errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
      settle();
    });
    req.end(body);
  };

  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        fire(start + sent * interval, sent);
        sent++;
      }
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
      else resolve();
    };
    tick();
  });
  await Promise.race([finished, new Promise((r) => setTimeout(r, 30_000))]);
  latencies.sort((a, b) => a - b);
  return { sent, statuses, errors, errorKinds, latenciesMs: latencies, perSecond };
}
