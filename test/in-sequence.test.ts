/**
 * src/api/in-sequence.ts: several middleware as one router layer behave as they did as
 * separate layers: in order, each on `next()`; a throw, a rejected promise or `next(err)`
 * skips the rest and reaches the error handler with that error.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inSequence } from '../src/api/in-sequence.ts';

const mark = (name: string): RequestHandler => (req, _res, next) => {
  (req as unknown as { seen: string[] }).seen.push(name);
  next();
};
const failWhen = (mode: string): RequestHandler => (req, _res, next) => {
  if (req.query.fail !== mode) return next();
  if (mode === 'throw') throw new Error('thrown');
  if (mode === 'next') return next(new Error('passed to next'));
  return Promise.reject(new Error('rejected'));
};

const app = express();
app.set('query parser', 'simple');
app.use((req, _res, next) => {
  (req as unknown as { seen: string[] }).seen = [];
  next();
});
app.use(inSequence(mark('a'), failWhen('throw'), mark('b'), failWhen('next'), async (req, res, next) => {
  await new Promise((resolve) => setImmediate(resolve));
  mark('c')(req, res, next);
}, failWhen('reject'), mark('d')));
// Mounted at a path, as the app mounts auth and rate limit at /v1: the handlers see the mount.
app.use('/v1', inSequence(mark('v1'), (req, _res, next) => {
  (req as unknown as { seen: string[] }).seen.push(`${req.baseUrl}|${req.url}`);
  if (req.query.fail === 'after-await') return Promise.resolve().then(() => { throw new Error('thrown after await'); });
  next(req.query.fail === 'route' ? 'route' : undefined);
}, mark('v1-end')));
app.get('/v1/seen', (req, res) => {
  res.json({ seen: (req as unknown as { seen: string[] }).seen });
});
app.get('/seen', (req, res) => {
  res.json({ seen: (req as unknown as { seen: string[] }).seen });
});
const onError: ErrorRequestHandler = (err: Error, req, res, _next) => {
  res.status(500).json({ error: err.message, seen: (req as unknown as { seen: string[] }).seen });
};
app.use(onError);

let server: Server;
let base: string;
beforeAll(async () => {
  server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const get = async (query = '', path = '/seen') => {
  const res = await fetch(`${base}${path}${query}`);
  return { status: res.status, body: (await res.json()) as { seen: string[]; error?: string } };
};

it('runs the handlers in order, each on next(), then the routes after it', async () => {
  expect(await get()).toEqual({ status: 200, body: { seen: ['a', 'b', 'c', 'd'] } });
});

it('skips the rest on a throw, next(err) or a rejected promise, and the error handler gets that error', async () => {
  expect(await get('?fail=throw')).toEqual({ status: 500, body: { error: 'thrown', seen: ['a'] } });
  expect(await get('?fail=next')).toEqual({ status: 500, body: { error: 'passed to next', seen: ['a', 'b'] } });
  expect(await get('?fail=reject')).toEqual({ status: 500, body: { error: 'rejected', seen: ['a', 'b', 'c'] } });
});

it('mounted at a path: the handlers see it, next("route") goes on, a throw after an await reaches the error handler', async () => {
  const all = ['a', 'b', 'c', 'd'];
  expect(await get('', '/v1/seen')).toEqual({ status: 200, body: { seen: [...all, 'v1', '/v1|/seen', 'v1-end'] } });
  expect(await get('?fail=route', '/v1/seen')).toEqual({ status: 200, body: { seen: [...all, 'v1', '/v1|/seen?fail=route', 'v1-end'] } });
  expect(await get('?fail=after-await', '/v1/seen')).toEqual({ status: 500, body: { error: 'thrown after await', seen: [...all, 'v1', '/v1|/seen?fail=after-await'] } });
});
