/**
 * HTTP client of the payment gateway (the simulator speaks the same protocol). Every call is
 * bounded by `timeoutMs` (AbortSignal). Declines are answers, not errors; transport failures,
 * timeouts and 5xx throw a `GatewayError`.
 */
export type GatewayChargeStatus = 'approved' | 'declined' | 'voided';

export interface GatewayCharge {
  /** `voided`: the key was reversed at the gateway (refunded, or blocked before it charged). */
  status: GatewayChargeStatus;
  chargeId: string;
  declineCode?: string;
}

export interface ChargeRequest {
  /** The operation id: the same key never charges twice. */
  idempotencyKey: string;
  amountMinor: bigint;
  currency: string;
  paymentMethod?: string | null;
}

export class GatewayError extends Error {
  constructor(
    readonly kind: 'timeout' | 'network' | 'http' | 'protocol',
    message: string,
    readonly httpStatus?: number,
  ) {
    super(message);
    this.name = 'GatewayError';
  }

  /** Whether a later attempt may succeed (a 4xx other than 408/409/429 is our bug, not an outage). */
  get transient(): boolean {
    if (this.kind !== 'http' || this.httpStatus === undefined) return this.kind !== 'protocol';
    return this.httpStatus >= 500 || [408, 409, 429].includes(this.httpStatus);
  }
}

const STATUS_MAP: Record<string, GatewayChargeStatus> = {
  succeeded: 'approved',
  declined: 'declined',
  refunded: 'voided',
  voided: 'voided',
};

export class GatewayClient {
  constructor(
    private readonly baseUrl: string,
    private readonly timeoutMs: number,
  ) {}

  /** Charges once per idempotency key; a repeated key returns the first result. */
  charge(req: ChargeRequest): Promise<GatewayCharge> {
    return this.post('/v1/charges', req.idempotencyKey, {
      amount: req.amountMinor.toString(),
      currency: req.currency,
      ...(req.paymentMethod ? { paymentMethod: req.paymentMethod } : {}),
    });
  }

  /**
   * Reverses whatever the key did: refunds its charge, or blocks the key if it never charged
   * (so a request still on the wire cannot charge later). Answers the key's final state.
   */
  voidKey(req: Omit<ChargeRequest, 'paymentMethod'>): Promise<GatewayCharge> {
    return this.post('/v1/charges/void', req.idempotencyKey, {
      amount: req.amountMinor.toString(),
      currency: req.currency,
    });
  }

  private async post(path: string, idempotencyKey: string, body: object): Promise<GatewayCharge> {
    let res: Response;
    try {
      res = await fetch(new URL(path, this.baseUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const name = (err as Error).name;
      if (name === 'TimeoutError' || name === 'AbortError') {
        throw new GatewayError('timeout', `gateway did not answer within ${this.timeoutMs} ms`);
      }
      throw new GatewayError('network', `gateway unreachable: ${(err as Error).message}`);
    }
    let parsed: { id?: unknown; status?: unknown; declineCode?: unknown } | undefined;
    try {
      parsed = (await res.json()) as typeof parsed;
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') throw new GatewayError('timeout', 'gateway body timed out');
      parsed = undefined;
    }
    if (!res.ok) throw new GatewayError('http', `gateway answered ${res.status}`, res.status);
    const status = typeof parsed?.status === 'string' ? STATUS_MAP[parsed.status] : undefined;
    if (!status || typeof parsed?.id !== 'string') throw new GatewayError('protocol', 'unexpected gateway answer');
    return {
      status,
      chargeId: parsed.id,
      ...(typeof parsed.declineCode === 'string' ? { declineCode: parsed.declineCode } : {}),
    };
  }
}
