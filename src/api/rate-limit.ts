import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import type { Logger } from '../infra/logger.ts';
import { HttpProblem } from './problem.ts';

export const RATE_LIMIT_CLASSES = ['createWallet', 'fund', 'transfer', 'read', 'webhooks'] as const;
export type RateLimitClass = (typeof RATE_LIMIT_CLASSES)[number];

/** Which class a client request counts against; undefined = not limited (e.g. unknown routes). */
export function rateLimitClassOf(method: string, path: string): RateLimitClass | undefined {
  if (method === 'GET' || method === 'HEAD') return 'read';
  if (method !== 'POST') return undefined;
  if (path === '/v1/wallets') return 'createWallet';
  if (path === '/v1/transfers' || path === '/v1/transfers/batch') return 'transfer'; // a batch counts once
  if (/^\/v1\/wallets\/[^/]*\/fund$/.test(path)) return 'fund';
  if (path.startsWith('/v1/webhook-endpoints')) return 'webhooks'; // register, redeliver
  return undefined;
}

export function defaultRateLimits(config: Config): Record<RateLimitClass, number> {
  return {
    createWallet: config.RATE_LIMIT_CREATE_WALLET,
    fund: config.RATE_LIMIT_FUND,
    transfer: config.RATE_LIMIT_TRANSFER,
    read: config.RATE_LIMIT_READ,
    webhooks: config.RATE_LIMIT_WEBHOOKS,
  };
}

/**
 * Sliding-window log, atomic in one script: drop entries older than the window, count, add
 * this request if under the limit. Time comes from Redis (TIME), so API processes with skewed
 * clocks share one timeline. Only admitted requests are logged, so a key holds at most `limit`
 * members. Returns {allowed, count, msUntilOldestLeaves}.
 */
const SLIDING_WINDOW = `
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', key, window)
local reset = window
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {allowed, count, reset}`;

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the oldest counted request leaves the window (a slot frees). */
  resetSeconds: number;
}

/**
 * Per API key and class sliding-window limiter in Redis, shared by every API process.
 *
 * Why a sliding-window log rather than a library or a window counter: it is exact (the 101st
 * request in any 3600 s span is refused, whichever process serves it, even across a fixed
 * window boundary), it is one short script with no dependency, and its memory is bounded by
 * the limit (rejected requests are not logged): ≤ 1000 small members per key and class with
 * the defaults. Keys with huge overrides (benchmarks) cost one member per admitted request.
 */
export class RateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly windowSeconds: number,
  ) {
    redis.defineCommand('llSlidingWindow', { numberOfKeys: 1, lua: SLIDING_WINDOW });
  }

  async take(clientId: string, cls: RateLimitClass, limit: number): Promise<RateLimitDecision> {
    const member = `${Date.now()}-${randomUUID()}`; // randomUUID draws from a cached pool: no syscall per request
    const key = `${this.prefix}:rl:${clientId}:${cls}`;
    const run = (this.redis as unknown as Record<string, (...a: unknown[]) => Promise<[number, number, number]>>)
      .llSlidingWindow!.bind(this.redis);
    const [allowed, count, resetMs] = await run(key, limit, this.windowSeconds * 1000, member);
    return {
      allowed: allowed === 1,
      limit,
      remaining: Math.max(0, limit - count),
      resetSeconds: Math.max(1, Math.ceil(resetMs / 1000)),
    };
  }
}

/**
 * Express middleware after client auth: counts the request against its class, sets
 * `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy` on every
 * limited response, and refuses with 429 `rate_limited` and `Retry-After` over the limit.
 *
 * Redis down → fail open (requests pass without RateLimit-* headers, a warning is logged).
 * The limiter protects capacity, not money: the funds check, idempotency and the ledger rules
 * live in Postgres and hold whether or not Redis answers, and accepting writes while Redis is
 * away is already the contract (the reconciler enqueues them). Failing closed would turn a
 * Redis outage into a full API outage for every client, reads included.
 */
export function rateLimit(limiter: RateLimiter, config: Config, logger: Logger) {
  const defaults = defaultRateLimits(config);
  const policyWindow = config.RATE_LIMIT_WINDOW_SECONDS;
  let lastWarnAt = 0;
  return async (req: Request, res: Response, next: NextFunction) => {
    const cls = rateLimitClassOf(req.method, req.originalUrl.split('?')[0] ?? '');
    const client = req.client;
    if (!cls || !client) return next();
    const override = client.rateLimits[cls];
    const limit = typeof override === 'number' && override > 0 ? override : defaults[cls];
    let decision: RateLimitDecision;
    try {
      decision = await limiter.take(client.id, cls, limit);
    } catch (err) {
      if (Date.now() - lastWarnAt > 10_000) {
        lastWarnAt = Date.now();
        logger.warn({ err }, 'rate limiter unavailable; failing open');
      }
      return next();
    }
    res.setHeader('RateLimit-Limit', String(decision.limit));
    res.setHeader('RateLimit-Remaining', String(decision.remaining));
    res.setHeader('RateLimit-Reset', String(decision.resetSeconds));
    res.setHeader('RateLimit-Policy', `${decision.limit};w=${policyWindow}`);
    if (!decision.allowed) {
      throw new HttpProblem(
        'rate_limited',
        `more than ${decision.limit} ${cls} requests in ${policyWindow} s; retry after ${decision.resetSeconds} s`,
        undefined,
        { 'Retry-After': String(decision.resetSeconds) },
      );
    }
    next();
  };
}
