import { describe, expect, it } from 'vitest';
import { parseHistogram, serverLatency } from '../bench/server-latency.ts';

const text = (counts: [string, number][], endpoint = '/v1/transfers', method = 'POST') =>
  counts.map(([le, n]) => `http_request_duration_seconds_bucket{le="${le}",endpoint="${endpoint}",method="${method}"} ${n}`).join('\n');

describe('server-side latency from the API histogram', () => {
  it('reads one route and method, and bounds the percentiles by bucket', () => {
    const before = parseHistogram(text([['0.01', 10], ['0.025', 10], ['0.05', 10], ['+Inf', 10]]), 'POST', '/v1/transfers');
    const metrics = [
      text([['0.01', 60], ['0.025', 100], ['0.05', 109], ['+Inf', 110]]),
      text([['0.01', 999], ['+Inf', 999]], '/v1/wallets/:id', 'GET'),
      text([['0.01', 5], ['+Inf', 5]], '/v1/transfers', 'GET'),
    ].join('\n');
    const after = parseHistogram(metrics, 'POST', '/v1/transfers');
    const seen = serverLatency(before, after);
    expect(seen.requests).toBe(100);
    expect(seen.within).toEqual([
      { ms: 10, percent: 50 },
      { ms: 25, percent: 90 },
      { ms: 50, percent: 99 },
    ]);
    expect(seen.p50AtMostMs).toBe(10);
    expect(seen.p99AtMostMs).toBe(50);
  });

  it('says nothing when no request came', () => {
    const empty = parseHistogram(text([['0.01', 3], ['+Inf', 3]]), 'POST', '/v1/transfers');
    expect(serverLatency(empty, empty)).toMatchObject({ requests: 0, p99AtMostMs: Infinity });
  });
});
