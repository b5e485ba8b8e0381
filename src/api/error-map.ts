/**
 * Every problem `code` the API can answer with, its HTTP status and title: the one table that
 * maps domain codes to HTTP (and the list the OpenAPI document publishes).
 */
export const ERROR_MAP = {
  validation_failed: { status: 400, title: 'The request is not valid' },
  malformed_json: { status: 400, title: 'The request body is not valid JSON' },
  idempotency_key_missing: { status: 400, title: 'Idempotency-Key header missing' },
  idempotency_key_invalid: { status: 400, title: 'Idempotency-Key header invalid' },
  unauthorized: { status: 401, title: 'Authentication required' },
  not_found: { status: 404, title: 'No such resource' },
  wallet_not_found: { status: 404, title: 'Wallet not found' },
  operation_not_found: { status: 404, title: 'Operation not found' },
  webhook_endpoint_not_found: { status: 404, title: 'Webhook endpoint not found' },
  webhook_delivery_not_found: { status: 404, title: 'Webhook delivery not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  idempotency_key_in_flight: { status: 409, title: 'A request with this key is in flight' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'Content-Type must be application/json' },
  idempotency_key_reused: { status: 422, title: 'Idempotency-Key reused with another request' },
  webhook_url_not_allowed: { status: 422, title: 'The webhook URL is not an allowed target' },
  rate_limited: { status: 429, title: 'Too many requests' },
  internal_error: { status: 500, title: 'Internal error' },
  service_unavailable: { status: 503, title: 'A dependency is unavailable; retry later' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_MAP;

export const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ERROR_MAP, code);
