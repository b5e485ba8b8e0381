import type { Redis } from 'ioredis';
import type { WalletView } from '../db/repositories/wallets.ts';
import { luaScript } from '../infra/redis.ts';

/**
 * Read cache of GET /v1/wallets/:id in Redis. It only serves reads: settlement locks and reads
 * the wallet row in Postgres, so the cache is never the source of truth for a debit.
 *
 * Invalidation is by generation. After a settling transaction commits, the worker INCRs the
 * wallet's generation key (and deletes the entry). A reader reads the generation together with
 * the entry (one MGET) and accepts an entry only if it was filled under the current generation;
 * on a miss it reads Postgres and stores the view tagged with the generation it saw *before*
 * the read. So a slow reader that read the pre-commit row and writes it after the worker's
 * invalidation stores an entry tagged with the old generation, which nobody accepts: a client
 * that saw its operation succeed always reads its own write. The generation key outlives any
 * entry (25 h; the cache TTL is at most 1 h), so it cannot expire under a stale entry and make it valid again.
 */
const GENERATION_EXTRA_TTL_SECONDS = 3600;

const entryKey = (prefix: string, walletId: string) => `${prefix}:wallet:${walletId}`;
const generationKey = (prefix: string, walletId: string) => `${prefix}:wallet-gen:${walletId}`;

interface Entry {
  g: string;
  clientId: string;
  view: WalletView;
}

export class WalletCache {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  get enabled(): boolean {
    return this.ttlSeconds > 0;
  }

  /**
   * The cached view (with its owner, for the caller's ownership check) or a miss carrying the
   * generation to tag a fill with. Redis errors count as a miss without a fill.
   */
  async get(walletId: string): Promise<{ hit: Entry } | { miss: string | undefined }> {
    if (!this.enabled) return { miss: undefined };
    let generation: string | null;
    let raw: string | null;
    try {
      [generation, raw] = (await this.redis.mget(generationKey(this.prefix, walletId), entryKey(this.prefix, walletId))) as [
        string | null,
        string | null,
      ];
    } catch {
      return { miss: undefined };
    }
    const current = generation ?? '0';
    if (raw) {
      const entry = JSON.parse(raw) as Entry;
      if (entry.g === current) return { hit: entry };
    }
    return { miss: current };
  }

  /** Stores a view read from Postgres after `get` returned `miss: generation`. Best effort. */
  async fill(generation: string | undefined, clientId: string, view: WalletView): Promise<void> {
    if (!this.enabled || generation === undefined) return;
    const entry: Entry = { g: generation, clientId, view };
    await this.redis.set(entryKey(this.prefix, view.id), JSON.stringify(entry), 'EX', this.ttlSeconds).catch(() => {});
  }
}

// Bumps each wallet's generation (KEYS[1..n]) and drops its cached entry (KEYS[n+1..2n]); then,
// when ARGV[2] names a channel, publishes ARGV[3] on it. One command: Redis runs the
// invalidation before the notice whatever the connection does, and EVALSHA sends ~60 bytes
// where EVAL sent the whole script with every settled group.
const INVALIDATE = `
local n = #KEYS / 2
for i = 1, n do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
  redis.call('DEL', KEYS[n + i])
end
if ARGV[2] then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return n`;

// Keys vary in number, so the script takes its key count per call.
const invalidate = luaScript<number>(undefined, INVALIDATE);

/**
 * Invalidates the cached views of wallets whose row just changed. Call it after the transaction
 * that changed them has committed, never before. With `notice`, the same command then publishes
 * `notice.message` on `notice.channel` (the settlement notice that wakes long polls), so a
 * client woken by it reads the new balance.
 */
export async function invalidateWallets(
  redis: Redis,
  prefix: string,
  walletIds: readonly string[],
  notice?: { channel: string; message: string },
): Promise<void> {
  if (walletIds.length === 0 && !notice) return;
  await invalidate(
    redis,
    walletIds.length * 2,
    ...walletIds.map((id) => generationKey(prefix, id)),
    ...walletIds.map((id) => entryKey(prefix, id)),
    24 * 3600 + GENERATION_EXTRA_TTL_SECONDS,
    ...(notice ? [notice.channel, notice.message] : []),
  );
}
