import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../infra/logger.ts';
import { traceIdOf } from '../infra/trace.ts';

declare module 'express-serve-static-core' {
  interface Request {
    /** This request's logger: every line carries its requestId and traceId. */
    log: Logger;
  }
}

const QUIET = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Request logging: `req.log`, a child logger with the request's `requestId` and `traceId`
 * (made on first use: most requests never log anything but their completion line), and one
 * `request completed` line per answered request at info (error for 5xx), or `request aborted`
 * when the client went away first. Runs after the request id and traceparent are set.
 */
export function requestLog(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction) => {
    const started = performance.now();
    let child: Logger | undefined;
    Object.defineProperty(req, 'log', {
      configurable: true,
      get: () =>
        (child ??= logger.child({
          requestId: String(res.getHeader('X-Request-Id')),
          traceId: traceIdOf(res.locals.traceparent as string | undefined),
        })),
    });
    if (QUIET.has(req.path)) return next();
    let finished = false;
    res.once('finish', () => {
      finished = true;
      const level = res.statusCode >= 500 ? 'error' : 'info';
      if (!logger.isLevelEnabled(level)) return;
      req.log[level](
        { req: { method: req.method, url: req.originalUrl }, res: { statusCode: res.statusCode }, responseTime: Math.round(performance.now() - started) },
        'request completed',
      );
    });
    res.once('close', () => {
      if (!finished && logger.isLevelEnabled('warn')) {
        req.log.warn({ req: { method: req.method, url: req.originalUrl }, responseTime: Math.round(performance.now() - started) }, 'request aborted');
      }
    });
    next();
  };
}
