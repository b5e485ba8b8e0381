/**
 * Ledger rules as plain functions over plain data: which entries an operation writes, or why
 * it fails. Every plan's entries sum to zero (double entry).
 */
import type { FailureCode } from './errors.ts';

/** Largest balance a wallet may hold: the Postgres bigint range. */
export const MAX_BALANCE_MINOR = 2n ** 63n - 1n;

export type WalletKind = 'customer' | 'settlement' | 'clearing';
export type WalletStatus = 'active' | 'frozen';

export interface WalletState {
  readonly id: string;
  readonly kind: WalletKind;
  readonly currency: string;
  readonly status: WalletStatus;
  readonly balanceMinor: bigint;
  readonly heldMinor: bigint;
}

export type Leg = 'debit' | 'credit';

export interface PlannedEntry {
  readonly walletId: string;
  readonly leg: Leg;
  /** Signed: negative for a debit, positive for a credit. */
  readonly amountMinor: bigint;
}

export type Plan =
  | { readonly ok: true; readonly entries: readonly [PlannedEntry, PlannedEntry] }
  | { readonly ok: false; readonly code: FailureCode; readonly message: string };

const fail = (code: FailureCode, message: string): Plan => ({ ok: false, code, message });

export function availableMinor(wallet: WalletState): bigint {
  return wallet.balanceMinor - wallet.heldMinor;
}

function pair(from: string, to: string, amountMinor: bigint): Plan {
  return {
    ok: true,
    entries: [
      { walletId: from, leg: 'debit', amountMinor: -amountMinor },
      { walletId: to, leg: 'credit', amountMinor },
    ],
  };
}

/** Money in: the wallet is credited against the gateway settlement account of its currency. */
export function planFund(input: {
  wallet: WalletState | undefined;
  settlement: WalletState;
  amountMinor: bigint;
}): Plan {
  const { wallet, settlement, amountMinor } = input;
  if (!wallet || wallet.kind !== 'customer') return fail('wallet_not_found', 'the wallet does not exist');
  if (wallet.status === 'frozen') return fail('wallet_frozen', 'the wallet is frozen');
  if (settlement.currency !== wallet.currency) {
    return fail('currency_mismatch', 'the settlement account is in another currency');
  }
  if (wallet.balanceMinor + amountMinor > MAX_BALANCE_MINOR) {
    return fail('balance_limit_exceeded', 'the wallet balance would exceed its limit');
  }
  return pair(settlement.id, wallet.id, amountMinor);
}

export type Check = { readonly ok: true } | { readonly ok: false; readonly code: FailureCode; readonly message: string };
const OK: Check = { ok: true };
const refuse = (code: FailureCode, message: string): Check => ({ ok: false, code, message });

/** Can this wallet pay `amountMinor` of `currency` now (from what is available, not held)? */
export function checkDebit(from: WalletState | undefined, amountMinor: bigint, currency: string): Check {
  if (!from || from.kind !== 'customer') return refuse('wallet_not_found', 'the source wallet does not exist');
  if (from.status === 'frozen') return refuse('wallet_frozen', 'the source wallet is frozen');
  if (from.currency !== currency) return refuse('currency_mismatch', `the source wallet does not hold ${currency}`);
  if (availableMinor(from) < amountMinor) {
    return refuse('insufficient_funds', 'the source wallet has insufficient available funds');
  }
  return OK;
}

/** Can this wallet receive `amountMinor` of `currency`? */
export function checkCredit(to: WalletState | undefined, amountMinor: bigint, currency: string): Check {
  if (!to || to.kind !== 'customer') return refuse('wallet_not_found', 'the destination wallet does not exist');
  if (to.status === 'frozen') return refuse('wallet_frozen', 'the destination wallet is frozen');
  if (to.currency !== currency) return refuse('currency_mismatch', `the destination wallet does not hold ${currency}`);
  if (to.balanceMinor + amountMinor > MAX_BALANCE_MINOR) {
    return refuse('balance_limit_exceeded', 'the destination balance would exceed its limit');
  }
  return OK;
}

/** Money between two customer wallets of one currency in one database. */
export function planTransfer(input: {
  from: WalletState | undefined;
  to: WalletState | undefined;
  amountMinor: bigint;
  currency: string;
}): Plan {
  const { from, to, amountMinor, currency } = input;
  if (!from || from.kind !== 'customer') return fail('wallet_not_found', 'the source wallet does not exist');
  if (!to || to.kind !== 'customer') return fail('wallet_not_found', 'the destination wallet does not exist');
  if (from.id === to.id) return fail('same_wallet', 'source and destination are the same wallet');
  const debit = checkDebit(from, amountMinor, currency);
  if (!debit.ok) return debit;
  const credit = checkCredit(to, amountMinor, currency);
  if (!credit.ok) return credit;
  return pair(from.id, to.id, amountMinor);
}

/**
 * The two entries a database writes for one side of a cross-shard transfer: the source side
 * debits the wallet against clearing, the destination side credits it against clearing.
 */
export function planClearingLeg(side: 'source' | 'destination', walletId: string, clearingId: string, amountMinor: bigint): Plan {
  return side === 'source' ? pair(walletId, clearingId, amountMinor) : pair(clearingId, walletId, amountMinor);
}

/** Applies a plan's entries to wallet states (used by tests and by settlement for balanceAfter). */
export function applyEntries(
  wallets: ReadonlyMap<string, WalletState>,
  entries: readonly PlannedEntry[],
): Map<string, WalletState> {
  const next = new Map(wallets);
  for (const e of entries) {
    const w = next.get(e.walletId);
    if (!w) throw new Error(`entry for unknown wallet ${e.walletId}`);
    next.set(e.walletId, { ...w, balanceMinor: w.balanceMinor + e.amountMinor });
  }
  return next;
}
