import { sql } from 'drizzle-orm';
import type { Tx } from './client.ts';

/**
 * Postgres advisory locks of this service. A lock has one 64-bit key or two 32-bit keys, and
 * the two key spaces never overlap.
 */

/** One-key space, session lock: the relay that holds it is its database's active one. */
export const RELAY_LOCK_KEY = 0x4c4c_5201;

/** Two-key space, first key: locks on names (`lockName`). */
const NAME_LOCK_CLASS = 0x4c4c_4e01;

/**
 * A transaction-scoped advisory lock on a name (serialises writers of one chain or row), keyed
 * (NAME_LOCK_CLASS, hashtext(name)) in the two-key space, where no lock of another kind can
 * collide with it. Earlier versions took `hashtext(name)` in the one-key space, which for one
 * name in 2³² is the relay's key: that name's writer waited for the relay's session to end, and
 * its consumer stalled. Until no such version runs, the one-key lock is taken as well, first,
 * so that old and new writers of a name still exclude each other; except for a name that hashes
 * to `reservedKey` (the relay's), which no old writer ever got past.
 */
export async function lockName(tx: Tx, name: string, reservedKey = RELAY_LOCK_KEY): Promise<void> {
  // One round trip. Which of the two locks is taken first does not matter for deadlocks: every
  // writer of this version runs this same statement, and one of an earlier version takes one lock.
  await tx.execute(sql`
    SELECT CASE WHEN h <> ${reservedKey}::int THEN pg_advisory_xact_lock(h) END,
           pg_advisory_xact_lock(${NAME_LOCK_CLASS}::int, h)
    FROM hashtext(${name}) AS h`);
}
