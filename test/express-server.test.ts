/**
 * src/infra/express-server.ts: requests and responses are created with the express app's
 * prototypes (so express's per-request Object.setPrototypeOf is a no-op), and the app behaves
 * as it does on a stock server: routing, body parsing, helpers, errors, keep-alive.
 */
import { IncomingMessage, ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createExpressServer } from '../src/infra/express-server.ts';

const app = express();
app.use(express.json());
app.post('/echo', (req, res) => {
  res.status(201).set('X-Seen', String(req.get('x-probe'))).json({ body: req.body as unknown, path: req.path });
});
app.get('/fail', () => {
  throw new Error('boom');
});

const born: { request: boolean; response: boolean; instances: boolean }[] = [];
let server: Server;
let base: string;

beforeAll(async () => {
  server = createExpressServer(app);
  // Runs before express sees the objects: what the server created, not what express made of it.
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    born.push({
      request: Object.getPrototypeOf(req) === app.request,
      response: Object.getPrototypeOf(res) === app.response,
      instances: req instanceof IncomingMessage && res instanceof ServerResponse,
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

it('creates requests and responses with the app prototypes, and the app works as usual', async () => {
  for (const n of [1, 2]) {
    const res = await fetch(`${base}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-probe': `p${n}` },
      body: JSON.stringify({ n }),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('x-seen')).toBe(`p${n}`);
    expect(await res.json()).toEqual({ body: { n }, path: '/echo' });
  }
  expect((await fetch(`${base}/fail`)).status).toBe(500);
  expect((await fetch(`${base}/nowhere`)).status).toBe(404);
  expect(born).toHaveLength(4);
  expect(born.every((b) => b.request && b.response && b.instances)).toBe(true);
});
