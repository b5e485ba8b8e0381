import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { httpDuration, httpErrors, httpRequests, register } from '../infra/metrics.ts';

/**
 * The route pattern of a request, for metric labels: the matched express route, or else the
 * path with ids replaced (`/v1/wallets/:id`), so a 401 before routing still lands on its route.
 * Anything else is `unmatched`: labels never carry ids or arbitrary paths.
 */
export function endpointOf(req: Request): string {
  const path = (req.originalUrl.split('?')[0] ?? '').replace(/\/+$/, '') || '/';
  if (path.startsWith('/admin/queues')) return '/admin/queues';
  const route = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof route === 'string') return `${req.baseUrl}${route}`;
  const normalized = path
    .replace(/^\/v1\/(wallets|operations|webhook-endpoints)\/[^/]+/, '/v1/$1/:id')
    .replace(/^(\/v1\/webhook-endpoints\/:id\/deliveries)\/[^/]+/, '$1/:deliveryId');
  return KNOWN.has(normalized) ? normalized : 'unmatched';
}

const KNOWN = new Set([
  '/healthz',
  '/readyz',
  '/metrics',
  '/openapi.json',
  '/admin/api-keys',
  '/v1/wallets',
  '/v1/wallets/:id',
  '/v1/wallets/:id/entries',
  '/v1/wallets/:id/balance',
  '/v1/wallets/:id/fund',
  '/v1/transfers',
  '/v1/operations/:id',
  '/v1/webhook-endpoints',
  '/v1/webhook-endpoints/:id/deliveries',
  '/v1/webhook-endpoints/:id/deliveries/:deliveryId/retry',
]);

/** Counts every response (and every error response, the seed's `error_rate_total`) by route. */
export function httpMetrics(): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const endpoint = endpointOf(req);
      const statusClass = `${Math.floor(res.statusCode / 100)}xx`;
      httpRequests.inc({ endpoint, method: req.method, status_class: statusClass });
      if (res.statusCode >= 400) httpErrors.inc({ endpoint, status_class: statusClass });
      httpDuration.observe({ endpoint, method: req.method }, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  };
}

/** `GET /metrics`: Prometheus text for this process. */
export const metricsHandler: RequestHandler = (_req, res, next) => {
  register.metrics().then((text) => {
    res.setHeader('Content-Type', register.contentType);
    res.send(text);
  }, next);
};
