import { randomBytes, randomUUID } from 'node:crypto';
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import { Router } from 'express';
import { webhookAttempts, webhookDeliveries, webhookEndpoints } from '../../db/consumer-schema.ts';
import { webhookUrlProblem } from '../../events/webhooks/url-policy.ts';
import { requireClient } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { CreateWebhookEndpointBody, DeliveriesQuery, WebhookDeliveryParams, WebhookEndpointParams } from '../event-schemas.ts';
import { HttpProblem } from '../problem.ts';
import { validate } from '../validate.ts';

type DeliveryRow = typeof webhookDeliveries.$inferSelect;
const deliveryView = (d: DeliveryRow, attempts: (typeof webhookAttempts.$inferSelect)[] = []) => ({
  id: d.id,
  endpointId: d.endpointId,
  eventId: d.eventId,
  eventType: d.eventType,
  status: d.status,
  attempts: d.attempts,
  lastStatusCode: d.lastStatusCode,
  lastError: d.lastError,
  createdAt: d.createdAt.toISOString(),
  updatedAt: d.updatedAt.toISOString(),
  completedAt: d.completedAt?.toISOString() ?? null,
  log: attempts.map((a) => ({ statusCode: a.statusCode, error: a.error, durationMs: a.durationMs, at: a.createdAt.toISOString() })),
});

/** Webhook endpoints of the calling client (Standard Webhooks, API.md). */
export function webhookEndpointRoutes(ctx: ApiContext): Router {
  const router = Router();
  const db = () => ctx.shards.control.db;

  async function ownedEndpoint(clientId: string, id: string) {
    const [endpoint] = await db()
      .select()
      .from(webhookEndpoints)
      .where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.clientId, clientId)));
    if (!endpoint) throw new HttpProblem('webhook_endpoint_not_found', `webhook endpoint ${id} does not exist`);
    return endpoint;
  }

  router.post('/v1/webhook-endpoints', async (req, res) => {
    const client = requireClient(req);
    const body = validate(CreateWebhookEndpointBody, req.body, 'body');
    const problem = await webhookUrlProblem(body.url, ctx.config.WEBHOOK_ALLOW_PRIVATE_URLS, { dnsServers: ctx.config.WEBHOOK_DNS_SERVERS }).catch(
      (err: NodeJS.ErrnoException) => {
        // DNS did not answer (a timeout, a server failure): nothing is known against the URL yet.
        throw new HttpProblem('service_unavailable', `the URL's host could not be resolved (${err.code ?? err.message}); retry later`, undefined, {
          'Retry-After': '5',
        });
      },
    );
    if (problem) throw new HttpProblem('webhook_url_not_allowed', problem);
    const [row] = await db()
      .insert(webhookEndpoints)
      .values({
        id: randomUUID(),
        clientId: client.id,
        url: body.url,
        events: [...new Set(body.events)],
        secret: `whsec_${randomBytes(32).toString('base64')}`,
      })
      .returning();
    if (!row) throw new Error('webhook endpoint insert returned nothing');
    res.status(201).location(`/v1/webhook-endpoints/${row.id}`).json({
      id: row.id,
      url: row.url,
      events: row.events,
      status: row.status,
      secret: row.secret,
      createdAt: row.createdAt.toISOString(),
    });
  });

  router.get('/v1/webhook-endpoints/:id/deliveries', async (req, res) => {
    const client = requireClient(req);
    const { id } = validate(WebhookEndpointParams, req.params, 'params');
    const { limit } = validate(DeliveriesQuery, req.query, 'query');
    const endpoint = await ownedEndpoint(client.id, id);
    const deliveries = await db()
      .select()
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.endpointId, id))
      .orderBy(desc(webhookDeliveries.createdAt))
      .limit(limit);
    const attempts =
      deliveries.length === 0
        ? []
        : await db().select().from(webhookAttempts).where(inArray(webhookAttempts.deliveryId, deliveries.map((d) => d.id))).orderBy(webhookAttempts.seq);
    res.json({
      endpoint: { id: endpoint.id, url: endpoint.url, events: endpoint.events, status: endpoint.status, disabledReason: endpoint.disabledReason },
      data: deliveries.map((d) => deliveryView(d, attempts.filter((a) => a.deliveryId === d.id))),
    });
  });

  router.post('/v1/webhook-endpoints/:id/deliveries/:deliveryId/retry', async (req, res) => {
    const client = requireClient(req);
    const { id, deliveryId } = validate(WebhookDeliveryParams, req.params, 'params');
    await ownedEndpoint(client.id, id);
    // A new generation: the dispatcher enqueues job `<id>-g<generation>` (one per retry request).
    const [row] = await db()
      .update(webhookDeliveries)
      .set({ status: 'pending', completedAt: null, generation: sql`${webhookDeliveries.generation} + 1`, updatedAt: new Date() })
      .where(and(eq(webhookDeliveries.id, deliveryId), eq(webhookDeliveries.endpointId, id)))
      .returning();
    if (!row) throw new HttpProblem('webhook_delivery_not_found', `delivery ${deliveryId} does not exist`);
    res.status(202).json(deliveryView(row));
  });

  return router;
}
