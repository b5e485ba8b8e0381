import { randomUUID } from 'node:crypto';
import { and, eq, gte } from 'drizzle-orm';
import { Counter } from 'prom-client';
import type { Config } from '../../config.ts';
import type { ShardRouter } from '../../db/shard-router.ts';
import { fraudActivity, riskAlerts } from '../../db/consumer-schema.ts';
import { outbox, wallets } from '../../db/schema.ts';
import { evaluateFraud, type FraudPolicy, type Movement } from '../../domain/fraud-rules.ts';
import type { Logger } from '../../infra/logger.ts';
import { outboxEvent } from '../outbox-event.ts';
import { lockName } from '../../db/advisory-locks.ts';
import { databaseFor, type ConsumerSpec } from './consumer.ts';

const alertsTotal = new Counter({
  name: 'ledgerline_fraud_alerts_total',
  help: 'risk.suspicious_activity alerts raised, by rule',
  labelNames: ['rule'] as const,
});

export function fraudPolicy(config: Config): FraudPolicy {
  return {
    velocityMax: config.FRAUD_VELOCITY_MAX,
    velocityWindowSeconds: config.FRAUD_VELOCITY_WINDOW_SECONDS,
    amountThresholdMinor: config.FRAUD_AMOUNT_THRESHOLD_MINOR,
    drainWindowSeconds: config.FRAUD_DRAIN_WINDOW_SECONDS,
    drainPercent: config.FRAUD_DRAIN_PERCENT,
  };
}

/**
 * Fraud detection. Each fund and completed transfer is recorded per wallet and the rules run
 * over the wallet's recent history. An alert is a `risk_alerts` row plus an outbox row
 * (`risk.suspicious_activity`) written in the same transaction as the dedupe marker: emitted
 * exactly once per rule and triggering event, published by the relay like every other event.
 * With FRAUD_FREEZE_ON_SUSPICION the wallet is frozen in its own shard database first.
 */
export function fraudConsumer(config: Config, shards: ShardRouter, logger: Logger): ConsumerSpec {
  const policy = fraudPolicy(config);
  const lookback = Math.max(policy.velocityWindowSeconds, policy.drainWindowSeconds);
  return {
    name: 'fraud',
    async apply(tx, event) {
      const data = event.data as { id?: string; amount?: string; currency?: string; walletId?: string; fromWalletId?: string; completedAt?: string };
      let walletId: string | undefined;
      let kind: Movement['kind'];
      if (event.type === 'wallet.funded') {
        walletId = data.walletId;
        kind = 'fund_in';
      } else if (event.type === 'transfer.completed') {
        walletId = data.fromWalletId;
        kind = 'transfer_out';
      } else {
        return;
      }
      if (!walletId || typeof data.amount !== 'string' || !/^[0-9]+$/.test(data.amount)) return;
      const current: Movement = { kind, amountMinor: BigInt(data.amount), at: new Date(data.completedAt ?? event.time) };

      await lockName(tx, `fraud:${walletId}`); // one wallet's history is read and extended serially
      const since = new Date(current.at.getTime() - lookback * 1000);
      const history = await tx
        .select()
        .from(fraudActivity)
        .where(and(eq(fraudActivity.walletId, walletId), gte(fraudActivity.occurredAt, since)));
      await tx.insert(fraudActivity).values({
        walletId,
        kind,
        amount: current.amountMinor,
        currency: data.currency ?? '',
        occurredAt: current.at,
        eventId: event.id,
      });
      const findings = evaluateFraud(
        policy,
        current,
        history.map((h) => ({ kind: h.kind, amountMinor: h.amount, at: h.occurredAt })),
      );
      if (findings.length === 0) return;

      // The wallet lives in its shard's database, not necessarily this one. The freeze is an
      // idempotent write there, made before this transaction commits (or in it, when the wallet
      // is in this database): if this transaction fails, the redelivered event freezes again
      // (no-op) and then records the alert.
      const home = databaseFor(tx, shards, walletId);
      const [wallet] = await home.select({ clientId: wallets.clientId, status: wallets.status }).from(wallets).where(eq(wallets.id, walletId));
      const freeze = config.FRAUD_FREEZE_ON_SUSPICION && wallet !== undefined;
      if (freeze) {
        await home.update(wallets).set({ status: 'frozen', updatedAt: new Date() }).where(and(eq(wallets.id, walletId), eq(wallets.kind, 'customer')));
      }
      for (const finding of findings) {
        const alertId = randomUUID();
        const inserted = await tx
          .insert(riskAlerts)
          .values({
            id: alertId,
            walletId,
            rule: finding.rule,
            reason: finding.reason,
            triggerEventId: event.id,
            operationId: data.id ?? null,
            frozen: freeze,
          })
          .onConflictDoNothing()
          .returning({ id: riskAlerts.id });
        if (inserted.length === 0) continue;
        const payload = {
          alertId,
          walletId,
          clientId: wallet?.clientId ?? null,
          rule: finding.rule,
          reason: finding.reason,
          ...(data.id ? { operationId: data.id } : {}),
          triggerEventId: event.id,
          frozen: freeze,
          detectedAt: new Date().toISOString(),
        };
        await tx.insert(outbox).values(outboxEvent('risk.suspicious_activity', walletId, payload));
        alertsTotal.inc({ rule: finding.rule });
        logger.warn({ walletId, rule: finding.rule, reason: finding.reason, frozen: freeze }, 'suspicious activity');
      }
    },
  };
}
