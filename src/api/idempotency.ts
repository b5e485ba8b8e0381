import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../infra/logger.ts';

export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

type Record_ =
  | { h: string; s: 'in_flight'; t: string }
  | { h: string; s: 'done'; r: StoredResponse };

export type BeginResult =
  | { kind: 'new'; token: string }
  | { kind: 'replay'; response: StoredResponse }
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

/**
 * The fast path of idempotency in Redis: one atomic SET NX GET per request tells a new key
 * from an in-flight one, a finished one (replayed) or one reused with another body. Postgres
 * (UNIQUE client+key on operations) remains the truth when Redis has lost the key.
 */
export class IdempotencyStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    private readonly logger: Logger,
  ) {}

  private keyOf(clientId: string, idempotencyKey: string): string {
    const digest = createHash('sha256').update(idempotencyKey).digest('base64url');
    return `${this.prefix}:idem:${clientId}:${digest}`;
  }

  async begin(clientId: string, idempotencyKey: string, requestHash: string): Promise<BeginResult> {
    const token = randomUUID();
    const marker: Record_ = { h: requestHash, s: 'in_flight', t: token };
    let previous: string | null;
    try {
      previous = (await this.redis.set(
        this.keyOf(clientId, idempotencyKey),
        JSON.stringify(marker),
        'PX',
        IN_FLIGHT_TTL_MS,
        'NX',
        'GET',
      )) as string | null;
    } catch (err) {
      this.logger.warn({ err }, 'idempotency fast path unavailable; relying on Postgres');
      return { kind: 'unavailable' };
    }
    if (previous === null) return { kind: 'new', token };
    const record = JSON.parse(previous) as Record_;
    if (record.h !== requestHash) return { kind: 'reused' };
    return record.s === 'done' ? { kind: 'replay', response: record.r } : { kind: 'in_flight' };
  }

  /** Stores the first response so a retry replays it; kept for IDEMPOTENCY_TTL_SECONDS. */
  async complete(clientId: string, idempotencyKey: string, requestHash: string, response: StoredResponse): Promise<void> {
    const record: Record_ = { h: requestHash, s: 'done', r: response };
    await this.redis
      .set(this.keyOf(clientId, idempotencyKey), JSON.stringify(record), 'EX', this.ttlSeconds)
      .catch((err: unknown) => this.logger.warn({ err }, 'could not store idempotent response'));
  }

  /** Frees the key after a request that did not consume it (validation, not found, outage). */
  async release(clientId: string, idempotencyKey: string, token: string): Promise<void> {
    await this.redis
      .eval(RELEASE, 1, this.keyOf(clientId, idempotencyKey), token)
      .catch((err: unknown) => this.logger.warn({ err }, 'could not release idempotency key'));
  }
}

/** SHA-256 of a canonical request (route and parsed body, fixed key order). */
export function requestHash(route: string, canonical: readonly unknown[]): string {
  return createHash('sha256').update(JSON.stringify([route, ...canonical])).digest('hex');
}
