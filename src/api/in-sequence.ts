import type { NextFunction, Request, RequestHandler, Response } from 'express';

/**
 * Several middleware as one router layer: each runs when the one before it calls `next()`;
 * `next(err)`, a throw or a rejected promise skips the rest and goes to the error handler, as
 * the router would do. Every request walks the app's global middleware, and the router costs
 * per layer it enters (path match, parameter processing, closures): its allocations were a
 * sixth of an accept's garbage with nine global layers. Nothing here matches paths; a handler
 * meant for some paths checks the path itself.
 */
export function inSequence(...handlers: readonly RequestHandler[]): RequestHandler {
  return (req: Request, res: Response, done: NextFunction) => {
    let at = 0;
    const next = (err?: unknown): void => {
      // As the router: a falsy value or 'route' goes on (this is not a route), 'router' leaves it.
      if (err && err !== 'route') return done(err);
      const handler = handlers[at++];
      if (!handler) return done();
      try {
        const result: unknown = handler(req, res, next);
        if (result instanceof Promise) result.catch((failure: unknown) => done(failure || new Error('Rejected promise')));
      } catch (failure) {
        done(failure);
      }
    };
    next();
  };
}
