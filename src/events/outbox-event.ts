import { newTimeOrderedId } from '../domain/ids.ts';

export const EVENT_TYPES = [
  'wallet.created',
  'wallet.funded',
  'wallet.fund_failed',
  'transfer.completed',
  'transfer.failed',
  'risk.suspicious_activity',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface OutboxInsert {
  eventId: string;
  type: EventType;
  key: string;
  payload: Record<string, unknown>;
  operationId: string | null;
}

/** An outbox row; `key` (a wallet id) becomes the Kafka message key. */
export function outboxEvent(
  type: EventType,
  key: string,
  payload: object,
  operationId: string | null = null,
): OutboxInsert {
  return { eventId: newTimeOrderedId(), type, key, payload: { ...payload }, operationId };
}
