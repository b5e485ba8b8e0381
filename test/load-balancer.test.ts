/**
 * The local multi-process topology of `npm start -- --api 3`: Debian's nginx (config from
 * scripts/nginx-local.sh, the same proxy rules as compose) in front of 3 api processes. One api
 * process is SIGKILLed under load: clients see no failed requests beyond those in flight on it,
 * every accepted operation settles, and the books balance.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ledgerViolations, makeApiClient, uniqueName, type ApiResponse, type TestEnv } from './support/env.ts';
import { freePort, metric, scrape } from './support/prometheus-text.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const nginxBin = ['/usr/sbin/nginx', 'nginx'].find((b) => spawnSync(b, ['-v']).status === 0);
if (!nginxBin && process.env.CI) throw new Error('nginx is not installed (scripts/services.sh installs it)');

describe.skipIf(!nginxBin)('nginx in front of 3 api processes', () => {
  let t: TestEnv;
  let nginx: ChildProcess | undefined;
  let dir: string;
  beforeAll(async () => {
    t = await createTestEnv({ worker: true });
    dir = mkdtempSync(join(tmpdir(), 'll-nginx-'));
  });
  afterAll(async () => {
    nginx?.kill('SIGQUIT');
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function waitOk(url: string): Promise<void> {
    for (let i = 0; i < 150; i++) {
      if (await fetch(url).then((r) => r.ok, () => false)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${url} never answered 200`);
  }

  it('one api process killed during load: no failures beyond its in-flight requests, nothing lost', async () => {
    const apiPorts = await Promise.all([freePort(), freePort(), freePort()]);
    const lbPort = await freePort();
    const apis = apiPorts.map((port) => t.spawnProcess('api', { PORT: String(port) }));
    const conf = execFileSync('bash', [join(ROOT, 'scripts/nginx-local.sh'), dir, String(lbPort), ...apiPorts.map(String)], {
      encoding: 'utf8',
    }).trim();
    nginx = spawn(nginxBin!, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] });
    await Promise.all(apiPorts.map((p) => waitOk(`http://127.0.0.1:${p}/healthz`)));
    const lb = `http://127.0.0.1:${lbPort}`;
    await waitOk(`${lb}/healthz`);
    expect((await fetch(`${lb}/metrics`)).status).toBe(404); // not exposed through the balancer

    const api = makeApiClient(lb);
    const key = await api.adminKey();
    const [a, b] = await Promise.all([api.wallet(key), api.wallet(key)]);
    await api.waitTerminal(key, (await api.fund(key, a, '1000000')).body.id);

    // Load: 8 clients, 600 transfers of 1 through nginx; api #2 is SIGKILLed after 150.
    const TOTAL = 600;
    const CLIENTS = 8;
    const results: { idem: string; res: ApiResponse | Error }[] = [];
    let issued = 0;
    let killed = false;
    let inFlightAtKill = 0;
    let inFlight = 0;
    const client = async () => {
      while (issued < TOTAL) {
        issued++;
        if (issued > 150 && !killed) {
          killed = true;
          inFlightAtKill = inFlight;
          apis[1]!.kill('SIGKILL');
        }
        const idem = uniqueName('lb');
        inFlight++;
        const res = await api.transfer(key, a, b, '1', idem).catch((err: Error) => err);
        inFlight--;
        results.push({ idem, res });
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, client));
    expect(killed).toBe(true);
    expect(apis[1]!.exitCode ?? apis[1]!.signalCode).toBeTruthy();

    const accepted = results.filter((r) => !(r.res instanceof Error) && r.res.status === 202);
    const failed = results.filter((r) => r.res instanceof Error || r.res.status !== 202);
    // The in-flight requests of the killed process are the most that may fail; with
    // proxy_next_upstream (non_idempotent on Idempotency-Key routes) most are retried elsewhere.
    expect(failed.length).toBeLessThanOrEqual(Math.max(inFlightAtKill, CLIENTS));
    for (const f of failed) {
      // What a failed client may see: 409 in flight (the dead process's claim) or 502; never a 500.
      if (!(f.res instanceof Error)) expect([409, 502, 503, 504]).toContain(f.res.status);
    }

    // Nothing lost: every accepted operation settles (the reconciler enqueues one whose api died
    // between commit and enqueue); a failed request made at most one operation.
    for (let i = 0; ; i++) {
      const { rows: open } = await t.pool.query(`SELECT count(*)::int AS n FROM operations WHERE status IN ('pending', 'processing')`);
      if (open[0].n === 0) break;
      if (i > 200) throw new Error(`${open[0].n} operations still open`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const acceptedIds = accepted.map((r) => (r.res as ApiResponse).body.id as string);
    const { rows: acceptedRows } = await t.pool.query<{ status: string }>('SELECT status FROM operations WHERE id = ANY($1)', [acceptedIds]);
    expect(acceptedRows).toHaveLength(accepted.length);
    expect(acceptedRows.every((r) => r.status === 'succeeded')).toBe(true);
    const failedKeys = failed.map((f) => f.idem);
    const { rows } = await t.pool.query<{ idempotency_key: string; status: string }>(
      'SELECT idempotency_key, status FROM operations WHERE idempotency_key = ANY($1)',
      [failedKeys],
    );
    expect(rows.every((r) => r.status === 'succeeded')).toBe(true);
    const { rows: dup } = await t.pool.query(`SELECT idempotency_key FROM operations GROUP BY client_id, idempotency_key HAVING count(*) > 1`);
    expect(dup).toEqual([]);
    const moved = accepted.length + rows.length;
    expect((await api.request('GET', `/v1/wallets/${b}`, { key })).body.balance).toBe(String(moved));
    expect(await ledgerViolations(t.pool)).toEqual([]);

    // Both survivors served transfers (round robin), as their own /metrics say.
    for (const i of [0, 2]) {
      const m = await scrape(`http://127.0.0.1:${apiPorts[i]}/metrics`);
      expect(metric(m, 'http_requests_total', { endpoint: '/v1/transfers', status_class: '2xx' })).toBeGreaterThan(50);
    }
    console.info(`load balancer: ${results.length} requests, ${accepted.length} accepted, ${failed.length} failed [${failed.map((f) => (f.res instanceof Error ? f.res.message : f.res.status)).join(', ')}] (in flight at kill: ${inFlightAtKill}), ${rows.length} of the failed were committed`);
  }, 120_000);
});
