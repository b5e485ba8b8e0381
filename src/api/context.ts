import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import type { ShardRouter } from '../db/shard-router.ts';
import type { Logger } from '../infra/logger.ts';
import type { AcceptOutcome, AcceptRequest } from './accept-batcher.ts';
import type { OperationWaiter } from './operation-waiter.ts';
import type { RateLimiter } from './rate-limit.ts';
import type { WalletCache } from './wallet-cache.ts';

export type CheckStatus = 'ok' | 'fail';

/** What the HTTP layer needs, passed in explicitly (no container, no globals). */
export interface ApiContext {
  config: Config;
  shards: ShardRouter;
  redis: Redis;
  queue: Queue;
  /** Counts the rate limit and commits the operation, sharing round trips with concurrent requests (accept-batcher.ts). */
  accept: (request: AcceptRequest) => Promise<AcceptOutcome>;
  waiter: OperationWaiter;
  rateLimiter: RateLimiter;
  walletCache: WalletCache;
  logger: Logger;
  /** Kafka reachability for /readyz. */
  kafkaReady: () => Promise<boolean>;
}
