import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import type { Logger } from '../infra/logger.ts';
import { luaScript } from '../infra/redis.ts';
import { HttpProblem } from './problem.ts';

export const RATE_LIMIT_CLASSES = ['createWallet', 'fund', 'transfer', 'read', 'webhooks'] as const;
export type RateLimitClass = (typeof RATE_LIMIT_CLASSES)[number];

/**
 * A path as the router matches it: express routes ignore letter case and a trailing slash, so
 * `POST /V1/Transfers/` reaches the transfer route and must count as a transfer.
 */
const routedPath = (path: string) => path.toLowerCase().replace(/(.)\/+$/, '$1');

/** Which class a client request counts against (`path` as `routedPath` gives it); undefined = not limited (e.g. unknown routes). */
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
 * Limits up to this many requests per window are counted exactly (a log of each admitted
 * request); larger ones by a sliding-window counter, whose memory does not grow with the limit.
 */
export const EXACT_UP_TO = 10_000;

/**
 * One rate-limit step, as a Lua function `step(key, limit, window, member, now)` returning
 * `allowed` (1/0), `count` and `reset` (ms until a slot frees). Scripts run it atomically, with
 * `now` from Redis (TIME), so API processes with skewed clocks share one timeline: `take` for
 * one request, `takeMany` for an accept batch's requests in order (one script, one round trip).
 *
 * Up to EXACT_UP_TO: a sliding-window log (a sorted set of the admitted requests: drop entries
 * older than the window, count, add this one if under the limit), exact: the 101st request in
 * any span of the window is refused, even across a fixed-window boundary. It holds one member
 * per admitted request, so above EXACT_UP_TO (the window's key is then a hash, named apart:
 * `RateLimiter.ticket`): a sliding-window counter, the current and previous fixed windows'
 * counts, the previous weighted by how much of it still overlaps the sliding window. Three
 * numbers per key and class whatever the limit; it assumes the previous window's requests were
 * spread evenly, so near the limit it may admit or refuse a little early or late.
 */
const SLIDING_WINDOW_STEP = `
local function step(key, limit, window, member, now)
  local allowed = 0
  local count
  local reset
  if limit > ${EXACT_UP_TO} then
    local slot = math.floor(now / window)
    local into = now - slot * window
    local previous = tonumber(redis.call('HGET', key, tostring(slot - 1)) or '0')
    local current = tonumber(redis.call('HGET', key, tostring(slot)) or '0')
    count = math.floor(previous * (window - into) / window) + current
    if count < limit then
      redis.call('HINCRBY', key, tostring(slot), 1)
      count = count + 1
      allowed = 1
    end
    redis.call('HDEL', key, tostring(slot - 2))
    redis.call('PEXPIRE', key, 2 * window)
    -- When a slot frees: once this window's own count alone is the limit, a little after this
    -- window ends (as its weight starts to fall); else when the previous window's share has
    -- shrunk by one request, or this window ends, whichever comes first.
    if current >= limit then
      reset = window - into + math.ceil(window / current)
    elseif previous > 0 then
      reset = math.min(window - into, math.ceil(window / previous))
    else
      reset = window - into
    end
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    count = redis.call('ZCARD', key)
    if count < limit then
      redis.call('ZADD', key, now, member)
      count = count + 1
      allowed = 1
    end
    redis.call('PEXPIRE', key, window)
    reset = window
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if oldest[2] then reset = tonumber(oldest[2]) + window - now end
  end
  return allowed, count, reset
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/** One request: KEYS[1] the window, ARGV[1..3] the limit, the window in ms and the request's member. */
const TAKE = `${SLIDING_WINDOW_STEP}
local allowed, count, reset = step(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], now)
return {allowed, count, reset}`;

/** Requests in order: KEYS[i] the i-th window (repeated for one client), ARGV[3i-2..3i] its limit, window and member. */
const TAKE_MANY = `${SLIDING_WINDOW_STEP}
local replies = {}
for i = 1, #KEYS do
  local allowed, count, reset = step(KEYS[i], tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), ARGV[3 * i], now)
  replies[#replies + 1] = allowed
  replies[#replies + 1] = count
  replies[#replies + 1] = reset
end
return replies`;

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Seconds until the oldest counted request leaves the window (a slot frees). */
  resetSeconds: number;
}

/** One request's place in a sliding window: the script's key and arguments. */
export interface RateLimitTicket {
  key: string;
  limit: number;
  windowMs: number;
  member: string;
}

/** What the sliding-window step returned: allowed (1/0), count, ms until a slot frees. */
type SlidingWindowReply = [number, number, number];
const slidingWindow = luaScript<SlidingWindowReply>(1, TAKE);
const slidingWindows = luaScript<number[]>(undefined, TAKE_MANY);

/**
 * Per API key and class sliding-window limiter in Redis, shared by every API process.
 *
 * Why a sliding-window log rather than a library or a window counter: it is exact (the 101st
 * request in any 3600 s span is refused, whichever process serves it, even across a fixed
 * window boundary), it is one short script with no dependency, and its memory is bounded by
 * the limit (rejected requests are not logged): ≤ 1000 small members per key and class with
 * the defaults. Limits above EXACT_UP_TO (a high-volume client's override) are counted by a
 * sliding-window counter instead, so no key and class holds more than EXACT_UP_TO members.
 */
export class RateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly windowSeconds: number,
  ) {}

  ticket(clientId: string, cls: RateLimitClass, limit: number): RateLimitTicket {
    return {
      // The two algorithms keep different Redis types: a limit changed across EXACT_UP_TO starts a new window.
      key: `${this.prefix}:${limit > EXACT_UP_TO ? 'rlc' : 'rl'}:${clientId}:${cls}`,
      limit,
      windowMs: this.windowSeconds * 1000,
      member: `${Date.now()}-${randomUUID()}`, // randomUUID draws from a cached pool: no syscall per request
    };
  }

  async take(ticket: RateLimitTicket): Promise<RateLimitDecision> {
    return decide(ticket, await slidingWindow(this.redis, ticket.key, ticket.limit, ticket.windowMs, ticket.member));
  }

  /** Counts requests in order, atomically, in one round trip: each gets its decision, as `take` would. */
  async takeMany(tickets: readonly RateLimitTicket[]): Promise<RateLimitDecision[]> {
    if (tickets.length === 0) return [];
    const replies = await slidingWindows(
      this.redis,
      tickets.length,
      ...tickets.map((t) => t.key),
      ...tickets.flatMap((t) => [t.limit, t.windowMs, t.member]),
    );
    return tickets.map((t, i) => decide(t, [replies[3 * i]!, replies[3 * i + 1]!, replies[3 * i + 2]!]));
  }
}

function decide(ticket: RateLimitTicket, [allowed, count, resetMs]: SlidingWindowReply): RateLimitDecision {
  return {
    allowed: allowed === 1,
    limit: ticket.limit,
    remaining: Math.max(0, ticket.limit - count),
    resetSeconds: Math.max(1, Math.ceil(resetMs / 1000)),
  };
}

/**
 * The limit of a fund or transfer request, counted later with its accept batch (one Redis script
 * for the batch, before anything is written: accept-batcher.ts), or by the error handler when
 * the request fails before it reaches the batch (a malformed body, a missing key), so every
 * answer is counted and carries RateLimit-* as before.
 */
export interface DeferredRateLimit {
  ticket: RateLimitTicket;
  /** Set once the request has been counted (or the limiter failed open). */
  counted: boolean;
  /** Sets the RateLimit-* headers; throws 429 `rate_limited` when refused. */
  apply(decision: RateLimitDecision): void;
  /** Counts the request on its own (fails open like the middleware), then `apply`. */
  take(): Promise<void>;
}

declare module 'express-serve-static-core' {
  interface Request {
    deferredRateLimit?: DeferredRateLimit;
  }
}

/** Requests whose limit is counted with their accept batch: POST /v1/transfers and fund. */
const countedWithBatch = (cls: RateLimitClass, path: string) => cls === 'fund' || (cls === 'transfer' && path === '/v1/transfers');

/** The warning of a limiter that failed open (Redis unavailable), at most one every 10 s. */
export function failOpenWarning(logger: Logger): (err: unknown) => void {
  let lastWarnAt = 0;
  return (err) => {
    if (Date.now() - lastWarnAt > 10_000) {
      lastWarnAt = Date.now();
      logger.warn({ err }, 'rate limiter unavailable; failing open');
    }
  };
}

/**
 * Express middleware after client auth: counts the request against its class, sets
 * `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `RateLimit-Policy` on every
 * limited response, and refuses with 429 `rate_limited` and `Retry-After` over the limit.
 * A fund or transfer request is counted later, with the other requests of its accept batch in
 * one Redis script (`DeferredRateLimit`): one round trip per batch, not per request, the same
 * outcome (in arrival order, atomic across API processes).
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
  const failOpen = failOpenWarning(logger);
  const apply = (res: Response, cls: RateLimitClass, decision: RateLimitDecision) => {
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
  };
  return async (req: Request, res: Response, next: NextFunction) => {
    const path = routedPath(req.originalUrl.split('?')[0] ?? '');
    const cls = rateLimitClassOf(req.method, path);
    const client = req.client;
    if (!cls || !client) return next();
    const override = client.rateLimits[cls];
    const ticket = limiter.ticket(client.id, cls, typeof override === 'number' && override > 0 ? override : defaults[cls]);
    if (countedWithBatch(cls, path)) {
      const deferred: DeferredRateLimit = {
        ticket,
        counted: false,
        apply: (decision) => {
          deferred.counted = true;
          apply(res, cls, decision);
        },
        take: async () => {
          deferred.counted = true;
          const decision = await limiter.take(ticket).catch((err: unknown) => void failOpen(err));
          if (decision) apply(res, cls, decision);
        },
      };
      req.deferredRateLimit = deferred;
      return next();
    }
    let decision: RateLimitDecision;
    try {
      decision = await limiter.take(ticket);
    } catch (err) {
      failOpen(err);
      return next();
    }
    apply(res, cls, decision);
    next();
  };
}
