/** OpenAPI paths of the event-facing routes (webhook endpoints, analytics, unfreeze). */
import type { OpenAPIRegistry, ResponseConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import type { ErrorCode } from './error-map.ts';
import {
  AnalyticsQuery,
  CreateWebhookEndpointBody,
  DeliveriesQuery,
  WebhookDeliveryParams,
  WebhookEndpointParams,
} from './event-schemas.ts';
import { WalletIdParams } from './schemas.ts';

export interface OpenApiHelpers {
  problems: (...codes: ErrorCode[]) => Record<string, ResponseConfig>;
  /** Marks the responses of a rate-limited (/v1) route: RateLimit-* headers, Retry-After on 429. */
  limited: (responses: Record<string, ResponseConfig>) => Record<string, ResponseConfig>;
  json: (schema: z.ZodType, description: string) => ResponseConfig;
  asClient: Record<string, string[]>[];
  asAdmin: Record<string, string[]>[];
  Wallet: z.ZodType;
}

export function registerEventPaths(registry: OpenAPIRegistry, h: OpenApiHelpers): void {
  const CLIENT: ErrorCode[] = ['unauthorized', 'rate_limited'];
  const BODY: ErrorCode[] = ['validation_failed', 'malformed_json', 'unsupported_media_type', 'payload_too_large'];
  const Delivery = z
    .object({
      id: z.uuid(),
      endpointId: z.uuid(),
      eventId: z.string().openapi({ description: 'CloudEvents id; also the `webhook-id` header of every attempt' }),
      eventType: z.string(),
      status: z.enum(['pending', 'succeeded', 'failed']),
      attempts: z.int(),
      lastStatusCode: z.int().nullable(),
      lastError: z.string().nullable(),
      createdAt: z.iso.datetime(),
      updatedAt: z.iso.datetime(),
      completedAt: z.iso.datetime().nullable(),
      log: z.array(z.object({ statusCode: z.int().nullable(), error: z.string().nullable(), durationMs: z.int(), at: z.iso.datetime() })),
    })
    .openapi('WebhookDelivery');

  registry.registerPath({
    method: 'post',
    path: '/v1/webhook-endpoints',
    summary: 'Register a webhook endpoint (Standard Webhooks); the secret is shown once',
    security: h.asClient,
    request: { body: { content: { 'application/json': { schema: CreateWebhookEndpointBody } } } },
    responses: h.limited({
      201: h.json(
        z.object({ id: z.uuid(), url: z.string(), events: z.array(z.string()), status: z.enum(['active', 'disabled']), secret: z.string(), createdAt: z.iso.datetime() }),
        'Created',
      ),
      ...h.problems(...CLIENT, ...BODY, 'webhook_url_not_allowed'),
    }),
  });
  registry.registerPath({
    method: 'get',
    path: '/v1/webhook-endpoints/{id}/deliveries',
    summary: 'Deliveries of an endpoint, newest first, with every attempt',
    security: h.asClient,
    request: { params: WebhookEndpointParams, query: DeliveriesQuery },
    responses: h.limited({
      200: h.json(z.object({ endpoint: z.object({ id: z.uuid(), url: z.string(), status: z.string() }).passthrough(), data: z.array(Delivery) }), 'Deliveries'),
      ...h.problems(...CLIENT, 'validation_failed', 'webhook_endpoint_not_found'),
    }),
  });
  registry.registerPath({
    method: 'post',
    path: '/v1/webhook-endpoints/{id}/deliveries/{deliveryId}/retry',
    summary: 'Send a delivery again (manual redelivery)',
    security: h.asClient,
    request: { params: WebhookDeliveryParams },
    responses: h.limited({
      202: h.json(Delivery, 'Queued again'),
      ...h.problems(...CLIENT, 'validation_failed', 'unsupported_media_type', 'webhook_endpoint_not_found', 'webhook_delivery_not_found'),
    }),
  });
  registry.registerPath({
    method: 'get',
    path: '/admin/analytics',
    summary: 'Count and volume per currency, event type and hour/day (UTC)',
    security: h.asAdmin,
    request: { query: AnalyticsQuery },
    responses: {
      200: h.json(
        z.object({
          granularity: z.enum(['hour', 'day']),
          data: z.array(z.object({ bucketStart: z.iso.datetime(), currency: z.string(), eventType: z.string(), count: z.int(), volume: z.string() })),
        }),
        'Aggregates',
      ),
      ...h.problems('unauthorized', 'validation_failed'),
    },
  });
  registry.registerPath({
    method: 'post',
    path: '/admin/wallets/{id}/unfreeze',
    summary: 'Unfreeze a wallet frozen by the fraud policy',
    security: h.asAdmin,
    request: { params: WalletIdParams },
    responses: { 200: h.json(h.Wallet, 'The wallet, active'), ...h.problems('unauthorized', 'validation_failed', 'unsupported_media_type', 'wallet_not_found') },
  });
}
