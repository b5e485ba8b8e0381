import { operationsSettled, transactions, transferDuration, transferErrors } from '../infra/metrics.ts';
import type { SettleResult } from './settle-operation.ts';

/**
 * Records one settlement this process committed (redeliveries that found the operation
 * already terminal record nothing, so counts equal operations settled). A succeeded fund writes
 * one credit on a customer wallet, a succeeded transfer one debit and one credit.
 */
export function recordSettlement(type: 'fund' | 'transfer', result: SettleResult): void {
  if (result.outcome !== 'settled') return;
  operationsSettled.inc({ type, status: result.status });
  transferDuration.observe(
    { type, status: result.status },
    Math.max(0, result.completedAt.getTime() - result.acceptedAt.getTime()) / 1000,
  );
  if (result.status === 'failed') {
    transferErrors.inc({ type, code: result.failureCode ?? 'unknown' });
    return;
  }
  transactions.inc({ type: 'credit' });
  if (type === 'transfer') transactions.inc({ type: 'debit' });
}
