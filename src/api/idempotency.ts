import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../infra/logger.ts';
import { defineScript } from '../infra/redis.ts';
import { SLIDING_WINDOW_STEP, type RateLimitTicket, type SlidingWindowReply } from './rate-limit.ts';

export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

// `done` records (a stored response) were written by earlier versions, kept up to 48 h: still replayed.
type Record_ =
  | { h: string; s: 'in_flight'; t: string }
  | { h: string; s: 'done'; r: StoredResponse };

export type BeginResult =
  | { kind: 'new'; token: string }
  | { kind: 'replay'; response: StoredResponse }
  /** Claimed with the same body: in flight, or finished (Postgres tells which). */
  | { kind: 'in_flight' }
  | { kind: 'reused' }
  /** Redis is unavailable: go on, Postgres uniqueness still decides. */
  | { kind: 'unavailable' };

const IN_FLIGHT_TTL_MS = 60_000;

// Deletes the in-flight marker only if it is still ours (a later request may own the key).
const RELEASE = `
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
return 0`;

// The rate-limit step, then the claim (SET NX GET) only if the request was admitted: a refused
// request claims nothing. KEYS[1] the window, KEYS[2] the key's record; ARGV[4] the in-flight
// marker, ARGV[5] its time to live in ms.
const COUNT_AND_CLAIM = `${SLIDING_WINDOW_STEP}
local previous = false
if allowed == 1 then previous = redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5], 'NX', 'GET') end
return {allowed, count, reset, previous}`;

/**
 * The fast path of idempotency in Redis: one atomic SET NX GET per request tells a new key
 * from one already claimed with the same body or reused with another (for fund and transfer,
 * in the same script as the request's rate limit: `countAndBegin`). The claim lives
 * IN_FLIGHT_TTL_MS; answers are not stored here: a retry of a claimed key is answered from
 * Postgres (its operation, or 409 while the first is still being recorded), and once the claim
 * has expired Postgres decides alone (UNIQUE client+key), as it does when Redis lost the key.
 * So Redis holds one small key per request for a minute, not one response per request for days.
 */
export class IdempotencyStore {
  private readonly countAndClaim: (...keysThenArgs: (string | number)[]) => Promise<[...SlidingWindowReply, string | null]>;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly logger: Logger,
  ) {
    this.countAndClaim = defineScript(redis, 'llCountAndClaim', 2, COUNT_AND_CLAIM);
  }

  private keyOf(clientId: string, idempotencyKey: string): string {
    const digest = createHash('sha256').update(idempotencyKey).digest('base64url');
    return `${this.prefix}:idem:${clientId}:${digest}`;
  }

  async begin(clientId: string, idempotencyKey: string, requestHash: string): Promise<BeginResult> {
    const token = randomUUID();
    const key = this.keyOf(clientId, idempotencyKey);
    let previous: string | null;
    try {
      previous = (await this.redis.set(key, marker(requestHash, token), 'PX', IN_FLIGHT_TTL_MS, 'NX', 'GET')) as string | null;
    } catch (err) {
      this.logger.warn({ err }, 'idempotency fast path unavailable; relying on Postgres');
      return { kind: 'unavailable' };
    }
    return claimOf(previous, requestHash, token);
  }

  /**
   * `begin` and the request's rate limit in one round trip (one script). The claim is made only
   * when the limit admits the request; `window` is undefined when Redis is unavailable (the
   * limiter fails open, the claim falls back to Postgres).
   */
  async countAndBegin(
    ticket: RateLimitTicket,
    clientId: string,
    idempotencyKey: string,
    requestHash: string,
  ): Promise<{ window: SlidingWindowReply | undefined; claim: BeginResult }> {
    const token = randomUUID();
    try {
      const [allowed, count, reset, previous] = await this.countAndClaim(
        ticket.key,
        this.keyOf(clientId, idempotencyKey),
        ticket.limit,
        ticket.windowMs,
        ticket.member,
        marker(requestHash, token),
        IN_FLIGHT_TTL_MS,
      );
      // A refused request claimed nothing; its caller answers 429 without looking at the claim.
      return { window: [allowed, count, reset], claim: allowed === 1 ? claimOf(previous, requestHash, token) : { kind: 'unavailable' } };
    } catch (err) {
      this.logger.warn({ err }, 'idempotency fast path unavailable; relying on Postgres');
      return { window: undefined, claim: { kind: 'unavailable' } };
    }
  }

  /** Frees the key after a request that did not consume it (validation, not found, outage). */
  async release(clientId: string, idempotencyKey: string, token: string): Promise<void> {
    await this.redis
      .eval(RELEASE, 1, this.keyOf(clientId, idempotencyKey), token)
      .catch((err: unknown) => this.logger.warn({ err }, 'could not release idempotency key'));
  }
}

const marker = (requestHash: string, token: string) => JSON.stringify({ h: requestHash, s: 'in_flight', t: token } satisfies Record_);

function claimOf(previous: string | null, requestHash: string, token: string): BeginResult {
  if (previous === null) return { kind: 'new', token };
  const record = JSON.parse(previous) as Record_;
  if (record.h !== requestHash) return { kind: 'reused' };
  return record.s === 'done' ? { kind: 'replay', response: record.r } : { kind: 'in_flight' };
}

/** SHA-256 of a canonical request (route and parsed body, fixed key order). */
export function requestHash(route: string, canonical: readonly unknown[]): string {
  return createHash('sha256').update(JSON.stringify([route, ...canonical])).digest('hex');
}
