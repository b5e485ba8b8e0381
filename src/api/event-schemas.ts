/** Request schemas of the event-facing routes (webhook endpoints, analytics, unfreeze). */
import { z } from 'zod';
import { EVENT_TYPES } from '../events/outbox-event.ts';
import { Currency, Instant, Uuid } from './schemas.ts';

export const CreateWebhookEndpointBody = z.strictObject({
  url: z.string().max(2048).url({ message: 'must be an absolute URL' }),
  events: z.array(z.enum(EVENT_TYPES)).min(1).max(EVENT_TYPES.length),
});
export const WebhookEndpointParams = z.object({ id: Uuid });
export const WebhookDeliveryParams = z.object({ id: Uuid, deliveryId: Uuid });
export const DeliveriesQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(200).default(50) });
export const AnalyticsQuery = z.strictObject({
  granularity: z.enum(['hour', 'day']).default('hour'),
  currency: Currency.optional(),
  from: Instant.optional(),
  to: Instant.optional(),
});
