/**
 * Deployment files checked by the tools that consume them: the alert rules with their unit
 * tests (`promtool test rules`), the Prometheus config, docker-compose.yml (`docker-compose
 * config`) and the Grafana dashboard. The tools come from Debian (scripts/services.sh installs
 * them); missing in CI is a failure, missing on a laptop skips with the reason.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { nodeFlagsFor } from '../src/infra/node-flags.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = (p: string) => readFileSync(`${ROOT}/${p}`, 'utf8');

function tool(name: string): string | undefined {
  const found = spawnSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (found.status === 0) return found.stdout.trim();
  if (process.env.CI) throw new Error(`${name} is not installed (scripts/services.sh installs it)`);
  return undefined;
}

const promtool = tool('promtool');
const compose = tool('docker-compose');

describe.skipIf(!promtool)('prometheus rules (promtool)', () => {
  it('alerts.yml is valid and its unit tests pass', () => {
    const check = spawnSync(promtool!, ['check', 'rules', 'deploy/prometheus/alerts.yml'], { cwd: ROOT, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const test = spawnSync(promtool!, ['test', 'rules', 'deploy/prometheus/alerts.test.yml'], { cwd: ROOT, encoding: 'utf8' });
    expect(test.status, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toContain('SUCCESS');
  });

  it('every alert has a case that fires and a case that does not', () => {
    const alerts = [...read('deploy/prometheus/alerts.yml').matchAll(/^\s*- alert: (\w+)/gm)].map((m) => m[1]!);
    expect(alerts).toEqual(expect.arrayContaining(['HighTransferErrorRate', 'SettlementQueueBacklog', 'SettlementJobsStalled',
      'SettlementJobsFailed', 'OutboxLagHigh', 'GatewayBreakerOpen', 'ConsumerLagHigh', 'ConsumerSkippedEvents']));
    const cases = [...read('deploy/prometheus/alerts.test.yml').matchAll(/alertname: (\w+)\n\s*exp_alerts:( \[\])?/g)];
    for (const alert of alerts) {
      const mine = cases.filter((c) => c[1] === alert);
      expect(mine.some((c) => c[2] === undefined), `${alert} has no firing case`).toBe(true);
      expect(mine.some((c) => c[2] !== undefined), `${alert} has no non-firing case`).toBe(true);
    }
  });

  it('the alert on transfer errors is the seed\'s: rate(transfer_errors_total[5m]) > 0.1 for 2m', () => {
    const rules = read('deploy/prometheus/alerts.yml');
    expect(rules).toMatch(/alert: HighTransferErrorRate\n\s*expr: sum\(rate\(transfer_errors_total\[5m\]\)\) > 0\.1\n\s*for: 2m/);
  });

  it('prometheus.yml is a valid config that loads the rules', () => {
    const check = spawnSync(promtool!, ['check', 'config', '--syntax-only', 'deploy/prometheus/prometheus.yml'], { cwd: ROOT, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(read('deploy/prometheus/prometheus.yml')).toContain('/etc/prometheus/alerts.yml');
  });
});

describe.skipIf(!compose)('docker-compose.yml (docker-compose config)', () => {
  const config = () =>
    execFileSync(compose!, ['-f', 'docker-compose.yml', 'config'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', ADMIN_TOKEN: 'compose-config-test-token' },
    });

  it('validates (docker-compose config -q)', () => {
    const r = spawnSync(compose!, ['-f', 'docker-compose.yml', 'config', '-q'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  it('has the production topology: nginx, 3 api, 3 workers, relay, Postgres, Redis, Kafka KRaft, Prometheus, Grafana', () => {
    const text = config();
    for (const service of ['nginx', 'api', 'worker', 'relay', 'postgres', 'redis', 'kafka', 'prometheus', 'grafana', 'migrate']) {
      expect(text, service).toMatch(new RegExp(`^  ${service}:$`, 'm'));
    }
    expect(text).toMatch(/^ {2}api:\n(?: {4}.*\n| {6}.*\n)*? {4}deploy:\n {6}replicas: 3$/m);
    expect(text).toMatch(/^ {2}worker:\n(?: {4}.*\n| {6}.*\n)*? {4}deploy:\n {6}replicas: 3$/m);
    expect(text).toContain('--maxmemory-policy');
    expect(text).toContain('noeviction');
    expect(text).toMatch(/--appendonly\n\s*- "?yes"?\n/);
    expect(text).toContain('KAFKA_PROCESS_ROLES: broker,controller');
    expect(text).toContain('condition: service_healthy');
  });

  it('the files compose mounts exist', () => {
    for (const f of ['deploy/nginx/nginx.conf', 'deploy/prometheus/prometheus.yml', 'deploy/prometheus/alerts.yml',
      'deploy/postgres/init-shards.sql', 'deploy/grafana/provisioning/datasources/prometheus.yml',
      'deploy/grafana/provisioning/dashboards/ledgerline.yml']) {
      expect(() => read(f), f).not.toThrow();
    }
  });
});

describe('grafana dashboard', () => {
  it('is valid JSON whose panels query metrics the services export', () => {
    const dir = 'deploy/grafana/dashboards';
    const files = readdirSync(`${ROOT}/${dir}`).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    // Metrics are registered in src/infra/metrics.ts, plus a few next to their owner (the gateway breaker).
    const exported = [read('src/infra/metrics.ts'), read('src/workers/gateway-metrics.ts'), read('src/events/relay.ts')].join('\n');
    for (const f of files) {
      const dash = JSON.parse(read(`${dir}/${f}`)) as { panels: { title: string; targets?: { expr: string }[] }[] };
      const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
      expect(exprs.length).toBeGreaterThan(8);
      const names = new Set(exprs.flatMap((e) => [...e.matchAll(/\b([a-z_]+)(?:_bucket|_count|_sum)?\{/g)].map((m) => m[1]!)));
      for (const name of names) {
        const base = name.replace(/_(bucket|count|sum)$/, '');
        if (['up', 'process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds'].includes(base)) continue;
        expect(exported, `${f}: ${base} is not defined in src`).toContain(`name: '${base}'`);
      }
    }
  });
});

describe('V8 flags per entry (src/infra/node-flags.ts)', () => {
  // package.json, docker-compose.yml and scripts/start.sh cannot import the helper, so they
  // write the flags out; this keeps every launcher of every entry on the helper's flags.
  const entries = (text: string, pattern: RegExp) =>
    [...text.matchAll(pattern)].map((m) => ({ flags: m[1]!.trim(), entry: m[2]! }));

  it('package.json scripts and docker-compose commands pass each entry its flags, and no others', () => {
    const scripts = entries(read('package.json'), /"node ((?:--[\w-]+(?:=\S+)? )*)--import tsx ([\w/.-]+\.ts)/g);
    const commands = entries(read('docker-compose.yml'), /command: \["node", ((?:"--[\w-]+(?:=[^"]*)?", )*)"--import", "tsx", "([\w/.-]+\.ts)"/g);
    expect(scripts.map((s) => s.entry)).toContain('src/events/relay-main.ts');
    expect(commands.map((c) => c.entry)).toContain('src/events/relay-main.ts');
    for (const { flags, entry } of scripts) expect(flags, `package.json: ${entry}`).toBe(nodeFlagsFor(entry).join(' '));
    for (const { flags, entry } of commands) {
      expect(flags.replace(/"/g, '').replace(/,\s*$/, '').split(/,\s*/).filter(Boolean), `docker-compose.yml: ${entry}`).toEqual([...nodeFlagsFor(entry)]);
    }
  });

  it('scripts/start.sh gives the relay its flags', () => {
    const line = /\[\[ "\$3" == "\$RELAY_ENTRY" \]\] && flags=\(([^)]*)\)/.exec(read('scripts/start.sh'));
    expect(line, 'start.sh: the relay flags line').not.toBeNull();
    expect(line![1]!.split(' ')).toEqual([...nodeFlagsFor('src/events/relay-main.ts')]);
    expect(read('scripts/start.sh')).toMatch(/^RELAY_ENTRY=src\/events\/relay-main\.ts$/m);
  });
});
