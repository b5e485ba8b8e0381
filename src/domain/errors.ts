/**
 * Errors are values with stable codes. The HTTP layer maps codes to statuses in one table
 * (src/api/error-map.ts); settlement stores the code on a failed operation.
 */
export class DomainError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class WalletNotFound extends DomainError {
  constructor(walletId: string) {
    super('wallet_not_found', `wallet ${walletId} does not exist`);
  }
}

export class OperationNotFound extends DomainError {
  constructor(operationId: string) {
    super('operation_not_found', `operation ${operationId} does not exist`);
  }
}

export class IdempotencyKeyMissing extends DomainError {
  constructor() {
    super('idempotency_key_missing', 'the Idempotency-Key header is required');
  }
}

export class IdempotencyKeyInvalid extends DomainError {
  constructor() {
    super('idempotency_key_invalid', 'Idempotency-Key must be 1 to 255 printable ASCII characters');
  }
}

export class IdempotencyKeyInFlight extends DomainError {
  constructor() {
    super('idempotency_key_in_flight', 'a request with this Idempotency-Key is still being recorded; retry shortly');
  }
}

export class IdempotencyKeyReused extends DomainError {
  constructor() {
    super('idempotency_key_reused', 'this Idempotency-Key was used with a different request');
  }
}

export class Unauthorized extends DomainError {
  constructor(message = 'a valid API key is required') {
    super('unauthorized', message);
  }
}

/** Failure codes an accepted operation can end with (API.md, operation resource). */
export const FAILURE_CODES = [
  'insufficient_funds',
  'wallet_not_found',
  'currency_mismatch',
  'same_wallet',
  'wallet_frozen',
  'balance_limit_exceeded',
  'payment_declined',
  'gateway_unavailable',
] as const;
export type FailureCode = (typeof FAILURE_CODES)[number];
