import type { Redis } from 'ioredis';
import type { Logger } from '../infra/logger.ts';

export const operationSettledChannel = (prefix: string) => `${prefix}:operation-settled`;

/** How long the subscription outlives the last waiter (long polls tend to come in runs). */
const IDLE_UNSUBSCRIBE_MS = 30_000;

/**
 * Wakes long-polling requests when a worker announces that operations settled (Redis
 * pub/sub). A notice may be lost, so callers also re-read on a short timer.
 *
 * Subscribed only while someone waits (and `idleMs` after): workers announce every settled
 * batch, and an API process nobody long-polls need not wake for each one. When a subscription
 * starts, the waiters are woken once to re-read, since a notice sent before it took effect
 * was not received.
 */
export class OperationWaiter {
  private readonly waiting = new Map<string, Set<() => void>>();
  private subscribed: Promise<void> | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** SUBSCRIBE and UNSUBSCRIBE go out one after another, in the order they were asked for. */
  private commands: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly subscriber: Redis,
    private readonly channel: string,
    private readonly logger: Logger,
    private readonly idleMs = IDLE_UNSUBSCRIBE_MS,
  ) {
    // A notice names one operation, or several separated by commas (a settled batch).
    subscriber.on('message', (_channel: string, message: string) => {
      for (const operationId of message.split(',')) {
        const set = this.waiting.get(operationId);
        if (!set) continue;
        this.waiting.delete(operationId);
        for (const wake of set) wake();
      }
    });
  }

  /** Resolves when the operation is announced, after `timeoutMs`, or when `signal` aborts. */
  wait(operationId: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const woken = new Promise<void>((resolve) => {
      let set = this.waiting.get(operationId);
      if (!set) {
        set = new Set();
        this.waiting.set(operationId, set);
      }
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        const current = this.waiting.get(operationId);
        current?.delete(done);
        if (current && current.size === 0) this.waiting.delete(operationId);
        if (this.waiting.size === 0) this.unsubscribeWhenIdle();
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done);
      set.add(done);
    });
    this.subscribe();
    return woken;
  }

  private subscribe(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.subscribed) return;
    const subscribing: Promise<void> = this.whenReady(() => this.subscriber.subscribe(this.channel)).then(
      () => {
        for (const set of [...this.waiting.values()]) for (const wake of [...set]) wake();
      },
      (err: unknown) => {
        // Only this attempt's state: a newer subscribe may have replaced it meanwhile.
        if (this.subscribed === subscribing) this.subscribed = undefined;
        this.logger.warn({ err }, 'cannot subscribe to settlements');
      },
    );
    this.subscribed = subscribing;
  }

  private unsubscribeWhenIdle(): void {
    if (this.idleTimer || !this.subscribed) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.waiting.size > 0 || !this.subscribed) return;
      this.subscribed = undefined;
      this.whenReady(() => this.subscriber.unsubscribe(this.channel)).catch(() => {});
    }, this.idleMs);
    this.idleTimer.unref();
  }

  /**
   * Runs `command` once the connection is ready, after the commands asked for before it.
   * ioredis writes a SUBSCRIBE issued between connecting and its ready check at once (it is
   * allowed while Redis loads), and the check's INFO then fails on a connection already in
   * subscriber mode: the connection is dropped and the notice missed (ioredis#2037).
   */
  private whenReady<T>(command: () => Promise<T>): Promise<T> {
    const run = this.commands.then(async () => {
      if (this.subscriber.status === 'end') throw new Error('the Redis connection is closed');
      if (this.subscriber.status !== 'ready') {
        // Until ready, or until the connection ends for good (closed, or its retries given up).
        await new Promise<void>((resolve, reject) => {
          const ready = () => {
            this.subscriber.off('end', end);
            resolve();
          };
          const end = () => {
            this.subscriber.off('ready', ready);
            reject(new Error('the Redis connection is closed'));
          };
          this.subscriber.once('ready', ready);
          this.subscriber.once('end', end);
        });
      }
      return command();
    });
    this.commands = run.catch(() => {});
    return run;
  }

  /** Subscribed now (or subscribing): for tests and diagnostics. */
  get listening(): boolean {
    return this.subscribed !== undefined;
  }

  async close(): Promise<void> {
    for (const set of [...this.waiting.values()]) for (const wake of [...set]) wake();
    clearTimeout(this.idleTimer);
    await this.subscriber.quit().catch(() => this.subscriber.disconnect());
  }
}
