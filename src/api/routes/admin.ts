import { Router } from 'express';
import { createClient } from '../../db/repositories/clients.ts';
import { adminAuth } from '../auth.ts';
import { BULL_BOARD_PATH, bullBoardRouter } from '../bull-board.ts';
import type { ApiContext } from '../context.ts';
import { CreateApiKeyBody } from '../schemas.ts';
import { validate } from '../validate.ts';

export function adminRoutes(ctx: ApiContext): Router {
  const router = Router();
  router.use('/admin', adminAuth(ctx.config.ADMIN_TOKEN));
  router.use(BULL_BOARD_PATH, bullBoardRouter([ctx.queue]));

  router.post('/admin/api-keys', async (req, res) => {
    const body = validate(CreateApiKeyBody, req.body, 'body');
    const rateLimits = Object.fromEntries(
      Object.entries(body.rateLimits ?? {}).filter((e): e is [string, number] => e[1] !== undefined),
    );
    const created = await createClient(ctx.shards.control.db, { name: body.name, rateLimits });
    req.log.info({ clientId: created.id }, 'api key created');
    res.status(201).json({ id: created.id, name: created.name, key: created.key });
  });

  return router;
}
