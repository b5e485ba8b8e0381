/**
 * The API's own view of a route's latency during a phase: its `http_request_duration_seconds`
 * histogram (request in → response finished, inside the process), read from every API process
 * before and after. Set beside the load generator's latencies (which start at the scheduled
 * send), it tells time spent in the API from time spent reaching it: connection queues, the
 * kernel, the load generator waiting for a core.
 */

/** Cumulative counts by upper bound in seconds (`Infinity` for +Inf). */
export type Buckets = Map<number, number>;

/** Parses the histogram of `method endpoint` out of Prometheus text. */
export function parseHistogram(text: string, method: string, endpoint: string): Buckets {
  const buckets: Buckets = new Map();
  for (const line of text.split('\n')) {
    if (!line.startsWith('http_request_duration_seconds_bucket{')) continue;
    if (!line.includes(`endpoint="${endpoint}"`) || !line.includes(`method="${method}"`)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (le === undefined) continue;
    const bound = le === '+Inf' ? Infinity : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return buckets;
}

/** The histograms of every API process, summed. */
export async function readHistogram(urls: readonly string[], method: string, endpoint: string): Promise<Buckets> {
  const sum: Buckets = new Map();
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const [bound, n] of parseHistogram(text, method, endpoint)) sum.set(bound, (sum.get(bound) ?? 0) + n);
  }
  return sum;
}

export interface ServerLatency {
  requests: number;
  /** Per bucket bound (ms): the share of the phase's requests answered within it, in %. */
  within: { ms: number; percent: number }[];
  /** The smallest bucket bound (ms) holding the percentile: "p99 ≤ 50 ms". */
  p50AtMostMs: number;
  p99AtMostMs: number;
}

/** What the API saw between two readings. */
export function serverLatency(before: Buckets, after: Buckets): ServerLatency {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  const counts = bounds.map((b) => ({ ms: b * 1000, n: (after.get(b) ?? 0) - (before.get(b) ?? 0) }));
  const atMost = (p: number) => counts.find((c) => total > 0 && c.n >= (total * p) / 100)?.ms ?? Infinity;
  return {
    requests: total,
    within: counts.filter((c) => Number.isFinite(c.ms)).map((c) => ({ ms: c.ms, percent: total > 0 ? Math.round((c.n / total) * 1000) / 10 : 0 })),
    p50AtMostMs: atMost(50),
    p99AtMostMs: atMost(99),
  };
}
