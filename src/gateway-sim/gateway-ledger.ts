import { randomUUID } from 'node:crypto';

/**
 * The simulator's in-memory book of charges, keyed by idempotency key. Every method is
 * synchronous, so a check-and-insert can never interleave with another request: two concurrent
 * calls with one key create one charge (Node runs each method to completion).
 */
export type ChargeStatus = 'succeeded' | 'declined' | 'refunded' | 'voided';

export interface Charge {
  id: string;
  idempotencyKey: string;
  /** Minor units, decimal string. */
  amount: string;
  currency: string;
  paymentMethod: string;
  status: ChargeStatus;
  declineCode?: string;
  createdAt: string;
  refundedAt?: string;
}

export interface ChargeRequest {
  idempotencyKey: string;
  amount: string;
  currency: string;
  paymentMethod: string;
}

/** Payment methods the simulator always declines, with their decline codes. */
const DECLINED_METHODS: Record<string, string> = {
  pm_card_declined: 'card_declined',
  pm_card_insufficient_funds: 'insufficient_funds',
};

export const DEFAULT_PAYMENT_METHOD = 'pm_card_visa';

export class GatewayLedger {
  private readonly byKey = new Map<string, Charge>();
  private readonly byId = new Map<string, Charge>();

  /** Charges once per key: the first call decides, later calls get the first result back. */
  charge(req: ChargeRequest): { charge: Charge; replayed: boolean } {
    const existing = this.byKey.get(req.idempotencyKey);
    if (existing) return { charge: existing, replayed: true };
    const declineCode = DECLINED_METHODS[req.paymentMethod];
    const charge: Charge = {
      id: `ch_${randomUUID()}`,
      idempotencyKey: req.idempotencyKey,
      amount: req.amount,
      currency: req.currency,
      paymentMethod: req.paymentMethod,
      status: declineCode ? 'declined' : 'succeeded',
      ...(declineCode ? { declineCode } : {}),
      createdAt: new Date().toISOString(),
    };
    this.byKey.set(charge.idempotencyKey, charge);
    this.byId.set(charge.id, charge);
    return { charge, replayed: false };
  }

  get(id: string): Charge | undefined {
    return this.byId.get(id);
  }

  findByKey(key: string): Charge | undefined {
    return this.byKey.get(key);
  }

  /** Refunds a succeeded charge (idempotent: a refunded charge stays refunded). */
  refund(id: string): Charge | undefined {
    const charge = this.byId.get(id);
    if (charge && charge.status === 'succeeded') {
      charge.status = 'refunded';
      charge.refundedAt = new Date().toISOString();
    }
    return charge;
  }

  /**
   * Reverses whatever a key did: refunds its charge if it succeeded; if the key never charged,
   * records a `voided` tombstone so that a late request with that key (one still on the wire)
   * can never charge afterwards.
   */
  voidKey(key: string, amount: string, currency: string): Charge {
    const existing = this.byKey.get(key);
    if (existing) return this.refund(existing.id) ?? existing;
    const tombstone: Charge = {
      id: `ch_${randomUUID()}`,
      idempotencyKey: key,
      amount,
      currency,
      paymentMethod: '',
      status: 'voided',
      createdAt: new Date().toISOString(),
    };
    this.byKey.set(key, tombstone);
    this.byId.set(tombstone.id, tombstone);
    return tombstone;
  }

  all(): Charge[] {
    return [...this.byId.values()];
  }
}
