import { randomUUID } from 'node:crypto';
import express, { type ErrorRequestHandler, type NextFunction, type Request, type Response } from 'express';
import { childTraceparent } from '../infra/trace.ts';
import { DomainError } from '../domain/errors.ts';
import { sqlState } from '../db/errors.ts';
import { SHARD_FENCED } from '../db/shard-router.ts';
import { clientAuth } from './auth.ts';
import { docsRoutes } from './docs.ts';
import { inSequence } from './in-sequence.ts';
import { exceedsJsonDepth, MAX_JSON_DEPTH } from './json-depth.ts';
import { rateLimit } from './rate-limit.ts';
import { requestLog } from './request-log.ts';
import type { ApiContext } from './context.ts';
import { isErrorCode } from './error-map.ts';
import { httpMetrics, metricsHandler } from './http-metrics.ts';
import { openApiDocument } from './openapi.ts';
import { HttpProblem, sendProblem } from './problem.ts';
import { adminRoutes } from './routes/admin.ts';
import { eventsAdminRoutes } from './routes/events-admin.ts';
import { healthRoutes } from './routes/health.ts';
import { moneyRoutes } from './routes/money.ts';
import { operationRoutes } from './routes/operations.ts';
import { walletRoutes } from './routes/wallets.ts';
import { webhookEndpointRoutes } from './routes/webhook-endpoints.ts';

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
/** The batch route and anything under it, as `app.use('/v1/transfers/batch', …)` matched it (case-insensitive). */
const BATCH_PATH = /^\/v1\/transfers\/batch(?:\/|$)/i;

/**
 * Failures that mean a dependency is away, not a bug: answered 503, retry later. The error or
 * any of its causes counts (drizzle wraps a refused connection in a DrizzleQueryError).
 */
export function isUnavailable(err: unknown): boolean {
  const state = sqlState(err);
  if (state && (state.startsWith('08') || state.startsWith('57P') || state === '53300' || state === SHARD_FENCED)) return true;
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT') return true;
    const message = e instanceof Error ? e.message : '';
    if (/timeout exceeded when trying to connect|Connection terminated|Stream isn't writeable|Connection is closed/i.test(message)) return true;
  }
  return false;
}

/** A request that carries body bytes (a zero Content-Length is none, as curl and fetch send for a bare POST). */
function hasBody(req: Request): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** The methods the OpenAPI document gives a concrete path (`GET, HEAD` for a GET), or undefined for an unknown path. */
function documentedMethods(): (path: string) => string | undefined {
  const paths = (openApiDocument() as { paths: Record<string, Record<string, unknown>> }).paths;
  const routes = Object.entries(paths).map(([template, operations]) => {
    const methods = Object.keys(operations).map((m) => m.toUpperCase());
    if (methods.includes('GET')) methods.push('HEAD');
    const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+');
    return { match: new RegExp(`^${pattern}$`), allow: methods.join(', ') };
  });
  return (path) => routes.find((r) => r.match.test(path))?.allow;
}

export function createApp(ctx: ApiContext): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  // Each group below is one router layer (in-sequence.ts): every request walks them all.
  app.use(
    inSequence(
      httpMetrics(),
      (req: Request, res: Response, next: NextFunction) => {
        const given = req.get('x-request-id');
        const id = given && REQUEST_ID.test(given) ? given : randomUUID();
        res.setHeader('X-Request-Id', id);
        // This request's span in the caller's trace (or a new trace); carried into jobs and events.
        res.locals.traceparent = childTraceparent(req.get('traceparent'));
        next();
      },
      requestLog(app, ctx.logger),
    ),
  );

  // Client routes authenticate and count against the key's rate limit before the body is even
  // parsed, so malformed or oversized bodies cost quota and every answer carries RateLimit-*.
  app.use('/v1', inSequence(clientAuth(ctx.shards.control.db), rateLimit(ctx.rateLimiter, ctx.config, ctx.logger)));

  // A batch of 1,000 transfers with keys and references needs more room than one request.
  const batchJson = express.json({ limit: '1mb', strict: true });
  const json = express.json({ limit: '64kb', strict: true });
  app.use(
    inSequence(
      (req: Request, _res: Response, next: NextFunction) => {
        // A POST without a body (an action such as a webhook retry) has no media type to refuse; a
        // route that needs a body refuses its absence in validation (400).
        if (req.method === 'POST' && hasBody(req) && !req.is('application/json')) {
          throw new HttpProblem('unsupported_media_type', 'send the body as application/json');
        }
        next();
      },
      (req: Request, res: Response, next: NextFunction) => (BATCH_PATH.test(req.path) ? batchJson : json)(req, res, next),
      (req: Request, _res: Response, next: NextFunction) => {
        // Deep nesting costs stack and CPU in every later walk of the body; no request needs it.
        if (exceedsJsonDepth(req.body, MAX_JSON_DEPTH)) {
          throw new HttpProblem('validation_failed', 'the body failed validation', [
            { path: 'body', message: `must not nest deeper than ${MAX_JSON_DEPTH} levels` },
          ]);
        }
        next();
      },
    ),
  );

  // The accept routes first: the hot path should not walk the other routers' layers (each
  // router a request enters costs it allocations; they were a sixth of an accept's garbage).
  // The probes, /metrics and the docs are GETs outside /v1, which nothing above changes.
  moneyRoutes(ctx, app);
  app.use(healthRoutes(ctx));
  app.get('/metrics', metricsHandler);
  app.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument());
  });
  app.use(docsRoutes());
  app.use(adminRoutes(ctx));
  app.use(eventsAdminRoutes(ctx));
  app.use(walletRoutes(ctx));
  app.use(operationRoutes(ctx));
  app.use(webhookEndpointRoutes(ctx));

  const allowedMethods = documentedMethods();
  app.use((req: Request, res: Response) => {
    // A documented path asked with another method: 405 and the methods it answers (RFC 9110).
    const allow = allowedMethods(req.path);
    if (allow && req.method === 'OPTIONS') {
      // What the router answers for its routes (the accept routes are on the app, not in one).
      res.setHeader('Allow', allow);
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.type('text/plain').send(allow);
      return;
    }
    if (allow) throw new HttpProblem('method_not_allowed', `${req.path} answers ${allow}, not ${req.method}`, undefined, { Allow: allow });
    throw new HttpProblem('not_found', `no route for ${req.method} ${req.path}`);
  });

  const onError: ErrorRequestHandler = async (failure: unknown, req, res, _next) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    let err = failure;
    // A fund or transfer that failed before its accept batch is counted now (rate-limit.ts): it costs
    // quota and carries RateLimit-* like any other answer, and over the limit it is a 429.
    if (req.deferredRateLimit && !req.deferredRateLimit.counted) await req.deferredRateLimit.take().catch((refused: unknown) => (err = refused));
    if (err instanceof HttpProblem) {
      return sendProblem(res, err.code, err.detail, { ...(err.errors ? { errors: err.errors } : {}), headers: err.headers });
    }
    if (err instanceof DomainError && isErrorCode(err.code)) return sendProblem(res, err.code, err.message);
    const type = (err as { type?: string } | undefined)?.type;
    if (type === 'entity.parse.failed') return sendProblem(res, 'malformed_json', 'the request body is not valid JSON');
    if (type === 'entity.too.large') {
      const limit = (err as { limit?: number }).limit;
      return sendProblem(res, 'payload_too_large', `the request body is larger than ${limit ? `${Math.floor(limit / 1024)} kB` : 'this route accepts'}`);
    }
    if (type === 'encoding.unsupported' || type === 'charset.unsupported') {
      return sendProblem(res, 'unsupported_media_type', 'send the body as UTF-8 JSON');
    }
    if (type === 'request.aborted') return void res.destroy();
    if (typeof type === 'string' && (err as { status?: number }).status === 400) {
      // body-parser's other refusals, e.g. a body shorter or longer than its Content-Length.
      return sendProblem(res, 'validation_failed', 'the request body could not be read', { errors: [{ path: 'body', message: type }] });
    }
    if (err instanceof URIError || (err as { status?: number } | undefined)?.status === 400) {
      // e.g. a path parameter with a malformed %-escape: the router fails to decode it.
      return sendProblem(res, 'validation_failed', 'the request URL is malformed', { errors: [{ path: 'url', message: 'must be a valid percent-encoded path' }] });
    }
    if (isUnavailable(err)) {
      req.log.warn({ err }, 'dependency unavailable');
      return sendProblem(res, 'service_unavailable', 'a dependency is unavailable; retry with the same Idempotency-Key', {
        headers: { 'Retry-After': '1' },
      });
    }
    req.log.error({ err }, 'unhandled error');
    sendProblem(res, 'internal_error', 'an internal error occurred; quote the request id when reporting it');
  };
  app.use(onError);
  return app;
}
