import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import CircuitBreaker from 'opossum';
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import { publishBreakerState, removeBreakerState, type BreakerState } from '../infra/breaker-state.ts';
import type { Logger } from '../infra/logger.ts';
import { GatewayClient, GatewayError, type ChargeRequest, type GatewayCharge } from './gateway-client.ts';
import { breakerFailuresTotal, breakerOpensTotal, breakerRejectsTotal, breakerStateGauge, gatewayRequestSeconds } from './gateway-metrics.ts';

/** A failure on our side of a gateway call (e.g. Postgres in `beforeSend`): not the gateway's fault. */
class LocalStepError extends Error {
  constructor(override readonly cause: unknown) {
    super(`before gateway call: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'LocalStepError';
  }
}

/** The gateway as the fund processor sees it. */
export interface FundGateway {
  /**
   * Charges through the circuit breaker. `beforeSend` runs only when the breaker lets the call
   * through, just before the request goes out (it records that a charge may now exist).
   * Throws on timeouts, transport errors, 5xx and an open breaker (`isBreakerOpen`).
   */
  charge(req: ChargeRequest, beforeSend: () => Promise<void>): Promise<GatewayCharge>;
  /** Reverses a key at the gateway, bypassing the breaker (the give-up path must try even when open). */
  voidKey(req: Omit<ChargeRequest, 'paymentMethod'>): Promise<GatewayCharge>;
  state(): BreakerState;
  close(): Promise<void>;
}

export const isBreakerOpen = (err: unknown): boolean => (err as { code?: string })?.code === 'EOPENBREAKER';

const STATE_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };
const PUBLISH_EVERY_MS = 5000;
const PUBLISH_TTL_MS = 15_000;

const outcomeOf = (err: unknown): string =>
  err instanceof GatewayError ? (err.kind === 'timeout' ? 'timeout' : 'error') : 'error';

/**
 * The gateway client behind an opossum circuit breaker with the configured timeout, error
 * threshold, volume threshold and reset timeout. Declines are answers, so they never count as
 * failures; neither do our own errors nor the gateway's 4xx (errorFilter). When `redis` is
 * given, the breaker state is published there for the API's /readyz.
 */
export function createFundGateway(
  config: Pick<
    Config,
    | 'GATEWAY_URL'
    | 'GATEWAY_TIMEOUT_MS'
    | 'BREAKER_ERROR_THRESHOLD_PERCENT'
    | 'BREAKER_RESET_TIMEOUT_MS'
    | 'BREAKER_VOLUME_THRESHOLD'
    | 'BREAKER_ROLLING_WINDOW_MS'
    | 'REDIS_PREFIX'
  >,
  logger: Logger,
  redis?: Redis,
): FundGateway {
  const client = new GatewayClient(config.GATEWAY_URL, config.GATEWAY_TIMEOUT_MS);
  const action = async (req: ChargeRequest, beforeSend: () => Promise<void>): Promise<GatewayCharge> => {
    try {
      await beforeSend();
    } catch (err) {
      throw new LocalStepError(err);
    }
    const stop = gatewayRequestSeconds.startTimer({ operation: 'charge' });
    try {
      const charge = await client.charge(req);
      stop({ outcome: charge.status });
      return charge;
    } catch (err) {
      stop({ outcome: outcomeOf(err) });
      throw err;
    }
  };
  const breaker = new CircuitBreaker(action, {
    timeout: config.GATEWAY_TIMEOUT_MS,
    errorThresholdPercentage: config.BREAKER_ERROR_THRESHOLD_PERCENT,
    resetTimeout: config.BREAKER_RESET_TIMEOUT_MS,
    volumeThreshold: config.BREAKER_VOLUME_THRESHOLD,
    rollingCountTimeout: config.BREAKER_ROLLING_WINDOW_MS,
    // true = "not a failure": our own errors and the gateway's 4xx say nothing about its health.
    errorFilter: (err: unknown) => err instanceof LocalStepError || (err instanceof GatewayError && !err.transient),
  });

  const workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  let state: BreakerState = 'closed';
  const publish = () => {
    if (!redis) return;
    publishBreakerState(redis, config.REDIS_PREFIX, workerId, state, PUBLISH_TTL_MS).catch(() => {});
  };
  const setState = (next: BreakerState) => {
    state = next;
    breakerStateGauge.set(STATE_VALUE[next]);
    publish();
  };
  setState('closed');
  breaker.on('open', () => {
    breakerOpensTotal.inc();
    setState('open');
    logger.warn({ resetTimeoutMs: config.BREAKER_RESET_TIMEOUT_MS }, 'gateway circuit breaker opened');
  });
  breaker.on('halfOpen', () => {
    setState('half_open');
    logger.info('gateway circuit breaker half-open: trying one call');
  });
  breaker.on('close', () => {
    setState('closed');
    logger.info('gateway circuit breaker closed');
  });
  breaker.on('reject', () => breakerRejectsTotal.inc());
  breaker.on('failure', (err: unknown) => {
    const timedOut = (err as { code?: string })?.code === 'ETIMEDOUT' || (err instanceof GatewayError && err.kind === 'timeout');
    breakerFailuresTotal.inc({ reason: timedOut ? 'timeout' : 'error' });
  });
  redis?.on('ready', publish); // the first publish may come before the connection is up
  const refresh = setInterval(publish, PUBLISH_EVERY_MS);
  refresh.unref();

  return {
    charge: (req, beforeSend) => breaker.fire(req, beforeSend),
    async voidKey(req) {
      const stop = gatewayRequestSeconds.startTimer({ operation: 'void' });
      try {
        const result = await client.voidKey(req);
        stop({ outcome: result.status });
        return result;
      } catch (err) {
        stop({ outcome: outcomeOf(err) });
        throw err;
      }
    },
    state: () => state,
    async close() {
      clearInterval(refresh);
      redis?.off('ready', publish);
      breaker.shutdown();
      if (redis) await removeBreakerState(redis, config.REDIS_PREFIX, workerId).catch(() => {});
    },
  };
}
