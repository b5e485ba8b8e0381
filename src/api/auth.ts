import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Db } from '../db/client.ts';
import { findClientByKeyHash, hashApiKey, type Client } from '../db/repositories/clients.ts';
import { HttpProblem } from './problem.ts';

declare module 'express-serve-static-core' {
  interface Request {
    client?: Client;
  }
}

const BEARER = /^Bearer ([\x21-\x7e]{1,512})$/;

export function bearerToken(req: Request): string | undefined {
  const header = req.get('authorization');
  return header ? BEARER.exec(header)?.[1] : undefined;
}

const unauthorized = (detail: string) =>
  new HttpProblem('unauthorized', detail, undefined, { 'WWW-Authenticate': 'Bearer' });

/**
 * Authenticates a client by API key. Keys are looked up by their SHA-256 (so no secret is
 * compared in JS); found clients are cached in-process for a short time to keep the accept
 * path off the control database.
 *
 * Why this is safe against timing attacks without timingSafeEqual: the attacker controls the
 * key, but what gets compared (the btree lookup in Postgres, the Map lookup here) is its
 * SHA-256. Learning how many leading bytes of a stored hash a guess matched tells nothing
 * usable, because choosing a key whose hash has a given prefix is preimage work; and keys carry
 * 256 random bits, so no guess is close to begin with. The operator token, compared directly,
 * uses timingSafeEqual over hashes (adminAuth below).
 */
export function clientAuth(db: Db, cacheTtlMs = 30_000) {
  const cache = new Map<string, { client: Client; expiresAt: number }>();
  return async (req: Request, _res: Response, next: NextFunction) => {
    const token = bearerToken(req);
    if (!token) throw unauthorized('send an API key as "Authorization: Bearer <key>"');
    const hash = hashApiKey(token);
    const now = Date.now();
    let client = cache.get(hash);
    if (!client || client.expiresAt < now) {
      const found = await findClientByKeyHash(db, hash);
      if (!found) throw unauthorized('the API key is not valid');
      if (cache.size > 10_000) cache.clear();
      client = { client: found, expiresAt: now + cacheTtlMs };
      cache.set(hash, client);
    }
    req.client = client.client;
    next();
  };
}

/** Operator auth: Bearer ADMIN_TOKEN (or basic auth with it as password), compared in constant time. */
export function adminAuth(adminToken: string | undefined) {
  const expected = adminToken ? createHash('sha256').update(adminToken).digest() : undefined;
  const matches = (candidate: string | undefined) =>
    expected !== undefined &&
    candidate !== undefined &&
    timingSafeEqual(createHash('sha256').update(candidate).digest(), expected);
  return (req: Request, _res: Response, next: NextFunction) => {
    const header = req.get('authorization') ?? '';
    let candidate = bearerToken(req);
    if (!candidate && header.startsWith('Basic ')) {
      const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
      candidate = decoded.slice(decoded.indexOf(':') + 1);
    }
    if (!matches(candidate)) {
      throw new HttpProblem('unauthorized', 'the operator token is required', undefined, {
        'WWW-Authenticate': 'Bearer, Basic realm="ledgerline-admin"',
      });
    }
    next();
  };
}

export function requireClient(req: Request): Client {
  if (!req.client) throw unauthorized('send an API key as "Authorization: Bearer <key>"');
  return req.client;
}
