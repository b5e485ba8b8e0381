import { hash } from 'node:crypto';

/**
 * Idempotency of fund and transfer lives in Postgres alone: the accept claims (client, key) in
 * `idempotency_keys` in the statement that records the operation (accept-batcher.ts), so a key
 * names one operation whatever Redis holds or forgets. A retry of a recorded request finds the
 * claim and gets the first answer again; one with another body gets 422; one that arrives while
 * the first is still being written waits on the key's unique index for that commit (a single
 * statement, milliseconds) and then replays it. A request refused before anything is written
 * (bad input, rate limit, wallet not found) claims nothing, so a corrected retry can use the key.
 * (Where a key's home database is not its operation's, a key claimed whose operation then failed
 * to be written stays claimed: the same request again completes it, another body gets 422.)
 *
 * The request hash tells "the same request again" from "the same key with another body".
 */

/** SHA-256 of a canonical request (route and parsed body, fixed key order). */
export function requestHash(route: string, canonical: readonly unknown[]): string {
  return hash('sha256', JSON.stringify([route, ...canonical]), 'hex');
}
