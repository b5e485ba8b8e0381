import { Router } from 'express';
import { findOperation, type OperationRow } from '../../db/repositories/operations.ts';
import { assertNotFenced } from '../../db/repositories/shard-fences.ts';
import { OperationNotFound } from '../../domain/errors.ts';
import { isTerminal, operationView } from '../../domain/operation-view.ts';
import { requireClient } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { OperationIdParams, OperationQuery } from '../schemas.ts';
import { validate } from '../validate.ts';

/** How often a long poll re-reads the row, in case a settlement notice was lost. */
const RECHECK_MS = 1000;

export function operationRoutes(ctx: ApiContext): Router {
  const router = Router();

  router.get('/v1/operations/:id', async (req, res) => {
    const client = requireClient(req);
    const { id } = validate(OperationIdParams, req.params, 'params');
    const { wait } = validate(OperationQuery, req.query, 'query');
    const db = ctx.shards.forId(id).db;
    const read = async (): Promise<OperationRow> => {
      const op = await findOperation(db, id);
      if (!op) await assertNotFenced(db, [id]); // moved away: 503, retry
      if (!op || op.clientId !== client.id) throw new OperationNotFound(id);
      return op;
    };

    let op = await read();
    const deadline = Date.now() + wait * 1000;
    const gone = new AbortController();
    res.on('close', () => gone.abort());
    while (!isTerminal(op.status) && Date.now() < deadline && !gone.signal.aborted) {
      await ctx.waiter.wait(id, Math.min(RECHECK_MS, deadline - Date.now()), gone.signal);
      op = await read();
    }
    if (res.destroyed) return; // the client went away while waiting
    res.json(operationView(op));
  });

  return router;
}
