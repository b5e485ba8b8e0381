import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Makes sure Postgres, Redis and the Kafka-protocol broker are up (scripts/services.sh is
 * idempotent: it starts only what is not running), so `npm test` works on its own too.
 */
export default function setup(): void {
  const script = fileURLToPath(new URL('../../scripts/services.sh', import.meta.url));
  execFileSync('bash', [script], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 });
}
