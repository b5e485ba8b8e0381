/**
 * Typed client for the Ledgerline HTTP API. Request and response types come from
 * ./openapi-types.ts, generated from the OpenAPI document the server serves (checked fresh by
 * test/client.test.ts); openapi-fetch is the runtime. Errors are thrown as LedgerlineError
 * carrying the RFC 9457 problem.
 */
import createClient from 'openapi-fetch';
import type { components, paths } from './openapi-types.ts';

export type Wallet = components['schemas']['Wallet'];
export type Operation = components['schemas']['Operation'];
export type LedgerEntry = components['schemas']['LedgerEntry'];
export type Problem = components['schemas']['Problem'];
type Body<P extends keyof paths, M extends 'post'> = paths[P][M] extends { requestBody?: { content: { 'application/json': infer B } } }
  ? B
  : never;
export type CreateWalletBody = Body<'/v1/wallets', 'post'>;
export type TransferBody = Body<'/v1/transfers', 'post'>;
export type TransferBatchBody = Body<'/v1/transfers/batch', 'post'>;
export type FundBody = Body<'/v1/wallets/{id}/fund', 'post'>;
export type CreateApiKeyBody = Body<'/admin/api-keys', 'post'>;

/** A non-2xx answer: `status`, the problem document, and the response headers. */
export class LedgerlineError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
    readonly headers: Headers,
  ) {
    super(problem ? `${status} ${problem.code}: ${problem.detail}` : `HTTP ${status}`);
    this.name = 'LedgerlineError';
  }

  get code(): string | undefined {
    return this.problem?.code;
  }
}

/** What every call returns: the parsed body and the response (headers, status). */
export interface Answer<T> {
  data: T;
  response: Response;
}

async function unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<Answer<T>> {
  const { data, error, response } = await call;
  if (!response.ok || data === undefined) {
    throw new LedgerlineError(response.status, error as Problem | undefined, response.headers);
  }
  return { data, response };
}

export interface ClientOptions {
  baseUrl: string;
  /** Custom fetch (tests, proxies). */
  fetch?: (input: Request) => Promise<Response>;
  /**
   * Requests that got no answer at all (the connection failed or was reset) are sent again
   * when repeating them cannot move money twice: reads, and writes that carry idempotency keys
   * (fund, transfer, transfer batch). `attempts` counts the first; `false` turns retries off.
   * An answer, even 5xx, is never retried here: the caller decides on those.
   */
  retries?: { attempts?: number; baseDelayMs?: number } | false;
}

/** The retry budget of `ClientOptions.retries` when it is not given. */
export const DEFAULT_RETRIES = { attempts: 3, baseDelayMs: 50 };

/** Whether sending `request` again cannot apply anything twice (see `ClientOptions.retries`). */
export function isSafeToResend(request: Request): boolean {
  if (request.method === 'GET' || request.method === 'HEAD') return true;
  return request.method === 'POST' && (request.headers.has('idempotency-key') || new URL(request.url).pathname.endsWith('/v1/transfers/batch'));
}

/**
 * `fetch` that resends safe requests (`isSafeToResend`) that failed before any answer, with
 * jittered exponential backoff. An aborted request (the caller's signal or timeout) is not resent.
 */
export function withTransportRetries(
  fetchOnce: (input: Request) => Promise<Response>,
  retries: ClientOptions['retries'],
): (input: Request) => Promise<Response> {
  if (retries === false) return fetchOnce;
  const attempts = Math.max(1, retries?.attempts ?? DEFAULT_RETRIES.attempts);
  const baseDelayMs = Math.max(0, retries?.baseDelayMs ?? DEFAULT_RETRIES.baseDelayMs);
  return async (request) => {
    if (attempts === 1 || !isSafeToResend(request)) return fetchOnce(request);
    for (let attempt = 1; ; attempt++) {
      try {
        // A Request's body can be read once: every attempt sends its own copy.
        return await fetchOnce(attempt < attempts ? request.clone() : request);
      } catch (err) {
        // fetch rejects with a TypeError when no answer came (a network error); an abort or a
        // timeout rejects with a DOMException, which is the caller's decision and not resent.
        if (attempt >= attempts || request.signal.aborted || !(err instanceof TypeError)) throw err;
        await new Promise((r) => setTimeout(r, baseDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random())));
      }
    }
  };
}

function openClient(options: ClientOptions, authorization: string) {
  return createClient<paths>({
    baseUrl: options.baseUrl,
    headers: { authorization },
    fetch: withTransportRetries(options.fetch ?? ((request) => fetch(request)), options.retries),
  });
}

const TERMINAL = new Set(['succeeded', 'failed']);

/** A client acting for one API key. */
export function createLedgerlineClient(options: ClientOptions & { apiKey: string }) {
  const http = openClient(options, `Bearer ${options.apiKey}`);
  const operations = {
    get: (id: string, query: { wait?: number } = {}) =>
      unwrap(http.GET('/v1/operations/{id}', { params: { path: { id }, query } })),
    /**
     * Long-polls until the operation is `succeeded` or `failed` (each poll waits up to 30 s
     * server-side); throws if it is still open after `timeoutMs`.
     */
    async wait(id: string, { timeoutMs = 60_000 }: { timeoutMs?: number } = {}): Promise<Operation> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const left = Math.max(0, deadline - Date.now());
        const { data } = await operations.get(id, { wait: Math.min(30, Math.ceil(left / 1000)) });
        if (TERMINAL.has(data.status)) return data;
        if (Date.now() >= deadline) throw new Error(`operation ${id} is still ${data.status} after ${timeoutMs} ms`);
      }
    },
  };
  return {
    /** The underlying openapi-fetch client, for anything not wrapped here. */
    http,
    wallets: {
      create: (body: CreateWalletBody) => unwrap(http.POST('/v1/wallets', { body })),
      get: (id: string) => unwrap(http.GET('/v1/wallets/{id}', { params: { path: { id } } })),
      entries: (id: string, query: { limit?: number; cursor?: string } = {}) =>
        unwrap(http.GET('/v1/wallets/{id}/entries', { params: { path: { id }, query } })),
    },
    funds: {
      create: (walletId: string, body: FundBody, { idempotencyKey }: { idempotencyKey: string }) =>
        unwrap(
          http.POST('/v1/wallets/{id}/fund', {
            params: { path: { id: walletId }, header: { 'idempotency-key': idempotencyKey } },
            body,
          }),
        ),
    },
    transfers: {
      create: (body: TransferBody, { idempotencyKey }: { idempotencyKey: string }) =>
        unwrap(http.POST('/v1/transfers', { params: { header: { 'idempotency-key': idempotencyKey } }, body })),
      /** Up to 1,000 transfers as a unit; each item carries its own `idempotencyKey`. */
      batch: (body: TransferBatchBody) => unwrap(http.POST('/v1/transfers/batch', { body })),
    },
    operations,
  };
}

export type LedgerlineClient = ReturnType<typeof createLedgerlineClient>;

/** A client for the operator routes (`ADMIN_TOKEN`). */
export function createLedgerlineAdminClient(options: ClientOptions & { adminToken: string }) {
  const http = openClient(options, `Bearer ${options.adminToken}`);
  return {
    http,
    apiKeys: {
      create: (body: CreateApiKeyBody) => unwrap(http.POST('/admin/api-keys', { body })),
    },
  };
}
