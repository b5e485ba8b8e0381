import { hash, randomBytes, randomUUID } from 'node:crypto';
import { and, eq, isNull } from 'drizzle-orm';
import type { Db } from '../client.ts';
import { apiKeys, clients } from '../schema.ts';

export interface Client {
  id: string;
  name: string;
  rateLimits: Record<string, number>;
}

export const hashApiKey = (key: string): string => hash('sha256', key, 'hex');

/** Creates a client and its API key; the key is returned once and only its hash is stored. */
export async function createClient(
  db: Db,
  input: { name: string; rateLimits: Record<string, number> },
): Promise<Client & { key: string }> {
  const key = `llk_${randomBytes(32).toString('base64url')}`;
  const client = { id: randomUUID(), name: input.name, rateLimits: input.rateLimits };
  await db.transaction(async (tx) => {
    await tx.insert(clients).values(client);
    await tx.insert(apiKeys).values({ id: randomUUID(), clientId: client.id, keyHash: hashApiKey(key) });
  });
  return { ...client, key };
}

/** The client owning an API key, looked up by the key's hash (no secret comparison in JS). */
export async function findClientByKeyHash(db: Db, keyHash: string): Promise<Client | undefined> {
  const [row] = await db
    .select({ id: clients.id, name: clients.name, rateLimits: clients.rateLimits })
    .from(apiKeys)
    .innerJoin(clients, eq(clients.id, apiKeys.clientId))
    .where(and(eq(apiKeys.keyHash, keyHash), isNull(apiKeys.revokedAt)));
  return row;
}
