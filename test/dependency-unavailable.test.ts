/**
 * While Postgres is away the API answers 503 service_unavailable with Retry-After (retry with
 * the same Idempotency-Key), not 500 internal_error: the chaos harness saw 500s during
 * Postgres restarts, because a refused connection arrives wrapped in drizzle's error.
 */
import { afterAll, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { freePort, waitHealthy } from './support/processes.ts';

let t: TestEnv;
afterAll(() => t?.close());

it('answers 503 with Retry-After when the database refuses connections', async () => {
  t = await createTestEnv({ worker: false });
  const port = await freePort();
  const nowhere = `postgres://postgres@127.0.0.1:${await freePort()}/gone`; // nothing listens there
  const api = t.spawnProcess('api', { PORT: String(port), DATABASE_URL: nowhere, SHARD_DATABASE_URLS: nowhere });
  try {
    const url = await waitHealthy(port, api);
    // The API key lookup (drizzle) and the admin route both need the database.
    const answers = await Promise.all([
      fetch(`${url}/v1/wallets`, {
        method: 'POST',
        headers: { authorization: 'Bearer some-client-key', 'content-type': 'application/json' },
        body: JSON.stringify({ currency: 'USD' }),
      }),
      fetch(`${url}/admin/api-keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.env.ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'x' }),
      }),
    ]);
    for (const res of answers) {
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(((await res.json()) as { code: string }).code).toBe('service_unavailable');
    }
  } finally {
    api.kill('SIGKILL');
  }
});
