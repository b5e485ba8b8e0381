/**
 * src/api/request-log.ts: every request's `req.log` carries its own requestId and traceId, one
 * `request completed` line per answer, and the logger is a getter on the app's request
 * prototype rather than a property defined on each request (which cost V8 its fast paths).
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express, { type Request } from 'express';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { requestLog } from '../src/api/request-log.ts';
import { createExpressServer } from '../src/infra/express-server.ts';

const lines: Record<string, unknown>[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  }),
);

const app = express();
const ownLog: boolean[] = [];
app.use((req, res, next) => {
  res.setHeader('X-Request-Id', String(req.get('x-request-id')));
  res.locals.traceparent = req.get('traceparent');
  next();
});
app.use(requestLog(app, logger));
app.get('/work', (req: Request, res) => {
  ownLog.push(Object.prototype.hasOwnProperty.call(req, 'log'));
  req.log.info({ step: 'working' }, 'work done');
  expect(req.log).toBe(req.log); // made once per request
  res.json({ ok: true });
});

let server: Server;
let base: string;
beforeAll(async () => {
  server = createExpressServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

it("gives each request a logger with its own requestId and traceId, defined once on the app's request prototype", async () => {
  const traceIds = ['4bf92f3577b34da6a3ce929d0e0e4736', '0af7651916cd43dd8448eb211c80319c'];
  for (const [n, traceId] of traceIds.entries()) {
    const res = await fetch(`${base}/work`, { headers: { 'x-request-id': `req-${n}`, traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  }
  await new Promise((r) => setTimeout(r, 20)); // the completion lines are written on 'finish'
  const done = lines.filter((l) => l.msg === 'work done');
  expect(done.map((l) => [l.requestId, l.traceId, l.step])).toEqual([
    ['req-0', traceIds[0], 'working'],
    ['req-1', traceIds[1], 'working'],
  ]);
  const completed = lines.filter((l) => l.msg === 'request completed');
  expect(completed.map((l) => [l.requestId, (l.res as { statusCode: number }).statusCode])).toEqual([
    ['req-0', 200],
    ['req-1', 200],
  ]);
  expect(ownLog).toEqual([false, false]);
});
