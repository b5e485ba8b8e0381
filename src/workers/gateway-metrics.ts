import { Counter, Gauge, Histogram, register } from 'prom-client';

/** Gateway and circuit-breaker metrics, on prom-client's global registry (served by /metrics). */
const existing = <T>(name: string) => register.getSingleMetric(name) as T | undefined;

export const breakerStateGauge =
  existing<Gauge>('ledgerline_gateway_breaker_state') ??
  new Gauge({
    name: 'ledgerline_gateway_breaker_state',
    help: 'Payment gateway circuit breaker state in this process: 0 closed, 1 half-open, 2 open',
  });

export const breakerOpensTotal =
  existing<Counter>('ledgerline_gateway_breaker_opens_total') ??
  new Counter({ name: 'ledgerline_gateway_breaker_opens_total', help: 'Times the gateway circuit breaker opened' });

export const breakerRejectsTotal =
  existing<Counter>('ledgerline_gateway_breaker_rejects_total') ??
  new Counter({
    name: 'ledgerline_gateway_breaker_rejects_total',
    help: 'Gateway calls refused by the open circuit breaker (never sent)',
  });

export const gatewayRequestSeconds =
  existing<Histogram<'operation' | 'outcome'>>('ledgerline_gateway_request_duration_seconds') ??
  new Histogram({
    name: 'ledgerline_gateway_request_duration_seconds',
    help: 'Payment gateway call latency by operation (charge, void) and outcome (approved, declined, voided, timeout, error)',
    labelNames: ['operation', 'outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });

export const breakerFailuresTotal =
  existing<Counter<'reason'>>('ledgerline_gateway_breaker_failures_total') ??
  new Counter({
    name: 'ledgerline_gateway_breaker_failures_total',
    help: 'Gateway calls the circuit breaker counted as failures, by reason (timeout, error)',
    labelNames: ['reason'],
  });
