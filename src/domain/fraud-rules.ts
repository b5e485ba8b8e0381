/** Fraud rules over a wallet's recent money movements: plain data in, findings out. */
export type FraudRule = 'velocity' | 'large_amount' | 'fund_then_drain';

export interface FraudPolicy {
  velocityMax: number;
  velocityWindowSeconds: number;
  amountThresholdMinor: bigint;
  drainWindowSeconds: number;
  drainPercent: number;
}

export interface Movement {
  kind: 'fund_in' | 'transfer_out';
  amountMinor: bigint;
  at: Date;
}

export interface Finding {
  rule: FraudRule;
  reason: string;
}

/**
 * Rules for the movement `current` given the wallet's earlier movements (`history`, any order,
 * `current` not included):
 * - large_amount: a single fund or transfer of at least the threshold;
 * - velocity: more than `velocityMax` transfers out within the window ending at `current`;
 * - fund_then_drain: a transfer out of at least `drainPercent` % of a fund received within the
 *   drain window before it.
 */
export function evaluateFraud(policy: FraudPolicy, current: Movement, history: readonly Movement[]): Finding[] {
  const findings: Finding[] = [];
  if (current.amountMinor >= policy.amountThresholdMinor) {
    findings.push({ rule: 'large_amount', reason: `${current.kind} of ${current.amountMinor} ≥ threshold ${policy.amountThresholdMinor}` });
  }
  if (current.kind !== 'transfer_out') return findings;
  const t = current.at.getTime();
  const within = (m: Movement, seconds: number) => m.at.getTime() <= t && t - m.at.getTime() <= seconds * 1000;
  const recentOut = history.filter((m) => m.kind === 'transfer_out' && within(m, policy.velocityWindowSeconds)).length + 1;
  if (recentOut > policy.velocityMax) {
    findings.push({ rule: 'velocity', reason: `${recentOut} transfers out within ${policy.velocityWindowSeconds} s (max ${policy.velocityMax})` });
  }
  const drained = history.find(
    (m) => m.kind === 'fund_in' && within(m, policy.drainWindowSeconds) && current.amountMinor * 100n >= m.amountMinor * BigInt(policy.drainPercent),
  );
  if (drained) {
    findings.push({
      rule: 'fund_then_drain',
      reason: `transfer out of ${current.amountMinor} within ${policy.drainWindowSeconds} s of a fund of ${drained.amountMinor}`,
    });
  }
  return findings;
}
