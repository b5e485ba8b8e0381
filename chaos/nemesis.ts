/**
 * The nemesis: injects one fault at a time, round robin over the fault kinds, with `intervalMs`
 * of calm between the end of one and the start of the next, until the run's deadline. Every
 * fault is healed before the next starts, and logged with its start and end in the history.
 */
import { Redis } from 'ioredis';
import type { FaultKind, HistoryWriter } from './history.ts';
import type { BankWorkload } from './workload.ts';
import type { World } from './world.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface NemesisOptions {
  intervalMs: number;
  /** How long a pause-like fault (broker pause, gateway outage) lasts. */
  faultMs: number;
  kinds: readonly FaultKind[];
}

export interface FaultLog {
  fault: FaultKind;
  start: number;
  end: number;
  detail: string;
}

export class Nemesis {
  readonly log: FaultLog[] = [];
  private turn = 0;
  /** Which process of each kind the next kill takes (round robin). */
  private readonly killTurns = { api: 0, worker: 0 };

  constructor(
    private readonly world: World,
    private readonly workload: BankWorkload,
    private readonly history: HistoryWriter,
    private readonly options: NemesisOptions,
  ) {}

  /**
   * Runs faults until `deadline` (epoch ms), and at least one full round of every kind however
   * short the run; a fault that has begun is always finished and healed.
   */
  async run(deadline: number): Promise<void> {
    await sleep(this.options.intervalMs);
    while (Date.now() < deadline || this.turn < this.options.kinds.length) {
      const fault = this.options.kinds[this.turn++ % this.options.kinds.length]!;
      await this.inject(fault);
      await sleep(this.options.intervalMs);
    }
  }

  async inject(fault: FaultKind): Promise<void> {
    const start = this.history.now();
    this.history.write({ type: 'fault', t: start, fault, phase: 'start' });
    let detail = '';
    try {
      detail = await this.faults[fault]();
    } catch (err) {
      detail = `fault failed: ${(err as Error).message}`;
    }
    const end = this.history.now();
    this.history.write({ type: 'fault', t: end, fault, phase: 'end', detail });
    this.log.push({ fault, start, end, detail });
  }

  private readonly faults: Record<FaultKind, () => Promise<string>> = {
    'kill-api': () => this.killAndRestart('api'),
    'kill-worker': () => this.killAndRestart('worker'),
    'redis-restart': async () => {
      await this.world.restartRedis(1000);
      return 'redis-server SIGKILLed, started empty after 1 s';
    },
    'redis-flushall': async () => {
      const redis = new Redis(this.world.redis.url, { maxRetriesPerRequest: 1 });
      try {
        await redis.flushall();
      } finally {
        redis.disconnect();
      }
      return 'FLUSHALL';
    },
    'pg-terminate': async () => {
      const admin = await this.world.adminClient();
      try {
        const { rowCount } = await admin.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()',
          [this.world.databaseNames()],
        );
        return `${rowCount} backends terminated`;
      } finally {
        await admin.end().catch(() => {});
      }
    },
    'pg-restart': async () => {
      await this.world.postgres.stop('immediate');
      await sleep(1500);
      await this.world.postgres.start();
      return 'pg_ctl stop -m immediate, down 1.5 s, start';
    },
    'broker-pause': async () => {
      const kcat = this.world.kafka.child;
      kcat.kill('SIGSTOP');
      try {
        await sleep(this.options.faultMs);
      } finally {
        kcat.kill('SIGCONT');
      }
      return `kcat SIGSTOP for ${this.options.faultMs} ms, then SIGCONT`;
    },
    'gateway-outage': async () => {
      await this.gatewayControl({ outage: true });
      this.workload.gatewayOutage = true;
      const before = this.workload.stats.fundsDuringOutage;
      try {
        await sleep(this.options.faultMs);
      } finally {
        this.workload.gatewayOutage = false;
        await this.gatewayControl({ outage: false });
      }
      return `gateway outage for ${this.options.faultMs} ms; ${this.workload.stats.fundsDuringOutage - before} funds submitted during it`;
    },
  };

  /** SIGKILLs the next process of a kind, leaves it dead a second, then restarts it (an api: until healthy). */
  private async killAndRestart(kind: 'api' | 'worker'): Promise<string> {
    const services = this.world.servicesOf(kind);
    const name = services[this.killTurns[kind]++ % services.length]!.name;
    await this.world.kill(name);
    await sleep(1000);
    await this.world.restart(name);
    return `${name} SIGKILLed, restarted`;
  }

  /** The simulator's run-time control endpoint (outage, latency, error rate). */
  private async gatewayControl(body: Record<string, unknown>): Promise<void> {
    const res = await fetch(`${this.world.gateway.url}/control`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`gateway /control: ${res.status}`);
  }

  /** Heals whatever could still be broken (the run's last step before recovery). */
  async healAll(): Promise<void> {
    await this.gatewayControl({ outage: false, errorRate: 0, latencyMs: 0 });
    this.workload.gatewayOutage = false;
    if (this.world.kafka.child.exitCode === null) this.world.kafka.child.kill('SIGCONT');
    await this.world.ensureAllRunning();
  }
}
