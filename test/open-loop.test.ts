import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { openLoop } from '../bench/open-loop.ts';

const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A server on a free port; `handle` answers each request. Counts connections and requests. */
async function serve(handle: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void) {
  const seen = { connections: 0, requests: 0, bodies: [] as string[] };
  const server = http.createServer((req, res) => {
    const n = seen.requests++;
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.bodies.push(body);
      handle(req, res, n);
    });
  });
  server.on('connection', () => seen.connections++);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const request = (i = 0) => () => ({ path: '/v1/transfers', headers: { 'content-type': 'application/json', 'idempotency-key': `k${i++}` }, body: '{"amount":"1"}' });

describe('open-loop load generator', () => {
  it('sends every request on kept-alive sockets and reads each status', async () => {
    const { url, seen } = await serve((_req, res, n) => {
      res.statusCode = n % 10 === 0 ? 422 : 202;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ n, pad: 'x'.repeat(n % 3 === 0 ? 70_000 : 10) })); // some answers span several reads
    });
    const r = await openLoop({ urls: [url], rate: 200, durationSeconds: 1, request: request() });
    expect(r).toMatchObject({ sent: 200, errors: 0, statuses: { 202: 180, 422: 20 } });
    expect(r.latenciesMs).toHaveLength(200);
    expect(r.perSecond[0]!.answered).toBe(200);
    expect(seen.bodies.every((b) => b === '{"amount":"1"}')).toBe(true);
    expect(seen.connections).toBeLessThan(20);
  });

  it('opens a new socket when the server closes one after its answer', async () => {
    const { url, seen } = await serve((_req, res, n) => {
      if (n % 2 === 0) res.setHeader('connection', 'close');
      res.statusCode = 202;
      res.end('{}');
    });
    const r = await openLoop({ urls: [url], rate: 100, durationSeconds: 1, request: request() });
    expect(r).toMatchObject({ sent: 100, errors: 0, statuses: { 202: 100 } });
    expect(seen.connections).toBeGreaterThanOrEqual(50);
  });

  it('counts a request whose socket dies before the answer as an error, and goes on', async () => {
    const { url } = await serve((req, res, n) => {
      if (n === 5) req.socket.destroy();
      else res.end('{}');
    });
    const r = await openLoop({ urls: [url], rate: 100, durationSeconds: 0.5, request: request() });
    expect(r.sent).toBe(50);
    expect(r.statuses).toEqual({ 200: 49 });
    expect(r.errors).toBe(1);
    expect(Object.keys(r.errorKinds)).toHaveLength(1);
  });

  it('a stall on the server counts against every request it delays (no coordinated omission)', async () => {
    const { url } = await serve((_req, res, n) => setTimeout(() => res.end('{}'), n === 0 ? 300 : 0));
    const r = await openLoop({ urls: [url], rate: 100, durationSeconds: 1, request: request() });
    expect(r.errors).toBe(0);
    expect(r.latenciesMs.at(-1)!).toBeGreaterThanOrEqual(300);
    // The others did not wait for the slow one: they went out on sockets of their own, on time.
    expect(r.latenciesMs[Math.floor(r.latenciesMs.length / 2)]!).toBeLessThan(100);
  });
});
