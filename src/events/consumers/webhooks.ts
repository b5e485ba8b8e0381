import { randomUUID } from 'node:crypto';
import { and, arrayContains, eq, inArray } from 'drizzle-orm';
import { webhookDeliveries, webhookEndpoints } from '../../db/consumer-schema.ts';
import { wallets } from '../../db/schema.ts';
import type { ShardRouter } from '../../db/shard-router.ts';
import { databaseFor, type ConsumerSpec } from './consumer.ts';

/** The API clients an event is about: the owners of the wallets it names. */
function walletIdsOf(data: Record<string, unknown>, type: string): string[] {
  const ids = new Set<string>();
  for (const field of type === 'wallet.created' ? ['id'] : ['walletId', 'fromWalletId', 'toWalletId']) {
    const v = data[field];
    if (typeof v === 'string') ids.add(v);
  }
  return [...ids];
}

/**
 * Turns each event into one delivery per active endpoint that subscribed to its type and
 * belongs to a client owning a wallet in it. The delivery body (Standard Webhooks payload:
 * type, timestamp, data) is fixed here, so every retry sends the same signed bytes. Sending is
 * the dispatcher's and the BullMQ worker's job (src/events/webhooks/deliver.ts).
 */
export function webhooksConsumer(shards: ShardRouter): ConsumerSpec {
  return {
    name: 'webhooks',
    async apply(tx, event) {
      const clientIds = new Set<string>();
      if (typeof event.data.clientId === 'string') clientIds.add(event.data.clientId);
      const walletIds = walletIdsOf(event.data, event.type);
      if (walletIds.length > 0) {
        // Each wallet's owner is read in the wallet's own shard database.
        for (const walletId of walletIds) {
          const owners = await databaseFor(tx, shards, walletId).select({ clientId: wallets.clientId }).from(wallets).where(eq(wallets.id, walletId));
          for (const o of owners) if (o.clientId) clientIds.add(o.clientId);
        }
      }
      if (clientIds.size === 0) return;
      const endpoints = await tx
        .select({ id: webhookEndpoints.id })
        .from(webhookEndpoints)
        .where(
          and(
            inArray(webhookEndpoints.clientId, [...clientIds]),
            eq(webhookEndpoints.status, 'active'),
            arrayContains(webhookEndpoints.events, [event.type]),
          ),
        );
      if (endpoints.length === 0) return;
      const body = JSON.stringify({ type: event.type, timestamp: event.time, data: event.data });
      await tx
        .insert(webhookDeliveries)
        .values(endpoints.map((e) => ({ id: randomUUID(), endpointId: e.id, eventId: event.id, eventType: event.type, body })))
        .onConflictDoNothing();
    },
  };
}
