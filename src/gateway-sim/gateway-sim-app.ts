import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import { sleep } from '../infra/sleep.ts';
import { DEFAULT_PAYMENT_METHOD, GatewayLedger } from './gateway-ledger.ts';

/** Run-time behaviour of the simulator, set through `POST /control`. */
export interface GatewayControl {
  /** Added before a charge's response is sent (the charge itself is made on arrival). */
  latencyMs: number;
  /** Probability (0..1) that a call fails with 500 before doing anything. */
  errorRate: number;
  /** While true every /v1 call gets 503 and does nothing. */
  outage: boolean;
}

export interface GatewaySimState {
  ledger: GatewayLedger;
  control: GatewayControl;
  /** Requests received on /v1 (total) and charge requests (all, and per key), whatever their outcome (outages and errors included). */
  requests: { total: number; charges: number; byKey: Map<string, number> };
}

const chargeBody = z.object({
  amount: z.string().regex(/^[1-9][0-9]{0,17}$/),
  currency: z.string().regex(/^[A-Z]{3}$/),
  paymentMethod: z.string().min(1).max(255).optional(),
});
const voidBody = z.object({ amount: z.string().regex(/^[0-9]{1,18}$/).default('0'), currency: z.string().default('') });
const controlBody = z.object({
  latencyMs: z.number().int().min(0).max(600_000).optional(),
  errorRate: z.number().min(0).max(1).optional(),
  outage: z.boolean().optional(),
});

const keyOf = (req: Request): string | undefined => {
  const key = req.header('idempotency-key');
  return key && key.length <= 255 ? key : undefined;
};

/**
 * The payment gateway simulator's HTTP app. Charges (`POST /v1/charges` with `Idempotency-Key`)
 * are idempotent per key; `pm_card_declined` is always declined; `/control` sets latency,
 * error rate and outage at run time; `GET /charges` lists its own ledger for comparisons.
 */
export function createGatewaySimApp(state: GatewaySimState): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '16kb' }));

  const problem = (res: Response, status: number, code: string) => res.status(status).json({ error: code });

  // Every /v1 call is counted, then may hit the outage or the random error.
  app.use('/v1', (req, res, next) => {
    state.requests.total++;
    if (req.method === 'POST' && req.path === '/charges') {
      state.requests.charges++;
      const key = keyOf(req);
      if (key) state.requests.byKey.set(key, (state.requests.byKey.get(key) ?? 0) + 1);
    }
    if (state.control.outage) return problem(res, 503, 'gateway_unavailable');
    if (state.control.errorRate > 0 && Math.random() < state.control.errorRate) {
      return problem(res, 500, 'gateway_error');
    }
    next();
  });

  app.post('/v1/charges', async (req, res) => {
    const key = keyOf(req);
    if (!key) return problem(res, 400, 'idempotency_key_missing');
    const body = chargeBody.safeParse(req.body);
    if (!body.success) return problem(res, 400, 'invalid_request');
    const { charge, replayed } = state.ledger.charge({
      idempotencyKey: key,
      amount: body.data.amount,
      currency: body.data.currency,
      paymentMethod: body.data.paymentMethod ?? DEFAULT_PAYMENT_METHOD,
    });
    // The money moved on arrival; a slow answer is the dangerous case for clients (timeouts).
    if (state.control.latencyMs > 0) await sleep(state.control.latencyMs);
    res.status(replayed ? 200 : 201).setHeader('Idempotent-Replayed', String(replayed)).json(charge);
  });

  app.get('/v1/charges/:id', (req, res) => {
    const charge = state.ledger.get(req.params.id);
    if (!charge) return problem(res, 404, 'charge_not_found');
    res.json(charge);
  });

  app.post('/v1/charges/:id/refund', (req, res) => {
    const charge = state.ledger.refund(req.params.id);
    if (!charge) return problem(res, 404, 'charge_not_found');
    res.json(charge);
  });

  /** Reverses whatever `Idempotency-Key` did (refund, or a tombstone that blocks a late charge). */
  app.post('/v1/charges/void', (req, res) => {
    const key = keyOf(req);
    if (!key) return problem(res, 400, 'idempotency_key_missing');
    const body = voidBody.safeParse(req.body ?? {});
    if (!body.success) return problem(res, 400, 'invalid_request');
    res.json(state.ledger.voidKey(key, body.data.amount, body.data.currency));
  });

  app.get('/control', (_req, res) => {
    res.json(state.control);
  });
  app.post('/control', (req, res) => {
    const body = controlBody.safeParse(req.body ?? {});
    if (!body.success) return problem(res, 400, 'invalid_request');
    Object.assign(state.control, body.data);
    res.json(state.control);
  });

  app.get('/charges', (_req, res) => {
    res.json({
      charges: state.ledger.all(),
      requests: {
        total: state.requests.total,
        charges: state.requests.charges,
        byKey: Object.fromEntries(state.requests.byKey),
      },
    });
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  return app;
}
