/**
 * An open-loop load generator: requests leave at evenly spaced instants at a fixed rate, whether
 * or not earlier ones were answered, and each latency is measured from its scheduled instant
 * (so a stall shows up in every request it delays: no coordinated omission).
 *
 * It shares the machine with the system it measures, so it is built to cost little, as wrk2 and
 * autocannon are: each request is one string written to an idle keep-alive socket, and the
 * response is read only as far as its status line and Content-Length. Node's http client cost
 * about four times as much CPU per request here, and every core-millisecond it took was one the
 * API waited for. One request at a time per socket (no pipelining), as a browser or an SDK does.
 */
import net from 'node:net';

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
  /**
   * How late the generator itself wrote each request, ms after its scheduled instant, sorted: its
   * own stalls (timers, GC, its process not scheduled), which every latency above includes.
   */
  sendLatenessMs: number[];
}

export type OpenLoopRequest = { path: string; headers: Record<string, string>; body: string };

/** The p-th percentile of sorted values (the value below which p % of them fall); undefined when there are none. */
export const percentile = (sorted: readonly number[], p: number): number | undefined =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

export async function openLoop(options: {
  urls: string[];
  rate: number;
  durationSeconds: number;
  /** Seconds at the same rate before the measured ones, not recorded (connections open, caches warm). */
  warmupSeconds?: number;
  request: () => OpenLoopRequest;
  /** Called after the warm-up, just before the measured schedule starts. */
  onMeasure?: () => Promise<void>;
}): Promise<OpenLoopResult> {
  const pools = options.urls.map((u) => new SocketPool(new URL(u)));
  // Every request, of the warm-up and of the measured schedule, is built before either starts, so
  // building them takes nothing from the schedule (~400 bytes each: 12 s at 1,600 /s hold 8 MB).
  // Built between the two, the measured ones had left their garbage to the first measured second.
  const build = (seconds: number) =>
    Array.from({ length: Math.round(options.rate * seconds) }, (_, i) => pools[i % pools.length]!.serialize(options.request()));
  const warmup = build(options.warmupSeconds ?? 0);
  const measured = build(options.durationSeconds);
  try {
    if (warmup.length > 0) await run(options.rate, pools, warmup, options.warmupSeconds!);
    await options.onMeasure?.();
    return await run(options.rate, pools, measured, options.durationSeconds);
  } finally {
    for (const p of pools) p.destroy();
  }
}

/** What became of one request: its status, or the error that ended it before an answer. */
type Outcome = { status: number } | { error: string };

/** Most sockets per target, as node's agent was given; requests beyond wait for one to free. */
const MAX_SOCKETS = 512;
/** Idle sockets older than this are closed, not reused: the API closes keep-alive sockets idle 5 s. */
const IDLE_MS = 4000;
const HEADER_END = Buffer.from('\r\n\r\n');

/**
 * Keep-alive HTTP/1.1 connections to one target, one request in flight on each. The response
 * must carry Content-Length (the API's always do); anything else ends the socket with an error.
 */
export class SocketPool {
  private readonly idle: { socket: Connection; since: number }[] = [];
  private readonly waiting: { head: string; done: (o: Outcome) => void }[] = [];
  private readonly all = new Set<Connection>();
  private closing = false;

  constructor(private readonly target: URL) {}

  /** The request as it goes on the wire. */
  serialize(request: OpenLoopRequest): string {
    let head = `POST ${request.path} HTTP/1.1\r\nHost: ${this.target.host}\r\n`;
    for (const [k, v] of Object.entries(request.headers)) head += `${k}: ${v}\r\n`;
    return `${head}Content-Length: ${Buffer.byteLength(request.body)}\r\n\r\n${request.body}`;
  }

  /** Closes every socket: requests still waiting or in flight end with an error. */
  destroy(): void {
    this.closing = true;
    for (const w of this.waiting.splice(0)) w.done({ error: 'pool closed' });
    for (const socket of this.all) socket.destroy();
  }

  /** Sends a serialized request on an idle socket (or a new one); `done` gets its outcome. */
  send(head: string, done: (outcome: Outcome) => void): void {
    if (this.closing) return done({ error: 'pool closed' });
    const now = performance.now();
    let entry = this.idle.pop();
    while (entry && (entry.socket.closed || now - entry.since > IDLE_MS)) {
      entry.socket.destroy();
      entry = this.idle.pop();
    }
    if (entry) return entry.socket.request(head, done);
    if (this.all.size >= MAX_SOCKETS) {
      this.waiting.push({ head, done });
      return;
    }
    const socket = new Connection(this.target, (reusable) => {
      if (!reusable) this.all.delete(socket);
      if (this.closing) return;
      const next = this.waiting.shift();
      if (next && reusable) socket.request(next.head, next.done);
      else if (next) this.send(next.head, next.done);
      else if (reusable) this.idle.push({ socket, since: performance.now() });
    });
    this.all.add(socket);
    socket.request(head, done);
  }
}

/** One socket: writes a request, reads its response, then reports itself free (or gone). */
class Connection {
  private readonly socket: net.Socket;
  private chunks: Buffer[] = [];
  private received = 0;
  private inFlight: ((o: Outcome) => void) | undefined;
  closed = false;

  constructor(target: URL, private readonly onFree: (reusable: boolean) => void) {
    this.socket = net.connect({ host: target.hostname, port: Number(target.port || 80), noDelay: true });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.end(err.code ?? err.message));
    this.socket.on('close', () => this.end('socket closed before the answer'));
  }

  request(head: string, done: (o: Outcome) => void): void {
    this.inFlight = done;
    this.socket.write(head);
  }

  /** Closes the socket (a request in flight on it ends with an error) and frees its slot. */
  destroy(): void {
    this.end('socket destroyed');
  }

  private onData(chunk: Buffer): void {
    if (!this.inFlight) return this.end('bytes with no request in flight');
    this.chunks.push(chunk);
    this.received += chunk.length;
    const data = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.received);
    this.chunks = [data];
    const headerEnd = data.indexOf(HEADER_END);
    if (headerEnd < 0) return;
    const head = data.toString('latin1', 0, headerEnd);
    // The API answers every request with a body and its Content-Length; a 204, a 304 or a
    // chunked answer would be counted as an error here (and its socket closed).
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!length) return this.end('response without Content-Length');
    const total = headerEnd + 4 + Number(length[1]);
    if (this.received < total) return;
    if (this.received > total) return this.end('bytes after the response');
    const done = this.inFlight;
    this.inFlight = undefined;
    this.chunks = [];
    this.received = 0;
    done?.({ status: Number(head.slice(9, 12)) });
    if (/\r\nconnection:\s*close/i.test(head)) this.end('closed by the server');
    else this.onFree(true);
  }

  /** The socket is gone: fails the request in flight, once, and frees its slot. */
  private end(error: string): void {
    const done = this.inFlight;
    this.inFlight = undefined;
    if (!this.closed) {
      this.closed = true;
      this.socket.destroy();
      this.onFree(false);
    }
    done?.({ error });
  }
}

/** One schedule of `durationSeconds` at the rate, sending `wires` (request i through `pools[i % pools.length]`). */
async function run(rate: number, pools: SocketPool[], wires: readonly string[], durationSeconds: number): Promise<OpenLoopResult> {
  const total = wires.length;
  const interval = 1000 / rate;
  const latencies: number[] = [];
  const perSecond = Array.from({ length: Math.ceil(durationSeconds) }, () => ({ answered: 0, maxMs: 0 }));
  const statuses: Record<string, number> = {};
  let errors = 0;
  const errorKinds: Record<string, number> = {};
  let sent = 0;
  let answered = 0;
  const lateness: number[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));

  const start = performance.now();
  const fire = (scheduled: number, i: number) => {
    pools[i % pools.length]!.send(wires[i]!, (outcome) => {
      if ('status' in outcome) {
        const latency = performance.now() - scheduled;
        latencies.push(latency);
        const second = perSecond[Math.min(perSecond.length - 1, Math.floor((scheduled - start) / 1000))]!;
        second.answered++;
        second.maxMs = Math.max(second.maxMs, Math.round(latency));
        statuses[outcome.status] = (statuses[outcome.status] ?? 0) + 1;
      } else {
        errors++;
        errorKinds[outcome.error] = (errorKinds[outcome.error] ?? 0) + 1;
      }
      answered++;
      if (answered === total) done();
    });
  };

  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        lateness.push(now - (start + sent * interval));
        fire(start + sent * interval, sent);
        sent++;
      }
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
      else resolve();
    };
    tick();
  });
  await Promise.race([finished, new Promise((r) => setTimeout(r, 30_000))]);
  const unanswered = sent - answered;
  if (unanswered > 0) {
    errors += unanswered;
    errorKinds['no answer within 30 s'] = unanswered;
  }
  // Copies: requests the pool fails when it is closed afterwards must not change this result.
  return { sent, statuses: { ...statuses }, errors, errorKinds: { ...errorKinds }, latenciesMs: [...latencies].sort((a, b) => a - b), perSecond: perSecond.map((x) => ({ ...x })), sendLatenessMs: lateness.sort((a, b) => a - b) };
}
