/** The public shape of an operation (API.md), shared by the API and the events. */
export interface OperationRecord {
  id: string;
  type: 'fund' | 'transfer';
  status: 'pending' | 'processing' | 'succeeded' | 'failed';
  amount: bigint;
  currency: string;
  fromWalletId: string | null;
  toWalletId: string;
  reference: string | null;
  failureCode: string | null;
  failureMessage: string | null;
  createdAt: Date;
  completedAt: Date | null;
}

export interface OperationView {
  id: string;
  type: 'fund' | 'transfer';
  status: OperationRecord['status'];
  amount: string;
  currency: string;
  fromWalletId?: string;
  toWalletId: string;
  walletId?: string;
  reference?: string;
  failure?: { code: string; message: string };
  createdAt: string;
  completedAt?: string;
}

/** Renders an operation; `asAccepted` renders it as it was when first accepted (for replays). */
export function operationView(op: OperationRecord, asAccepted = false): OperationView {
  const status = asAccepted ? 'pending' : op.status;
  const view: OperationView = {
    id: op.id,
    type: op.type,
    status,
    amount: op.amount.toString(),
    currency: op.currency,
    toWalletId: op.toWalletId,
    createdAt: op.createdAt.toISOString(),
  };
  if (op.type === 'fund') view.walletId = op.toWalletId;
  if (op.fromWalletId) view.fromWalletId = op.fromWalletId;
  if (op.reference !== null) view.reference = op.reference;
  if (!asAccepted && op.failureCode) {
    view.failure = { code: op.failureCode, message: op.failureMessage ?? op.failureCode };
  }
  if (!asAccepted && op.completedAt) view.completedAt = op.completedAt.toISOString();
  return view;
}

export const isTerminal = (status: OperationRecord['status']): boolean =>
  status === 'succeeded' || status === 'failed';
