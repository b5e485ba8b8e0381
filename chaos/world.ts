/**
 * A private world for the chaos harness: its own Postgres cluster (initdb into a temp dir),
 * Redis server, Kafka mock cluster and gateway simulator, and the service's processes (api,
 * worker, relay, consumers) spawned as OS processes under a small supervisor that restarts
 * what dies. Nothing here touches the machine's shared Postgres or Redis, so faults (restarts,
 * FLUSHALL, pg_terminate_backend) disturb no other test.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, appendFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { migrateDatabase } from '../src/db/migrate.ts';
import { nodeFlagsFor } from '../src/infra/node-flags.ts';
import { startGatewaySim, type RunningGatewaySim } from '../src/gateway-sim/start-gateway-sim.ts';
import { freePort, startMockKafka, startRedisServer, waitHealthy, type RedisServer } from '../test/support/processes.ts';
import { WebhookReceiver } from './webhook-receiver.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PG_BIN = '/usr/lib/postgresql/15/bin';
export const CHAOS_ADMIN_TOKEN = 'chaos-admin-token-0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Postgres cluster of our own, run as the `postgres` OS user (Postgres refuses root). */
export class PrivatePostgres {
  readonly dir: string;
  readonly dataDir: string;
  readonly logFile: string;
  private constructor(
    readonly port: number,
    dir: string,
  ) {
    this.dir = dir;
    this.dataDir = join(dir, 'data');
    this.logFile = join(dir, 'postgres.log');
  }

  static async create(): Promise<PrivatePostgres> {
    const dir = mkdtempSync(join(tmpdir(), 'ledgerline-chaos-pg-'));
    const { stdout } = await run('id', ['-u', 'postgres']);
    const uid = Number(stdout.trim());
    chownSync(dir, uid, uid);
    chmodSync(dir, 0o700);
    const self = new PrivatePostgres(await freePort(), dir);
    await self.asPostgres(`${PG_BIN}/initdb`, ['-D', self.dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
    // Settings go in the data directory, so pg_ctl restart keeps them.
    appendFileSync(
      join(self.dataDir, 'postgresql.conf'),
      [
        `port = ${self.port}`,
        `listen_addresses = '127.0.0.1'`,
        `unix_socket_directories = '${dir}'`,
        'max_connections = 400',
        'shared_buffers = 64MB',
        'log_min_messages = warning',
        '',
      ].join('\n'),
    );
    await self.start();
    return self;
  }

  private asPostgres(cmd: string, args: string[]) {
    return run('runuser', ['-u', 'postgres', '--', cmd, ...args], { timeout: 120_000 });
  }

  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  async start(): Promise<void> {
    await this.asPostgres(`${PG_BIN}/pg_ctl`, ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', 'start']);
  }

  /** `immediate` is a crash: no checkpoint, WAL replay on the next start. */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.asPostgres(`${PG_BIN}/pg_ctl`, ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop']).catch(() => {});
  }

  async destroy(copyLogTo?: string): Promise<void> {
    await this.stop('immediate');
    if (copyLogTo && existsSync(this.logFile)) copyFileSync(this.logFile, copyLogTo);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export type ServiceKind = 'api' | 'worker' | 'relay' | 'consumer';

/** One supervised process of the service. */
export interface ServiceProcess {
  name: string;
  kind: ServiceKind;
  args: string[];
  env: Record<string, string>;
  port?: number;
  child?: ChildProcess;
  /** The next exit is one we caused (SIGKILL by the nemesis, or teardown). */
  expectExit: boolean;
  starts: number;
}

export interface WorldOptions {
  outDir: string;
  databases: number;
  apis: number;
  workers: number;
  /** Called for things worth writing into the history (unexpected exits, restarts). */
  onEvent: (event: Record<string, unknown>) => void;
}

const ENTRY: Record<ServiceKind, string> = {
  api: 'src/api/server.ts',
  worker: 'src/workers/main.ts',
  relay: 'src/events/relay-main.ts',
  consumer: 'src/events/consumers/main.ts',
};
export const CONSUMERS = ['audit', 'analytics', 'fraud', 'webhooks'] as const;

/** Everything one chaos run needs; `close()` tears it all down. */
export class World {
  postgres!: PrivatePostgres;
  redis!: RedisServer;
  kafka!: { child: ChildProcess; brokers: string };
  gateway!: RunningGatewaySim;
  webhooks!: WebhookReceiver;
  databaseUrls: string[] = [];
  env: Record<string, string> = {};
  readonly services = new Map<string, ServiceProcess>();
  private stopping = false;
  private readonly logDir: string;

  private constructor(readonly options: WorldOptions) {
    this.logDir = join(options.outDir, 'logs');
  }

  static async start(options: WorldOptions): Promise<World> {
    const world = new World(options);
    mkdirSync(world.logDir, { recursive: true });
    try {
      await world.boot();
    } catch (err) {
      await world.close();
      throw err;
    }
    return world;
  }

  private async boot(): Promise<void> {
    const { databases, apis, workers } = this.options;
    [this.postgres, this.redis, this.kafka, this.gateway, this.webhooks] = await Promise.all([
      PrivatePostgres.create(),
      startRedisServer(),
      startMockKafka(),
      startGatewaySim({ port: 0 }),
      WebhookReceiver.start(),
    ]);
    this.databaseUrls = Array.from({ length: databases }, (_, i) => this.postgres.url(`ledgerline_${i}`));
    for (const url of this.databaseUrls) await migrateDatabase(url);
    this.env = {
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      ADMIN_TOKEN: CHAOS_ADMIN_TOKEN,
      DATABASE_URL: this.databaseUrls[0]!,
      SHARD_DATABASE_URLS: this.databaseUrls.join(','),
      PG_POOL_MAX: '5',
      PG_CONNECTION_TIMEOUT_MS: '3000',
      REDIS_URL: this.redis.url,
      REDIS_PREFIX: 'chaos',
      KAFKA_BROKERS: this.kafka.brokers,
      KAFKA_TOPIC: 'chaos.events',
      KAFKA_REQUEST_TIMEOUT_MS: '3000',
      CONSUMER_SESSION_TIMEOUT_MS: '6000',
      CONSUMER_REBALANCE_TIMEOUT_MS: '10000',
      GATEWAY_URL: this.gateway.url,
      BREAKER_RESET_TIMEOUT_MS: '2000',
      // Recovery is fast: stalled jobs are noticed in seconds, lost ones re-enqueued in seconds.
      WORKER_LOCK_DURATION_MS: '5000',
      WORKER_STALLED_INTERVAL_MS: '2000',
      RECONCILE_INTERVAL_MS: '1000',
      RECONCILE_PENDING_AFTER_MS: '3000',
      RELAY_POLL_INTERVAL_MS: '50',
      // The checker reads every published outbox row: none is pruned during a run.
      OUTBOX_RETENTION_HOURS: '0',
      // The bank's webhook endpoint is on loopback; failed deliveries retry within seconds.
      WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
      WEBHOOK_RETRY_SCHEDULE_MS: '500,1000,2000,4000,8000,8000,8000,8000,8000,8000',
      WEBHOOK_TIMEOUT_MS: '3000',
      // Fraud watches but never acts: its alerts and freezes would change the bank's outcomes.
      FRAUD_FREEZE_ON_SUSPICION: 'false',
      FRAUD_VELOCITY_MAX: '1000000000',
      FRAUD_AMOUNT_THRESHOLD_MINOR: '1000000000000000',
      FRAUD_DRAIN_PERCENT: '1000000',
      RATE_LIMIT_CREATE_WALLET: '1000000000',
      RATE_LIMIT_FUND: '1000000000',
      RATE_LIMIT_TRANSFER: '1000000000',
      RATE_LIMIT_READ: '1000000000',
      RATE_LIMIT_WEBHOOKS: '1000000000',
      METRICS_PORT: '0',
    };
    for (let i = 0; i < apis; i++) this.define(`api-${i}`, 'api', [], { PORT: String(await freePort()) });
    for (let i = 0; i < workers; i++) this.define(`worker-${i}`, 'worker');
    this.define('relay', 'relay');
    for (const name of CONSUMERS) this.define(`consumer-${name}`, 'consumer', [name]);
    for (const service of this.services.values()) this.spawn(service);
    await Promise.all(this.apiServices().map((s) => waitHealthy(s.port!, s.child!, 120_000)));
  }

  private define(name: string, kind: ServiceKind, args: string[] = [], env: Record<string, string> = {}): void {
    const port = env.PORT ? Number(env.PORT) : undefined;
    this.services.set(name, { name, kind, args, env, ...(port ? { port } : {}), expectExit: false, starts: 0 });
  }

  private spawn(service: ServiceProcess): void {
    const fd = openSync(join(this.logDir, `${service.name}.log`), 'a');
    const child = spawn(process.execPath, [...nodeFlagsFor(ENTRY[service.kind]), '--import', 'tsx', ENTRY[service.kind], ...service.args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...this.env, ...service.env },
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    service.child = child;
    service.expectExit = false;
    service.starts++;
    child.on('exit', (code, signal) => {
      if (service.child !== child) return;
      service.child = undefined;
      if (this.stopping) return;
      if (!service.expectExit) {
        // A process manager would restart it; the history says it died on its own.
        this.options.onEvent({ kind: 'process-exit', service: service.name, code, signal, expected: false });
        setTimeout(() => {
          if (!this.stopping && !service.child) this.spawn(service);
        }, 500);
      }
    });
  }

  apiServices(): ServiceProcess[] {
    return [...this.services.values()].filter((s) => s.kind === 'api');
  }

  apiUrls(): string[] {
    return this.apiServices().map((s) => `http://127.0.0.1:${s.port}`);
  }

  servicesOf(kind: ServiceKind): ServiceProcess[] {
    return [...this.services.values()].filter((s) => s.kind === kind);
  }

  /** SIGKILLs a service; it stays down until `restart`. Resolves once it has exited. */
  async kill(name: string): Promise<void> {
    const service = this.services.get(name);
    const child = service?.child;
    if (!service || !child) return;
    service.expectExit = true;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  /** Starts a service that is down; for an api, waits until it answers /healthz. */
  async restart(name: string): Promise<void> {
    const service = this.services.get(name);
    if (!service || service.child) return;
    this.spawn(service);
    if (service.port) await waitHealthy(service.port, service.child!, 120_000);
  }

  /** Restarts every service that is down (the final heal). */
  async ensureAllRunning(): Promise<void> {
    await Promise.all([...this.services.keys()].map((name) => this.restart(name)));
  }

  async restartRedis(downMs: number): Promise<void> {
    const old = this.redis.child;
    const exited = new Promise((r) => old.once('exit', r));
    old.kill('SIGKILL');
    await exited;
    await sleep(downMs);
    this.redis = await startRedisServer(this.redis.port);
  }

  /** A pg client on the cluster's `postgres` database (not one of the app's databases). */
  async adminClient(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.postgres.url('postgres'), application_name: 'chaos-harness' });
    client.on('error', () => {});
    await client.connect();
    return client;
  }

  databaseNames(): string[] {
    return this.databaseUrls.map((u) => decodeURIComponent(new URL(u).pathname.slice(1)));
  }

  async close(): Promise<void> {
    this.stopping = true;
    const exits: Promise<unknown>[] = [];
    for (const service of this.services.values()) {
      const child = service.child;
      if (child && child.exitCode === null && child.signalCode === null) {
        exits.push(new Promise((r) => child.once('exit', r)));
        child.kill('SIGKILL');
      }
    }
    await Promise.all(exits);
    if (this.kafka?.child.exitCode === null) {
      this.kafka.child.kill('SIGCONT');
      this.kafka.child.kill('SIGKILL');
    }
    if (this.redis?.child.exitCode === null) this.redis.child.kill('SIGKILL');
    await this.gateway?.close();
    await this.webhooks?.close();
    await this.postgres?.destroy(join(this.logDir, 'postgres.log'));
  }
}
