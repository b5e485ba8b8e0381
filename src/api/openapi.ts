/**
 * The OpenAPI 3.1 document, generated from the zod schemas that validate requests and from the
 * error table, so neither can drift from the code.
 */
import { OpenAPIRegistry, OpenApiGeneratorV31, type ResponseConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { FAILURE_CODES } from '../domain/errors.ts';
import { ERROR_MAP, type ErrorCode } from './error-map.ts';
import { registerEventPaths } from './openapi-events.ts';
import {
  BalanceQuery,
  CreateApiKeyBody,
  CreateWalletBody,
  EntriesQuery,
  FundBody,
  IDEMPOTENCY_KEY,
  OperationIdParams,
  OperationQuery,
  TransferBatchBody,
  TransferBody,
  WalletIdParams,
} from './schemas.ts';

const Problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.int(),
    code: z.enum(Object.keys(ERROR_MAP) as [ErrorCode, ...ErrorCode[]]),
    detail: z.string(),
    requestId: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .openapi('Problem', { description: 'RFC 9457 problem document; `code` is stable.' });

const MinorUnits = z.string().regex(/^-?[0-9]+$/).openapi({ example: '1050' });

const Wallet = z
  .object({
    id: z.uuid(),
    currency: z.string(),
    balance: MinorUnits,
    available: MinorUnits,
    status: z.enum(['active', 'frozen']),
    reference: z.string().optional(),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('Wallet');

const Entry = z
  .object({
    id: z.uuid(),
    operationId: z.uuid(),
    walletId: z.uuid(),
    direction: z.enum(['debit', 'credit']),
    amount: MinorUnits.openapi({ description: 'Signed minor units: negative for a debit' }),
    balanceAfter: MinorUnits.nullable(),
    createdAt: z.iso.datetime(),
  })
  .openapi('LedgerEntry');

const Operation = z
  .object({
    id: z.uuid(),
    type: z.enum(['fund', 'transfer']),
    status: z.enum(['pending', 'processing', 'succeeded', 'failed']),
    amount: MinorUnits,
    currency: z.string(),
    walletId: z.uuid().optional().openapi({ description: 'The funded wallet (fund only)' }),
    fromWalletId: z.uuid().optional(),
    toWalletId: z.uuid(),
    reference: z.string().optional(),
    failure: z.object({ code: z.enum(FAILURE_CODES), message: z.string() }).optional(),
    createdAt: z.iso.datetime(),
    completedAt: z.iso.datetime().optional(),
  })
  .openapi('Operation');

const problems = (...codes: ErrorCode[]): Record<string, ResponseConfig> => {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of [...codes, 'internal_error', 'service_unavailable'] as ErrorCode[]) {
    const status = ERROR_MAP[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      String(status),
      {
        description: `Problem: ${list.join(', ')}`,
        content: { 'application/problem+json': { schema: Problem } },
      },
    ]),
  );
};

const json = (schema: z.ZodType, description: string): ResponseConfig => ({
  description,
  content: { 'application/json': { schema } },
});

/** Every response of a rate-limited route carries these (429 adds Retry-After). */
const RATE_LIMIT_HEADERS = {
  'RateLimit-Limit': z.string().openapi({ description: 'Requests allowed per window for this key and class' }),
  'RateLimit-Remaining': z.string().openapi({ description: 'Requests left in the current sliding window' }),
  'RateLimit-Reset': z.string().openapi({ description: 'Seconds until the oldest counted request leaves the window' }),
  'RateLimit-Policy': z.string().openapi({ description: '`<limit>;w=<window seconds>`' }),
};

/**
 * Adds the RateLimit-* headers (and Retry-After on 429) to every response of a limited route but
 * 401: the key is checked before its limit, so an unauthenticated request is counted against none.
 */
function limited(responses: Record<string, ResponseConfig>): Record<string, ResponseConfig> {
  return Object.fromEntries(
    Object.entries(responses).map(([status, r]) => {
      if (status === '401') return [status, r];
      const extra = status === '429' ? { 'Retry-After': z.string().openapi({ description: 'Seconds to wait' }) } : {};
      const own = r.headers instanceof z.ZodObject ? (r.headers.shape as Record<string, z.ZodType>) : {};
      return [status, { ...r, headers: z.object({ ...own, ...RATE_LIMIT_HEADERS, ...extra }) }];
    }),
  );
}

const IdempotencyHeaders = z.object({
  'idempotency-key': z.string().regex(IDEMPOTENCY_KEY).openapi({ description: '1–255 printable ASCII characters' }),
});

const CLIENT = ['unauthorized', 'rate_limited'] as ErrorCode[];
const ACCEPT_ERRORS: ErrorCode[] = [
  ...CLIENT,
  'validation_failed',
  'malformed_json',
  'unsupported_media_type',
  'payload_too_large',
  'idempotency_key_missing',
  'idempotency_key_invalid',
  'idempotency_key_in_flight',
  'idempotency_key_reused',
  'wallet_not_found',
];

function build(): object {
  const registry = new OpenAPIRegistry();
  const bearer = registry.registerComponent('securitySchemes', 'apiKey', { type: 'http', scheme: 'bearer' });
  const admin = registry.registerComponent('securitySchemes', 'adminToken', { type: 'http', scheme: 'bearer' });
  const asClient = [{ [bearer.name]: [] }];

  registry.registerPath({
    method: 'get',
    path: '/healthz',
    summary: 'The process is alive',
    responses: { 200: json(z.object({ status: z.literal('ok') }), 'Alive') },
  });
  const Readiness = z.object({
    status: z.enum(['ready', 'unavailable']),
    checks: z.object({ postgres: z.enum(['ok', 'fail']), redis: z.enum(['ok', 'fail']), kafka: z.enum(['ok', 'fail']) }),
  });
  registry.registerPath({
    method: 'get',
    path: '/readyz',
    summary: 'Postgres, Redis and Kafka are reachable',
    responses: { 200: json(Readiness, 'Ready'), 503: json(Readiness, 'A dependency is unreachable') },
  });
  registry.registerPath({
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics of this API process (text exposition format); blocked at the load balancer',
    responses: { 200: { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: z.string() } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    summary: 'This document',
    responses: { 200: { description: 'OpenAPI 3.1 document' } },
  });
  registry.registerPath({
    method: 'get',
    path: '/docs',
    summary: 'This document, rendered (Swagger UI)',
    responses: { 200: { description: 'HTML page', content: { 'text/html': { schema: z.string() } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/docs/init.js',
    summary: 'The script that starts the /docs page (static assets live under /docs/assets/)',
    responses: { 200: { description: 'JavaScript', content: { 'application/javascript': { schema: z.string() } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/admin/queues',
    summary: 'Bull Board (HTML UI over every queue; its JSON API lives under /admin/queues/api)',
    security: [{ [admin.name]: [] }],
    responses: {
      200: { description: 'HTML page', content: { 'text/html': { schema: z.string() } } },
      ...problems('unauthorized'),
    },
  });
  registry.registerPath({
    method: 'post',
    path: '/admin/api-keys',
    summary: 'Create an API client and its key (shown once)',
    security: [{ [admin.name]: [] }],
    request: { body: { required: true, content: { 'application/json': { schema: CreateApiKeyBody } } } },
    responses: {
      201: json(z.object({ id: z.uuid(), name: z.string(), key: z.string() }), 'Created'),
      ...problems('unauthorized', 'validation_failed', 'malformed_json', 'unsupported_media_type', 'payload_too_large'),
    },
  });
  registry.registerPath({
    method: 'post',
    path: '/v1/wallets',
    summary: 'Create a wallet',
    security: asClient,
    request: { body: { required: true, content: { 'application/json': { schema: CreateWalletBody } } } },
    responses: limited({
      201: json(Wallet, 'Created'),
      ...problems(...CLIENT, 'validation_failed', 'malformed_json', 'unsupported_media_type', 'payload_too_large'),
    }),
  });
  registry.registerPath({
    method: 'get',
    path: '/v1/wallets/{id}',
    summary: 'Read a wallet',
    security: asClient,
    request: { params: WalletIdParams },
    responses: limited({ 200: json(Wallet, 'The wallet'), ...problems(...CLIENT, 'validation_failed', 'wallet_not_found') }),
  });
  registry.registerPath({
    method: 'get',
    path: '/v1/wallets/{id}/balance',
    summary: 'The settled balance at an instant (default now), summed from the ledger entries',
    security: asClient,
    request: { params: WalletIdParams, query: BalanceQuery },
    responses: limited({
      200: json(z.object({ walletId: z.uuid(), currency: z.string(), balance: MinorUnits, at: z.iso.datetime() }), 'The balance'),
      ...problems(...CLIENT, 'validation_failed', 'wallet_not_found'),
    }),
  });
  registry.registerPath({
    method: 'get',
    path: '/v1/wallets/{id}/entries',
    summary: 'Ledger entries of a wallet, newest first',
    security: asClient,
    request: { params: WalletIdParams, query: EntriesQuery },
    responses: limited({
      200: json(z.object({ data: z.array(Entry), nextCursor: z.string().nullable() }), 'A page of entries'),
      ...problems(...CLIENT, 'validation_failed', 'wallet_not_found'),
    }),
  });
  const accepted = {
    description: 'Accepted: durably recorded, settled asynchronously',
    headers: z.object({ Location: z.string(), 'Idempotent-Replayed': z.literal('true').optional() }),
    content: { 'application/json': { schema: Operation } },
  } satisfies ResponseConfig;
  registry.registerPath({
    method: 'post',
    path: '/v1/wallets/{id}/fund',
    summary: 'Fund a wallet through the payment gateway',
    security: asClient,
    request: { params: WalletIdParams, headers: IdempotencyHeaders, body: { required: true, content: { 'application/json': { schema: FundBody } } } },
    responses: limited({ 202: accepted, ...problems(...ACCEPT_ERRORS) }),
  });
  registry.registerPath({
    method: 'post',
    path: '/v1/transfers',
    summary: 'Transfer between wallets',
    security: asClient,
    request: { headers: IdempotencyHeaders, body: { required: true, content: { 'application/json': { schema: TransferBody } } } },
    responses: limited({ 202: accepted, ...problems(...ACCEPT_ERRORS) }),
  });
  registry.registerPath({
    method: 'post',
    path: '/v1/transfers/batch',
    summary: 'Up to 1,000 transfers accepted as a unit, each with its own idempotency key and operation',
    description:
      'Every item is checked first (the client owns each source wallet; a key already used names its operation, ' +
      'and refuses the batch if used with another body); nothing is written unless every item passes. ' +
      'An item is the same request as POST /v1/transfers with its key: retrying either replays the same operation. ' +
      'Each operation settles and is polled on its own (GET /v1/operations/{id}). A batch counts as one transfer request for rate limits. ' +
      'With several shard databases each database\'s share is one transaction; a 5xx may leave part of a batch accepted, ' +
      'and sending the same batch again completes it without doubling any item.',
    security: asClient,
    request: { body: { required: true, content: { 'application/json': { schema: TransferBatchBody } } } },
    responses: limited({
      202: {
        description: 'Accepted: every operation durably recorded (pending), in item order',
        headers: z.object({ 'Idempotent-Replayed': z.literal('true').optional() }),
        content: { 'application/json': { schema: z.object({ operations: z.array(Operation) }) } },
      },
      ...problems(...ACCEPT_ERRORS.filter((c) => !c.startsWith('idempotency_key_m') && c !== 'idempotency_key_invalid')),
    }),
  });
  registry.registerPath({
    method: 'get',
    path: '/v1/operations/{id}',
    summary: 'Read an operation; ?wait=N long-polls up to N seconds for a terminal status',
    security: asClient,
    request: { params: OperationIdParams, query: OperationQuery },
    responses: limited({ 200: json(Operation, 'The operation'), ...problems(...CLIENT, 'validation_failed', 'operation_not_found') }),
  });

  registerEventPaths(registry, { problems, limited, json, asClient, asAdmin: [{ [admin.name]: [] }], Wallet });

  const doc = new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'Ledgerline API',
      version: '1.0.0',
      description: 'Wallet ledger: idempotent asynchronous fund and transfer. Money is integer minor units as decimal strings.',
    },
  });
  return {
    ...doc,
    'x-error-codes': Object.fromEntries(Object.entries(ERROR_MAP).map(([code, v]) => [code, v])),
    'x-failure-codes': FAILURE_CODES,
  };
}

let cached: object | undefined;
export function openApiDocument(): object {
  cached ??= build();
  return cached;
}
